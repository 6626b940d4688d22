#!/usr/bin/env bash
# Sluice local stack: Kafka (KRaft, from Maven Central jars), PostgreSQL and
# ClickHouse (Debian packages) as plain background processes on 127.0.0.1.
# No Docker, no systemd. All data, logs and pid files live under the state dir
# ($REPO/.state by default, override with SLUICE_STATE_DIR).
#
#   infra/stack.sh up | down | status | install | env
#   infra/stack.sh start <kafka|postgres|clickhouse>
#   infra/stack.sh stop  <kafka|postgres|clickhouse>
#
# See infra/README.md.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
KAFKA_SRC="$SCRIPT_DIR/kafka"

# ---------------------------------------------------------------- settings --
STATE_RAW="${SLUICE_STATE_DIR:-$REPO/.state}"

KAFKA_PORT="${SLUICE_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SLUICE_KAFKA_CONTROLLER_PORT:-9093}"
PG_PORT="${SLUICE_PG_PORT:-5432}"
PG_PASSWORD="${SLUICE_PG_PASSWORD:-sluice}"
PG_USER=sluice
PG_DB=sluice
CH_HTTP_PORT="${SLUICE_CH_HTTP_PORT:-8123}"
CH_TCP_PORT="${SLUICE_CH_TCP_PORT:-9000}"
CH_DB=sluice

TOPIC_PARTITIONS="${SLUICE_TOPIC_PARTITIONS:-6}"
RANK_TOPIC="${SLUICE_RANK_TOPIC:-rank-events}"
CRAWL_TOPIC="${SLUICE_CRAWL_TOPIC:-crawl-events}"
CLICK_TOPIC="${SLUICE_CLICK_TOPIC:-click-events}"
DEAD_LETTER_TOPIC="${SLUICE_DEAD_LETTER_TOPIC:-sluice-dead-letters}"
DEAD_LETTER_PARTITIONS=3

KAFKA_START_TIMEOUT="${SLUICE_KAFKA_START_TIMEOUT:-120}"
PG_START_TIMEOUT="${SLUICE_PG_START_TIMEOUT:-60}"
CH_START_TIMEOUT="${SLUICE_CH_START_TIMEOUT:-60}"
STOP_TIMEOUT="${SLUICE_STOP_TIMEOUT:-20}"


# Paths below the state dir; finalised by init_state_paths (needs an absolute dir).
init_state_paths() {
  mkdir -p "$STATE_RAW"
  STATE="$(cd "$STATE_RAW" && pwd)"
  STACK_LOG="$STATE/stack.log"

  KAFKA_DIR="$STATE/kafka"
  KAFKA_LIBS="$KAFKA_DIR/libs"
  KAFKA_DATA="$KAFKA_DIR/data"
  KAFKA_LOGS="$KAFKA_DIR/logs"
  KAFKA_PROPS="$KAFKA_DIR/server.properties"
  KAFKA_PID="$KAFKA_DIR/kafka.pid"
  KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster-id"
  KAFKA_TOPICS_MARKER="$KAFKA_DATA/.sluice-topics"

  PG_DIR="$STATE/postgres"
  PG_DATA="$PG_DIR/data"
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

# ------------------------------------------------------------------ output --
T0=$SECONDS
say()  { printf '[stack] %s\n' "$*"; }
log()  { printf '%s %s\n' "$(date '+%F %T')" "$*" >>"$STACK_LOG"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; log "WARNING: $*"; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; log "ERROR: $*"; exit 1; }

# die with the tail of a log file
die_log() {
  local msg="$1" file="$2"
  printf '[stack] ERROR: %s\n' "$msg" >&2
  log "ERROR: $msg"
  if [[ -f "$file" ]]; then
    printf '[stack] ---- last 40 lines of %s ----\n' "$file" >&2
    tail -n 40 "$file" >&2 || true
    printf '[stack] ----\n' >&2
  fi
  exit 1
}

# run a command, output to stack.log; on failure print its tail and die
run_logged() {
  local what="$1"; shift
  log "+ $*"
  local mark; mark=$(wc -l <"$STACK_LOG")
  if ! "$@" >>"$STACK_LOG" 2>&1; then
    printf '[stack] ERROR: %s failed (full log: %s)\n' "$what" "$STACK_LOG" >&2
    tail -n "+$((mark + 1))" "$STACK_LOG" | tail -n 40 >&2
    exit 1
  fi
}

# ---------------------------------------------------------------- helpers --
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# pid_matches PID PATTERN: process exists, is not a zombie, and its command
# line contains PATTERN (guards against stale pid files and pid reuse).
pid_matches() {
  local pid="$1" pattern="$2" stat cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  stat=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ "$stat" != Z && "$stat" != X ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *"$pattern"* ]]
}

