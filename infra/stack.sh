#!/usr/bin/env bash
# Sluice local stack: Kafka (KRaft, from Maven Central jars), PostgreSQL and ClickHouse (Debian packages)
# as plain background processes on 127.0.0.1. No Docker, no systemd. This script only orchestrates: the
# server configs are files under infra/kafka/, infra/postgres/ and infra/clickhouse/ (rendered into the
# state dir with the settings below), topics come from `make provision` (`sluice-ingest provision`). All data, logs and
# pid files live under the git-ignored state dir.
#
#   infra/stack.sh up | down | status | install | env
#   infra/stack.sh start <kafka|postgres|clickhouse>
#   infra/stack.sh stop  <kafka|postgres|clickhouse>
#
# Its own settings are SLUICE_STACK_* variables (the service's are SLUICE_*); see infra/README.md.
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=infra/lib/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemons.sh"
# shellcheck source=infra/lib/kafka.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/kafka.sh"

# ---------------------------------------------------------------- settings --
KAFKA_PORT="${SLUICE_STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SLUICE_STACK_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${SLUICE_STACK_KAFKA_HEAP:--Xms512m -Xmx1g}"
PG_PORT="${SLUICE_STACK_PG_PORT:-5432}"
PG_PASSWORD="${SLUICE_STACK_PG_PASSWORD:-sluice}"
# mb_within MB MIN MAX: MB clamped to [MIN, MAX], as a PostgreSQL size ("<n>MB").
mb_within() {
  local mb="$1"
  (( mb > $3 )) && mb=$3
  (( mb < $2 )) && mb=$2
  echo "${mb}MB"
}
# PostgreSQL's buffer cache: a third of the machine's memory, at most 8 GB, at least 128 MB. A ten-minute
# 100k/s load run grows the aggregate tables to ~4 GB; with 1 GB the backends evicted and re-read ~20k
# pages a second (docs/BENCHMARKS.md, session 13).
pg_default_shared_buffers() {
  local kb
  kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || true)
  mb_within $(( ${kb:-0} / 3 / 1024 )) 128 8192
}
# shellcheck disable=SC2034 # read by render_template (by name)
PG_SHARED_BUFFERS="${SLUICE_STACK_PG_SHARED_BUFFERS:-$(pg_default_shared_buffers)}"
# PostgreSQL's WAL between two checkpoints: a third of the disk space PostgreSQL may use (free space plus
# the WAL it already holds), at most 16 GB, at least 1 GB. With 4 GB, a ten-minute 100k/s load run
# checkpointed every ~20 s, and every page's first change after a checkpoint logs the whole page
# (docs/BENCHMARKS.md, session 14). pg_default_max_wal_size DIR: DIR is the state directory.
pg_default_max_wal_size() {
  local dir="$1" avail_kb wal_kb
  avail_kb=$(df -Pk "$dir" 2>/dev/null | awk 'NR == 2 {print $4}' || true)
  wal_kb=$(du -sk "$dir/postgres/data/pg_wal" 2>/dev/null | awk '{print $1}' || true)
  mb_within $(( (${avail_kb:-0} + ${wal_kb:-0}) / 3 / 1024 )) 1024 16384
}
PG_USER=sluice
PG_DB=sluice
CH_HTTP_PORT="${SLUICE_STACK_CH_HTTP_PORT:-8123}"
CH_TCP_PORT="${SLUICE_STACK_CH_TCP_PORT:-9000}"
CH_DB=sluice
# Partitions of the event topics (and Kafka's default for any other topic).
TOPIC_PARTITIONS="${SLUICE_STACK_TOPIC_PARTITIONS:-6}"

KAFKA_START_TIMEOUT="${SLUICE_STACK_KAFKA_START_TIMEOUT:-120}"
PG_START_TIMEOUT="${SLUICE_STACK_PG_START_TIMEOUT:-60}"
CH_START_TIMEOUT="${SLUICE_STACK_CH_START_TIMEOUT:-60}"
# SIGKILL follows SIGTERM after this many seconds. SLUICE_STOP_TIMEOUT is its older name (the outage
# tests set it).
STOP_TIMEOUT="${SLUICE_STACK_STOP_TIMEOUT:-${SLUICE_STOP_TIMEOUT:-20}}"

KAFKA_SRC="$REPO/infra/kafka"
PG_SRC="$REPO/infra/postgres"
CH_SRC="$REPO/infra/clickhouse"

