#!/usr/bin/env bash
# Creates the compose stack's secret files (random passwords) in infra/compose/secrets/, once.
# Existing files are kept: PostgreSQL and ClickHouse store the password in their data volumes at first
# start, so changing a file later also needs `docker compose down -v` (which drops the data).
#
# The files are mode 0644 inside a 0700 directory: compose (without swarm) bind-mounts them as they are,
# and the containers' unprivileged users (postgres 999, sluice 10001, grafana 472) must be able to read
# them; the directory keeps other host users out.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets"
mkdir -p "$dir"
chmod 0700 "$dir"
for name in postgres_password postgres_ingest_password clickhouse_password grafana_admin_password; do
  file="$dir/$name"
  if [[ -s "$file" ]]; then
    echo "kept    $file"
    continue
  fi
  # 24 random bytes, base64url: no characters that need quoting in a URL, XML or a shell.
  head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$file"
  chmod 0644 "$file"
  echo "created $file"
done