read_pid() {
  if [[ -f "$1" ]]; then head -n1 "$1" 2>/dev/null | tr -dc '0-9' || true; fi
}

# wait until pid is gone; TERM first, KILL after STOP_TIMEOUT
kill_pid() {
  local pid="$1" pattern="$2" sig="${3:-TERM}" i
  pid_matches "$pid" "$pattern" || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    pid_matches "$pid" "$pattern" || return 0
    sleep 0.2
  done
  warn "pid $pid did not exit within ${STOP_TIMEOUT}s after SIG$sig, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_matches "$pid" "$pattern" || return 0
    sleep 0.2
  done
  die "pid $pid survived SIGKILL"
}

# who listens on a port (for error messages)
port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | head -n1 | sed 's/  */ /g' || true; }

require_root() {
  [[ $EUID -eq 0 ]] || die "must run as root (installs packages and runs PostgreSQL as the postgres user)"
}

ensure_traversable() {
  # every ancestor of $1 must be searchable (o+x) by an unprivileged user
  local d="$1"
  while [[ "$d" != "/" && -n "$d" ]]; do
    if [[ -d "$d" ]] && ! runuser -u "$2" -- test -x "$d" 2>/dev/null; then
      log "chmod o+x $d (so that $2 can reach the state dir)"
      chmod o+x "$d"
    fi
    d="$(dirname "$d")"
  done
}

# ---------------------------------------------------------------- install --
pg_bindir() {
  # highest installed major version that has the server binaries
  local d
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
      printf '%s' "$d"
      return 0
    fi
  done
}

ch_server_cmd() {
  if command -v clickhouse-server >/dev/null 2>&1; then
    command -v clickhouse-server
  elif [[ -x /usr/sbin/clickhouse-server ]]; then
    echo /usr/sbin/clickhouse-server
  elif command -v clickhouse >/dev/null 2>&1; then
    echo "$(command -v clickhouse) server"
  fi
}

