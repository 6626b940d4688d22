#!/usr/bin/env bash
# The example's entry: `run.sh send --brokers B --vectors F --topic-rank T --topic-crawl T --topic-click T`.
# Builds cmd/send (modules from go.sum, checked) into .bin/ and runs it; build output goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null || { echo "go example: the go toolchain (1.24+) was not found on PATH" >&2; exit 1; }
(cd "$here" && GOFLAGS=-mod=readonly go build -o .bin/send ./cmd/send) >&2
export SLUICE_SCHEMAS_DIR="${SLUICE_SCHEMAS_DIR:-$here/../../../schemas/json}"
exec "$here/.bin/send" "$@"
