#!/usr/bin/env bash
# The Python half of the ClickHouse schema tests (clickhouse/tests): every analyst query of
# docs/analytics.md on ClickHouse 26.x in process (chdb-core) and, when it answers, on the local server,
# plus the modern-only DDL. Creates the virtualenv under the state dir once; later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLUICE_STATE_DIR:-$PWD/.state}/chdb-venv"
if ! "$venv/bin/python" -c 'import chdb, pytest' 2>/dev/null; then
    echo "[test-chdb] creating $venv (chdb-core, pytest)"
    python3 -m venv "$venv" || { echo "[test-chdb] python3 -m venv failed: apt-get install python3-venv" >&2; exit 1; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'chdb-core==26.9.0' 'pytest==9.2.0'
fi
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider clickhouse/tests "$@"
