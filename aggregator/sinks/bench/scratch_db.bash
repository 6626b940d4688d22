# Sourced by the PostgreSQL benches here: a scratch database on the local stack's PostgreSQL (`make up`
# first), dropped when the sourcing script exits. `scratch_db <name>` sets `url` to it. Also the
# rank_daily-shaped table the benches share, and the sink's own conflict clause for it.
scratch_db() {
  eval "$(bash infra/stack.sh env)"
  scratch_name="$1_$$"
  scratch_admin="${SLUICE_POSTGRES_URL%/*}/postgres"
  url="${SLUICE_POSTGRES_URL%/*}/$scratch_name"
  psql -q "$scratch_admin" -c "CREATE DATABASE $scratch_name"
  trap 'psql -q "$scratch_admin" -c "DROP DATABASE IF EXISTS $scratch_name"' EXIT
}

# `CREATE TABLE <name>` shaped like one rank_daily partition: its columns, primary key, COLLATE "C" key
# text and fillfactor 80 (migrations 0001, 0016, 0022); no secondary index.
rank_daily_table() {
  echo "CREATE TABLE $1 (tenant_id text COLLATE \"C\" NOT NULL, campaign_id text COLLATE \"C\" NOT NULL,
  keyword text COLLATE \"C\" NOT NULL, geo text COLLATE \"C\" NOT NULL, engine text COLLATE \"C\" NOT NULL,
  device text COLLATE \"C\" NOT NULL, day date NOT NULL, last_position smallint,
  last_occurred_at timestamptz NOT NULL, last_event_id text COLLATE \"C\" NOT NULL, best_position smallint,
  worst_position smallint, checks bigint NOT NULL,
  PRIMARY KEY (tenant_id, campaign_id, keyword, geo, engine, device, day)) WITH (fillfactor = 80);"
}

# The sink's ON CONFLICT clause for rank_daily, read from RANK_DAILY_UPSERT in the source (its table
# alias is `r`): the raw string after the insert's text, up to its closing `"#`.
rank_daily_conflict() {
  local clause
  clause=$(sed -n '/^pub const RANK_DAILY_UPSERT/,/"#$/p' aggregator/sinks/src/postgres/upsert.rs |
    sed -n '/ON CONFLICT/,$p' | sed 's/"#$//')
  [[ $clause == *"ON CONFLICT"*"last_occurred_at = GREATEST"* && $clause != *"pub const"* ]] ||
    { echo "scratch_db.bash: cannot find RANK_DAILY_UPSERT's ON CONFLICT clause" >&2; return 1; }
  echo "$clause"
}
