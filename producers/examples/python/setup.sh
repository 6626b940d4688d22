#!/usr/bin/env bash
# Creates .venv/ beside this file from the hash-locked requirements.txt, once per change of the lock.
# Everything goes to stderr: run.sh's stdout carries only the delivery lines.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v python3 >/dev/null || { echo "python example: python3 (3.10+) not found on PATH" >&2; exit 1; }
stamp="$here/.venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "python example: installing requirements.txt into $here/.venv" >&2
    rm -rf "$here/.venv"
    python3 -m venv "$here/.venv" >&2
    "$here/.venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
        -r "$here/requirements.txt" >&2
    echo "$want" > "$stamp"
fi