# Paths below the state dir; finalised by init_state_paths (needs an absolute dir).
init_state_paths() {
  mkdir -p "$STATE"
  STATE="$(cd "$STATE" && pwd)"
  STACK_LOG="$STATE/stack.log"

  KAFKA_DIR="$STATE/kafka"
  KAFKA_LIBS="$KAFKA_DIR/libs"
  KAFKA_DATA="$KAFKA_DIR/data"
  KAFKA_LOGS="$KAFKA_DIR/logs"
  KAFKA_PROPS="$KAFKA_DIR/server.properties"
  KAFKA_PID="$KAFKA_DIR/kafka.pid"
  KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster-id"

  PG_DIR="$STATE/postgres"
  PG_DATA="$PG_DIR/data"
  PG_PID="$PG_DATA/postmaster.pid"
  PG_LOG="$PG_DIR/log/postgres.log"
  PG_SOCK_DIR="$PG_DIR/run"
  # A unix socket path must fit in sun_path (107 bytes); deep CI clones may not.
  if (( ${#PG_SOCK_DIR} + 16 > 100 )); then
    PG_SOCK_DIR="/tmp/sluice-pg-$(printf '%s' "$STATE" | md5sum | cut -c1-12)"
  fi

  CH_DIR="$STATE/clickhouse"
  CH_CONFIG="$CH_DIR/config.xml"
  CH_USERS="$CH_DIR/users.xml"
  CH_DATA="$CH_DIR/data"
  CH_LOGS="$CH_DIR/logs"
  CH_PID="$CH_DIR/clickhouse.pid"
}

do_install() {
  local pkgs=()
  [[ -n "$(pg_bindir)" ]] || pkgs+=(postgresql)
  command -v psql >/dev/null 2>&1 || pkgs+=(postgresql-client)
  [[ -n "$(ch_server_cmd)" ]] || pkgs+=(clickhouse-server clickhouse-client)
  command -v java >/dev/null 2>&1 || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  # Build dependencies of the Rust workspace: librdkafka, sqlx and the ClickHouse client link the system
  # OpenSSL for TLS (found through pkg-config).
  dpkg -s libssl-dev >/dev/null 2>&1 || pkgs+=(libssl-dev)
  command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
  if ((${#pkgs[@]})); then
    require_root
    apt_install "${pkgs[@]}"
  fi
  [[ -n "$(pg_bindir)" ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin after install"
  [[ -n "$(ch_server_cmd)" ]] || die "clickhouse-server binary not found after install"

  kafka_install_libs
}

# ------------------------------------------------------------------ kafka --
kafka_running() { daemon_running "$KAFKA_PID" "$KAFKA_PROPS"; }

# kafka_config FILE: the broker's settings from infra/kafka/.
kafka_config() {
  # shellcheck disable=SC2034 # read by render_template (by name)
  local KAFKA_DATA_DIR="$KAFKA_DATA" KAFKA_NUM_PARTITIONS="$TOPIC_PARTITIONS"
  render_template "$KAFKA_SRC/server.properties.template" "$1" \
    KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_DATA_DIR KAFKA_NUM_PARTITIONS
}

kafka_format_storage() {
  if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
    # keep the persisted id in sync with what the data dir was formatted with
    sed -n 's/^cluster\.id=//p' "$KAFKA_DATA/meta.properties" >"$KAFKA_CLUSTER_ID_FILE"
    return 0
  fi
  if [[ ! -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
    # a Kafka Uuid: 16 random bytes, url-safe base64 without padding, not starting with '-'
    local id=""
    while [[ -z "$id" || "$id" == -* ]]; do
      id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    printf '%s\n' "$id" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  local cid; cid=$(head -n1 "$KAFKA_CLUSTER_ID_FILE")
  say "kafka: formatting KRaft storage (cluster id $cid)"
  run_logged "kafka StorageTool format" kafka_tool 120 kafka.tools.StorageTool format \
    --standalone -t "$cid" -c "$KAFKA_PROPS"
}

kafka_launch() {
  if kafka_running; then return 0; fi
  check_port_free "$KAFKA_PORT" kafka
  check_port_free "$KAFKA_CONTROLLER_PORT" "kafka controller"
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  kafka_config "$KAFKA_PROPS" || die "kafka: cannot render $KAFKA_PROPS"
  kafka_format_storage
  # shellcheck disable=SC2086 # KAFKA_HEAP is a list of JVM options
  spawn "$KAFKA_PID" "$KAFKA_LOGS/kafka.out" java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dkafka.logs.dir="$KAFKA_LOGS" \
    -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS"
  KAFKA_JUST_STARTED=1
  say "kafka: started (pid $(read_pid "$KAFKA_PID")), waiting for it to become healthy"
}

# A real round trip through the Admin API (one JVM launch), not just an open port.
kafka_answers() {
  kafka_tool 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list \
    >/dev/null 2>>"$STACK_LOG"
}

kafka_wait() {
  local -a ctx=(kafka "$KAFKA_START_TIMEOUT" "$KAFKA_LOGS/server.log" "$KAFKA_PID" "$KAFKA_PROPS")
  wait_until "${ctx[@]}" port_open "$KAFKA_PORT"
  if [[ "${KAFKA_JUST_STARTED:-0}" == 1 ]]; then wait_until "${ctx[@]}" kafka_answers; fi
  report_up kafka "${KAFKA_JUST_STARTED:-0}" "$KAFKA_PID" "$KAFKA_PORT"
}

# Topics are not the stack's: `make provision` (a step of `make ingest`, `produce`, `run` and `migrate`)
# creates them with `sluice-ingest provision` after building, the one tool that creates topics.

# ------------------------------------------------------------- postgres --
PG_BIN=""
pg_as() { runuser -u postgres -- "$@"; }

pg_running() { daemon_running "$PG_PID" "$PG_DATA"; }

# pg_config FILE: the server settings from infra/postgres/ (client authentication: pg_hba.conf as it is).
pg_config() {
  local dir="$STATE"
  [[ -d "$dir" ]] || dir="$REPO"
  # shellcheck disable=SC2034 # read by render_template (by name)
  PG_MAX_WAL_SIZE="${SLUICE_STACK_PG_MAX_WAL_SIZE:-$(pg_default_max_wal_size "$dir")}"
  render_template "$PG_SRC/sluice.conf.template" "$1" PG_PORT PG_SOCK_DIR PG_SHARED_BUFFERS PG_MAX_WAL_SIZE
}

# The server settings and client authentication, on every start.
pg_write_config() {
  local tmp
  tmp=$(mktemp)
  pg_config "$tmp" || die "postgres: cannot render $PG_SRC/sluice.conf.template"
  install -o postgres -g postgres -m 0600 "$tmp" "$PG_DATA/sluice.conf"
  install -o postgres -g postgres -m 0600 "$PG_SRC/pg_hba.conf" "$PG_DATA/pg_hba.conf"
  rm -f "$tmp"
  grep -q "^include_if_exists = 'sluice.conf'" "$PG_DATA/postgresql.conf" ||
    printf "\ninclude_if_exists = 'sluice.conf'\n" >>"$PG_DATA/postgresql.conf"
}

pg_launch() {
  PG_BIN=$(pg_bindir)
  if pg_running; then return 0; fi
  if port_open "$PG_PORT"; then
    # most likely Debian's own cluster (started by the package): stop it
    stop_package_services "$PG_PORT"
    sleep 0.5
  fi
  check_port_free "$PG_PORT" postgres
  ensure_traversable "$STATE" postgres
  mkdir -p "$PG_DIR/log" "$PG_SOCK_DIR"
  chown postgres:postgres "$PG_DIR" "$PG_DIR/log" "$PG_SOCK_DIR"
  chmod 0700 "$PG_DIR"
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    say "postgres: initdb ($PG_BIN)"
    rm -rf "$PG_DATA"
    install -d -o postgres -g postgres -m 0700 "$PG_DATA"
    run_logged "initdb" pg_as "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 \
      --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
  fi
  pg_write_config
  postmaster_cleanup_stale "$PG_PID" "$PG_SOCK_DIR" "$PG_PORT"
  log "starting postgres"
  say "postgres: starting"
  if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" start >>"$STACK_LOG" 2>&1 </dev/null 9>&-; then
    die_log "postgres failed to start" "$PG_LOG"
  fi
  PG_JUST_STARTED=1
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_wait() {
  PG_BIN=$(pg_bindir)
  wait_until postgres "$PG_START_TIMEOUT" "$PG_LOG" "$PG_PID" "$PG_DATA" pg_ready
  report_up postgres "${PG_JUST_STARTED:-0}" "$PG_PID" "$PG_PORT"
}

pg_provision() {
  PG_BIN=$(pg_bindir)
  # SQL goes through stdin so the password never appears in argv/ps or logs
  if ! pg_as "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK_DIR" -p "$PG_PORT" \
      -U postgres -d postgres >>"$STACK_LOG" 2>&1 <<EOF
\\set pw $(psql_quote "$PG_PASSWORD")
SELECT format('CREATE ROLE %I LOGIN CREATEDB CREATEROLE', '$PG_USER')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') \\gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB CREATEROLE PASSWORD %L', '$PG_USER', :'pw') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_DB', '$PG_USER')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \\gexec
EOF
  then
    die_log "postgres: provisioning role/database failed" "$STACK_LOG"
  fi
  say "postgres: role '$PG_USER' and database '$PG_DB' ready"
}

pg_stop() {
  PG_BIN=$(pg_bindir)
  local pid; pid=$(read_pid "$PG_PID")
  if [[ -n "$pid" ]] && pid_matches "$pid" "$PG_DATA"; then
    say "postgres: stopping (pid $pid)"
    # pg_ctl -m fast == SIGINT to the postmaster (SIGTERM would be a "smart"
    # shutdown that waits for every client to disconnect).
    if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$STOP_TIMEOUT" stop >>"$STACK_LOG" 2>&1; then
      warn "postgres: pg_ctl stop failed or timed out, killing pid $pid"
      kill_pid "$pid" "$PG_DATA" KILL
      pkill -KILL -P "$pid" 2>/dev/null || true
    fi
    say "postgres: stopped"
  else
    say "postgres: not running"
  fi
}

# ------------------------------------------------------------- clickhouse --
ch_running() { daemon_running "$CH_PID" "$CH_CONFIG"; }

# ch_config FILE: the server settings from infra/clickhouse/ (users: users.xml as it is).
ch_config() {
  render_template "$CH_SRC/config.xml.template" "$1" CH_LOGS CH_HTTP_PORT CH_TCP_PORT CH_DATA CH_DIR CH_USERS
}

# The server settings and users, on every start.
ch_write_config() {
  mkdir -p "$CH_DATA" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$CH_LOGS"
  ch_config "$CH_CONFIG" || die "clickhouse: cannot render $CH_CONFIG"
  cp "$CH_SRC/users.xml" "$CH_USERS"
}

ch_ping() { [[ "$(curl -s --max-time 2 "http://127.0.0.1:$CH_HTTP_PORT/ping" 2>/dev/null)" == "Ok." ]]; }

ch_launch() {
  if ch_running; then return 0; fi
  check_port_free "$CH_HTTP_PORT" "clickhouse http"
  check_port_free "$CH_TCP_PORT" "clickhouse tcp"
  ch_write_config
  local cmd; cmd=$(ch_server_cmd)
  # runs fine as root (18.16 does not refuse); $cmd may be "clickhouse server"
  # shellcheck disable=SC2086
  spawn "$CH_PID" "$CH_LOGS/stdout.log" $cmd --config-file="$CH_CONFIG"
  CH_JUST_STARTED=1
  say "clickhouse: started (pid $(read_pid "$CH_PID"))"
}

ch_wait() {
  wait_until clickhouse "$CH_START_TIMEOUT" "$CH_LOGS/clickhouse-server.err.log" "$CH_PID" "$CH_CONFIG" ch_ping
  report_up clickhouse "${CH_JUST_STARTED:-0}" "$CH_PID" "$CH_HTTP_PORT"
}

ch_provision() {
  local out
  if ! out=$(curl -sS --max-time 30 "http://127.0.0.1:$CH_HTTP_PORT/" \
      --data-binary "CREATE DATABASE IF NOT EXISTS $CH_DB" 2>&1); then
    die "clickhouse: CREATE DATABASE failed: $out"
  fi
  [[ -z "$out" ]] || { log "clickhouse: $out"; }
  say "clickhouse: database '$CH_DB' ready"
}


valid_component() {
  case "${1:-}" in kafka|postgres|clickhouse) return 0 ;; esac
  die "unknown component '${1:-}' (expected kafka|postgres|clickhouse)"
}

start_one() {
  case "$1" in
    kafka)      kafka_launch; kafka_wait ;;
    postgres)   pg_launch; pg_wait; pg_provision ;;
    clickhouse) ch_launch; ch_wait; ch_provision ;;
  esac
}

stop_one() {
  case "$1" in
    kafka)      stop_daemon kafka "$KAFKA_PID" "$KAFKA_PROPS" ;;
    postgres)   pg_stop ;;
    clickhouse) stop_daemon clickhouse "$CH_PID" "$CH_CONFIG" ;;
  esac
}

cmd_status() {
  status_line kafka "$(read_pid "$KAFKA_PID")" "$KAFKA_PROPS" "$KAFKA_PORT"
  status_line postgres "$(read_pid "$PG_PID")" "$PG_DATA" "$PG_PORT"
  status_line clickhouse "$(read_pid "$CH_PID")" "$CH_CONFIG" "$CH_HTTP_PORT"
}

# The service's settings (SLUICE_*) that point it at this stack.
cmd_env() {
  cat <<EOF
export SLUICE_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export SLUICE_POSTGRES_URL=postgres://$PG_USER:$(urlencode "$PG_PASSWORD")@127.0.0.1:$PG_PORT/$PG_DB
export SLUICE_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT
export SLUICE_CLICKHOUSE_DATABASE=$CH_DB
EOF
}

# cmd_configs DIR: every server config file as a start would write it (settings filled in), into DIR.
cmd_configs() {
  [[ -n "${1:-}" ]] || usage
  mkdir -p "$1"
  if ! { kafka_config "$1/server.properties" && pg_config "$1/sluice.conf" && ch_config "$1/config.xml"; }; then
    die "cannot render the server configs"
  fi
  cp "$PG_SRC/pg_hba.conf" "$CH_SRC/users.xml" "$1/"
  say "configs: $(cd "$1" && echo *) in $1"
}

usage() {
  cat >&2 <<'EOF'
usage: infra/stack.sh <command>
  up                 install what is missing, start kafka+postgres+clickhouse, provision
  down               stop everything (SIGTERM, SIGKILL after ~20s)
  status             one line per component
  start <component>  start one of kafka|postgres|clickhouse (and provision it)
  stop <component>   stop one of kafka|postgres|clickhouse
  install            install apt packages and Kafka jars only
  env                print export lines for the service's endpoints (SLUICE_*)
  configs DIR        write the server config files a start would write into DIR (starts nothing)
settings (environment): SLUICE_STACK_STATE_DIR, SLUICE_STACK_{KAFKA,KAFKA_CONTROLLER,PG,CH_HTTP,CH_TCP}_PORT,
  SLUICE_STACK_KAFKA_HEAP, SLUICE_STACK_PG_{SHARED_BUFFERS,MAX_WAL_SIZE}, SLUICE_STACK_PG_PASSWORD,
  SLUICE_STACK_TOPIC_PARTITIONS, SLUICE_STACK_{KAFKA,PG,CH}_START_TIMEOUT,
  SLUICE_STACK_STOP_TIMEOUT (infra/README.md)
EOF
  exit 2
}

main() {
  local cmd="${1:-}"
  [[ -n "$cmd" ]] || usage
  shift || true
  case "$cmd" in
    env) cmd_env; return ;;
    -h|--help|help) usage ;;
  esac
  init_state_paths
  case "$cmd" in
    status) cmd_status; return ;;
    configs) cmd_configs "${1:-}"; return ;;
  esac
  touch "$STACK_LOG"
  with_lock
  log "==== stack.sh $cmd $* (state $STATE)"
  case "$cmd" in
    install)
      do_install
      say "install: done ($((SECONDS - T0))s)"
      ;;
    up)
      require_root
      do_install
      # launch the slow JVM first, bring the others up while it boots
      kafka_launch
      pg_launch; pg_wait
      ch_launch; ch_wait
      kafka_wait
      pg_provision
      ch_provision
      say "up: done in $((SECONDS - T0))s (state: $STATE; 'infra/stack.sh env' prints the endpoints)"
      ;;
    down)
      stop_one kafka
      stop_one clickhouse
      stop_one postgres
      say "down: done in $((SECONDS - T0))s"
      ;;
    start)
      valid_component "${1:-}"
      require_root
      do_install
      start_one "$1"
      ;;
    stop)
      valid_component "${1:-}"
      stop_one "$1"
      ;;
    *) usage ;;
  esac
}

main "$@"
