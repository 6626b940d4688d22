#!/usr/bin/env bash
# The TypeScript example's entry point (README.md):
#   run.sh send --brokers HOST:PORT --vectors FILE --topic-rank T --topic-crawl T --topic-click T
# Installs and compiles on first use (build.sh), then runs the producer. Stdout carries only the JSON
# delivery lines.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
"$here/build.sh"
export SLUICE_SCHEMAS_DIR="${SLUICE_SCHEMAS_DIR:-$repo/schemas/json}"
exec node "$here/dist/src/main.js" "$@"
