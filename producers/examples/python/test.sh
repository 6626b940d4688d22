#!/usr/bin/env bash
# The example's own offline tests (shared vectors: JSON, keys, refusals).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup.sh"
cd "$here" && exec .venv/bin/python -m unittest -v test_sluice_producer