apt_install() {
  local pkgs=("$@") created_policy=0
  say "install: apt packages: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep package maintainer scripts from starting their own services
  # (Debian's postgresql main cluster on 5432, clickhouse-server on 8123/9000).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local rc=0
  ( run_logged "apt-get update" apt-get update -q
    run_logged "apt-get install ${pkgs[*]}" apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${pkgs[@]}" ) || rc=$?
  if (( created_policy )); then rm -f /usr/sbin/policy-rc.d; fi
  (( rc == 0 )) || exit "$rc"
  stop_package_services
}

# Debian's own services must not run: we run our own instances.
# stop_package_services [PORT]: with PORT, only Postgres clusters on that port.
stop_package_services() {
  local only_port="${1:-}"
  if command -v pg_lsclusters >/dev/null 2>&1; then
    local ver name port status
    while read -r ver name port status _; do
      [[ "$status" == online* ]] || continue
      [[ -z "$only_port" || "$port" == "$only_port" ]] || continue
      log "stopping Debian PostgreSQL cluster $ver/$name (port $port)"
      say "postgres: stopping Debian's own PostgreSQL cluster $ver/$name (port $port)"
      pg_ctlcluster "$ver" "$name" stop >>"$STACK_LOG" 2>&1 || warn "could not stop cluster $ver/$name"
    done < <(pg_lsclusters -h 2>/dev/null || true)
  fi
  local pid
  for pid in $(pgrep -f '^/usr/(s)?bin/clickhouse(-server)?( server)? .*/etc/clickhouse-server/config.xml' 2>/dev/null || true); do
    say "clickhouse: stopping Debian's own clickhouse-server (pid $pid)"
    kill_pid "$pid" "/etc/clickhouse-server/config.xml"
  done
}

kafka_libs_stamp() {
  sha256sum "$KAFKA_SRC/pom.xml" | cut -d' ' -f1
}

kafka_libs_ok() {
  [[ -f "$KAFKA_LIBS/.complete" && "$(cat "$KAFKA_LIBS/.complete")" == "$(kafka_libs_stamp)" ]]
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

  if ! kafka_libs_ok; then
    say "install: Kafka jars from Maven Central -> $KAFKA_LIBS"
    rm -rf "$KAFKA_LIBS.tmp"
    mkdir -p "$KAFKA_LIBS.tmp"
    run_logged "mvn dependency:copy-dependencies" mvn -B -q -f "$KAFKA_SRC/pom.xml" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp"
    ls "$KAFKA_LIBS.tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "maven did not deliver kafka_2.13 jar"
    rm -rf "$KAFKA_LIBS"
    mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
    kafka_libs_stamp >"$KAFKA_LIBS/.complete"
  fi
}

# ------------------------------------------------------------------ kafka --
# kafka_tool TIMEOUT_SECONDS MAIN_CLASS ARGS...  (one short-lived JVM)
kafka_tool() {
  local t="$1"; shift
  timeout "$t" java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$KAFKA_SRC/tools-log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_pid() { read_pid "$KAFKA_PID"; }
kafka_running() { local p; p=$(kafka_pid); [[ -n "$p" ]] && pid_matches "$p" "$KAFKA_PROPS"; }

kafka_render_config() {
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  local tmp="$KAFKA_PROPS.tmp"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" \
      -e "s|@KAFKA_NUM_PARTITIONS@|$TOPIC_PARTITIONS|g" \
      "$KAFKA_SRC/server.properties.template" >"$tmp"
  mv "$tmp" "$KAFKA_PROPS"
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
  rm -f "$KAFKA_TOPICS_MARKER"
  run_logged "kafka StorageTool format" kafka_tool 120 kafka.tools.StorageTool format \
    --standalone -t "$cid" -c "$KAFKA_PROPS"
}

kafka_launch() {
  if kafka_running; then return 0; fi
  check_port_free "$KAFKA_PORT" kafka
  check_port_free "$KAFKA_CONTROLLER_PORT" "kafka controller"
  kafka_render_config
  kafka_format_storage
  rm -f "$KAFKA_PID"
  log "starting kafka"
  # setsid: own session, survives the calling shell; exec keeps $! == java pid
  setsid nohup java -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dkafka.logs.dir="$KAFKA_LOGS" \
    -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
    >>"$KAFKA_LOGS/kafka.out" 2>&1 </dev/null 9>&- &
  echo $! >"$KAFKA_PID"
  KAFKA_JUST_STARTED=1
  say "kafka: started (pid $!), waiting for it to become healthy"
}

KAFKA_TOPIC_LIST=""
KAFKA_TOPIC_LIST_VALID=0

kafka_list_topics() {
  local out
  if out=$(kafka_tool 60 org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list 2>>"$STACK_LOG"); then
    KAFKA_TOPIC_LIST="$out"
    KAFKA_TOPIC_LIST_VALID=1
    return 0
  fi
  return 1
}

kafka_wait() {
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) pid; pid=$(kafka_pid)
  while ! port_open "$KAFKA_PORT"; do
    kafka_running || die_log "kafka (pid $pid) exited during startup" "$KAFKA_LOGS/server.log"
    (( SECONDS < deadline )) || die_log "kafka did not open port $KAFKA_PORT within ${KAFKA_START_TIMEOUT}s" "$KAFKA_LOGS/server.log"
    sleep 0.5
  done
  if [[ "${KAFKA_JUST_STARTED:-0}" == 1 ]]; then
    # a real round-trip through the Admin API (one JVM launch, usually enough)
    until kafka_list_topics; do
      kafka_running || die_log "kafka (pid $pid) exited during startup" "$KAFKA_LOGS/server.log"
      (( SECONDS < deadline )) || die_log "kafka did not answer TopicCommand --list within ${KAFKA_START_TIMEOUT}s" "$KAFKA_LOGS/server.log"
      sleep 1
    done
    say "kafka: healthy on 127.0.0.1:$KAFKA_PORT (pid $pid)"
  else
    say "kafka: already running (pid $pid, port $KAFKA_PORT)"
  fi
}

kafka_topics_spec() {
  printf '%s:%s %s:%s %s:%s %s:%s\n' \
    "$RANK_TOPIC" "$TOPIC_PARTITIONS" "$CRAWL_TOPIC" "$TOPIC_PARTITIONS" \
    "$CLICK_TOPIC" "$TOPIC_PARTITIONS" "$DEAD_LETTER_TOPIC" "$DEAD_LETTER_PARTITIONS"
}

kafka_provision() {
  local spec; spec=$(kafka_topics_spec)
  if [[ -f "$KAFKA_TOPICS_MARKER" && "$(cat "$KAFKA_TOPICS_MARKER")" == "$spec" ]]; then
    say "kafka: topics already provisioned"
    return 0
  fi
  if (( ! KAFKA_TOPIC_LIST_VALID )); then
    kafka_list_topics || die_log "kafka: TopicCommand --list failed" "$STACK_LOG"
  fi
  local item topic parts created=() pids=() i
  for item in $spec; do
    topic="${item%:*}" parts="${item##*:}"
    if grep -qxF "$topic" <<<"$KAFKA_TOPIC_LIST"; then continue; fi
    created+=("$topic:$parts")
  done
  # create the missing topics in parallel: each TopicCommand is a JVM launch
  for item in "${created[@]}"; do
    topic="${item%:*}" parts="${item##*:}"
    log "+ TopicCommand --create --if-not-exists --topic $topic --partitions $parts"
    kafka_tool 90 org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_PORT" --create --if-not-exists \
      --topic "$topic" --partitions "$parts" --replication-factor 1 \
      >>"$STACK_LOG" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { failed=1; warn "creating topic ${created[$i]%:*} failed"; }
  done
  (( ! failed )) || die_log "kafka: topic creation failed" "$STACK_LOG"
  printf '%s\n' "$spec" >"$KAFKA_TOPICS_MARKER"
  if ((${#created[@]})); then
    say "kafka: topics created: ${created[*]}"
  else
    say "kafka: topics already present"
  fi
}

kafka_stop() {
  local pid; pid=$(kafka_pid)
  if [[ -n "$pid" ]] && pid_matches "$pid" "$KAFKA_PROPS"; then
    say "kafka: stopping (pid $pid)"
    kill_pid "$pid" "$KAFKA_PROPS"
    say "kafka: stopped"
  else
    say "kafka: not running"
  fi
  rm -f "$KAFKA_PID"
}

# --------------------------------------------------------------- postgres --
PG_BIN=""
pg_as() { runuser -u postgres -- "$@"; }

pg_pid() { read_pid "$PG_DATA/postmaster.pid"; }
pg_running() { local p; p=$(pg_pid); [[ -n "$p" ]] && pid_matches "$p" "$PG_DATA"; }

pg_write_config() {
  local conf="$PG_DATA/sluice.conf" tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Written by infra/stack.sh on every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK_DIR'
max_connections = 200
# 1GB of a 24 GiB machine shared with Kafka and ClickHouse: the aggregate tables' primary-key indexes
# of a 10-minute load run (tens of millions of rows) stay in PostgreSQL's own cache.
shared_buffers = 1GB
fsync = on
# Write-heavy upserts: fewer, spread-out checkpoints. With the default 1GB of WAL, 100k events/s load
# runs logged "checkpoints are occurring too frequently" 49 times (4-29 s apart, median 13), each checkpoint
# followed by full-page images in the WAL. Reloadable settings.
max_wal_size = 4GB
min_wal_size = 1GB
checkpoint_timeout = 15min
checkpoint_completion_target = 0.9
password_encryption = scram-sha-256
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
  install -o postgres -g postgres -m 0600 "$tmp" "$conf"
  rm -f "$tmp"
  grep -q "^include_if_exists = 'sluice.conf'" "$PG_DATA/postgresql.conf" ||
    printf "\ninclude_if_exists = 'sluice.conf'\n" >>"$PG_DATA/postgresql.conf"
  tmp=$(mktemp)
  cat >"$tmp" <<'EOF'
# Written by infra/stack.sh. Local dev only.
# TYPE  DATABASE  USER      ADDRESS         METHOD
local   all       postgres                  trust
local   all       all                       scram-sha-256
host    all       all       127.0.0.1/32    scram-sha-256
host    all       all       ::1/128         scram-sha-256
EOF
  install -o postgres -g postgres -m 0600 "$tmp" "$PG_DATA/pg_hba.conf"
  rm -f "$tmp"
}

# After a kill -9 of the postmaster: its backends may linger a moment, and its
# lock files (postmaster.pid, socket .lock) name a pid that can still exist as
# an unreaped zombie (PID 1 in containers often does not reap), which makes
# postgres refuse to start. Kill the orphans, then drop the stale locks.
pg_cleanup_stale() {
  local old i
  old=$(pg_pid)
  if [[ -n "$old" ]]; then
    pkill -KILL -P "$old" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      pgrep -P "$old" >/dev/null 2>&1 || break
      sleep 0.2
    done
  fi
  if [[ -f "$PG_DATA/postmaster.pid" ]]; then
    log "removing stale $PG_DATA/postmaster.pid (pid ${old:-?} is gone)"
    rm -f "$PG_DATA/postmaster.pid"
  fi
  if [[ -e "$PG_SOCK_DIR/.s.PGSQL.$PG_PORT.lock" ]]; then
    log "removing stale socket lock $PG_SOCK_DIR/.s.PGSQL.$PG_PORT.lock"
    rm -f "$PG_SOCK_DIR/.s.PGSQL.$PG_PORT.lock" "$PG_SOCK_DIR/.s.PGSQL.$PG_PORT"
  fi
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
  pg_cleanup_stale
  log "starting postgres"
  say "postgres: starting"
  if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" start >>"$STACK_LOG" 2>&1 </dev/null 9>&-; then
    die_log "postgres failed to start" "$PG_LOG"
  fi
  PG_JUST_STARTED=1
}

pg_wait() {
  PG_BIN=$(pg_bindir)
  local deadline=$((SECONDS + PG_START_TIMEOUT))
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
    pg_running || die_log "postgres is not running" "$PG_LOG"
    (( SECONDS < deadline )) || die_log "postgres not ready on 127.0.0.1:$PG_PORT within ${PG_START_TIMEOUT}s" "$PG_LOG"
    sleep 0.5
  done
  if [[ "${PG_JUST_STARTED:-0}" == 1 ]]; then
    say "postgres: healthy on 127.0.0.1:$PG_PORT (pid $(pg_pid))"
  else
    say "postgres: already running (pid $(pg_pid), port $PG_PORT)"
  fi
}

# psql single-quoted backslash-command argument: escape \ and '
psql_quote() { local s="${1//\\/\\\\}"; printf "'%s'" "${s//\'/\'\'}"; }

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
  local pid; pid=$(pg_pid)
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
ch_running() { local p; p=$(read_pid "$CH_PID"); [[ -n "$p" ]] && pid_matches "$p" "$CH_CONFIG"; }

ch_write_config() {
  mkdir -p "$CH_DATA" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$CH_LOGS"
  cat >"$CH_CONFIG.tmp" <<EOF
<?xml version="1.0"?>
<!-- Written by infra/stack.sh on every start (ClickHouse 18.16 format). -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_LOGS/clickhouse-server.log</log>
        <errorlog>$CH_LOGS/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>

    <listen_host>127.0.0.1</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <!-- no interserver_http_port: replication is not used, the port stays closed -->

    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>

    <path>$CH_DATA/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>

    <users_config>$CH_USERS</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>

    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>

    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>

    <dictionaries_config>*_dictionary.xml</dictionaries_config>
</yandex>
EOF
  mv "$CH_CONFIG.tmp" "$CH_CONFIG"
  cat >"$CH_USERS.tmp" <<'EOF'
<?xml version="1.0"?>
<!-- Written by infra/stack.sh (ClickHouse 18.16 format). Local dev only:
     user "default" has no password and is reachable from loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
            <!-- Filters reach a view's table (click_hour over click_minute, migration 0003): the
                 default from 19.x on, off in 18.16. -->
            <enable_optimize_predicate_expression>1</enable_optimize_predicate_expression>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
    </profiles>

    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>

    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
  mv "$CH_USERS.tmp" "$CH_USERS"
}

ch_ping() { [[ "$(curl -s --max-time 2 "http://127.0.0.1:$CH_HTTP_PORT/ping" 2>/dev/null)" == "Ok." ]]; }

ch_launch() {
  if ch_running; then return 0; fi
  check_port_free "$CH_HTTP_PORT" "clickhouse http"
  check_port_free "$CH_TCP_PORT" "clickhouse tcp"
  ch_write_config
  local cmd; cmd=$(ch_server_cmd)
  rm -f "$CH_PID"
  log "starting clickhouse: $cmd"
  # runs fine as root (18.16 does not refuse); $cmd may be "clickhouse server"
  # shellcheck disable=SC2086
  setsid nohup $cmd --config-file="$CH_CONFIG" >>"$CH_LOGS/stdout.log" 2>&1 </dev/null 9>&- &
  echo $! >"$CH_PID"
  CH_JUST_STARTED=1
  say "clickhouse: started (pid $!)"
}

ch_wait() {
  local deadline=$((SECONDS + CH_START_TIMEOUT)) pid; pid=$(read_pid "$CH_PID")
  until ch_ping; do
    ch_running || die_log "clickhouse (pid $pid) exited during startup" "$CH_LOGS/clickhouse-server.err.log"
    (( SECONDS < deadline )) || die_log "clickhouse did not answer /ping within ${CH_START_TIMEOUT}s" "$CH_LOGS/clickhouse-server.log"
    sleep 0.5
  done
  if [[ "${CH_JUST_STARTED:-0}" == 1 ]]; then
    say "clickhouse: healthy on 127.0.0.1:$CH_HTTP_PORT (pid $pid)"
  else
    say "clickhouse: already running (pid $pid, port $CH_HTTP_PORT)"
  fi
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

ch_stop() {
  local pid; pid=$(read_pid "$CH_PID")
  if [[ -n "$pid" ]] && pid_matches "$pid" "$CH_CONFIG"; then
    say "clickhouse: stopping (pid $pid)"
    kill_pid "$pid" "$CH_CONFIG"
    say "clickhouse: stopped"
  else
    say "clickhouse: not running"
  fi
  rm -f "$CH_PID"
}

# ------------------------------------------------------------------ common --
check_port_free() {
  if port_open "$1"; then
    die "port $1 ($2) is already in use by another process: $(port_owner "$1")"
  fi
}

# fd 9 holds the lock; every daemon launch closes it (9>&-) so that a running
# server never keeps the lock after this script exits.
with_lock() {
  exec 9>"$STATE/.lock"
  if ! flock -w 300 9; then die "another infra/stack.sh holds $STATE/.lock"; fi
}

valid_component() {
  case "${1:-}" in kafka|postgres|clickhouse) return 0 ;; esac
  die "unknown component '${1:-}' (expected kafka|postgres|clickhouse)"
}

start_one() {
  case "$1" in
    kafka)      kafka_launch; kafka_wait; kafka_provision ;;
    postgres)   pg_launch; pg_wait; pg_provision ;;
    clickhouse) ch_launch; ch_wait; ch_provision ;;
  esac
}

stop_one() {
  case "$1" in
    kafka) kafka_stop ;;
    postgres) pg_stop ;;
    clickhouse) ch_stop ;;
  esac
}

status_line() {
  local name="$1" pid="$2" pattern="$3" port="$4" health
  if [[ -n "$pid" ]] && pid_matches "$pid" "$pattern"; then
    if port_open "$port"; then health="listening"; else health="port-closed"; fi
    printf '%-11s running  pid %-7s port %-5s %s\n' "$name" "$pid" "$port" "$health"
  else
    printf '%-11s stopped  pid %-7s port %-5s\n' "$name" "-" "$port"
  fi
}

cmd_status() {
  status_line kafka "$(kafka_pid)" "$KAFKA_PROPS" "$KAFKA_PORT"
  status_line postgres "$(pg_pid)" "$PG_DATA" "$PG_PORT"
  status_line clickhouse "$(read_pid "$CH_PID")" "$CH_CONFIG" "$CH_HTTP_PORT"
}

urlencode() {
  local s="$1" out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [a-zA-Z0-9.~_-]) out+="$c" ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

cmd_env() {
  cat <<EOF
export SLUICE_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export SLUICE_POSTGRES_URL=postgres://$PG_USER:$(urlencode "$PG_PASSWORD")@127.0.0.1:$PG_PORT/$PG_DB
export SLUICE_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT
export SLUICE_CLICKHOUSE_DATABASE=$CH_DB
EOF
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
  env                print export lines for the default endpoints
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
      kafka_provision
      say "up: done in $((SECONDS - T0))s (state: $STATE; 'infra/stack.sh env' prints the endpoints)"
      ;;
    down)
      kafka_stop
      ch_stop
      pg_stop
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
