# Sourced by the PostgreSQL benches here: a scratch database on the local stack's PostgreSQL (`make up`
# first), dropped when the sourcing script exits. `scratch_db <name>` sets `url` to it.
scratch_db() {
  eval "$(bash infra/stack.sh env)"
  scratch_name="$1_$$"
  scratch_admin="${SLUICE_POSTGRES_URL%/*}/postgres"
  url="${SLUICE_POSTGRES_URL%/*}/$scratch_name"
  psql -q "$scratch_admin" -c "CREATE DATABASE $scratch_name"
  trap 'psql -q "$scratch_admin" -c "DROP DATABASE IF EXISTS $scratch_name"' EXIT
}
