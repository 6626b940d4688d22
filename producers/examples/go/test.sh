#!/usr/bin/env bash
# The example's own offline tests (shared vectors: JSON, keys, partitions, refusals), plus go vet.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null || { echo "go example: the go toolchain (1.24+) was not found on PATH" >&2; exit 1; }
cd "$here"
export GOFLAGS=-mod=readonly
go vet ./...
exec go test -count=1 -v ./...
