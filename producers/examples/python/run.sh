#!/usr/bin/env bash
# The example's entry: `run.sh send --brokers B --vectors F --topic-rank T --topic-crawl T --topic-click T`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup.sh"
exec "$here/.venv/bin/python" "$here/send.py" "$@"
