#!/usr/bin/env bash
# The TypeScript example's own tests (node:test): the shared vectors of schemas/vectors/events.json
# (JSON, keys, partitions by the client's partitioner functions, refusals) and the library's rules.
# Needs no broker.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/build.sh"
cd "$here"
exec node --test dist/test/*.test.js
