# shellcheck shell=bash
# The cluster stack's PostgreSQL (sourced by infra/cluster.sh, not run): two PostgreSQL nodes, pg1
# (127.0.0.1:15432) and pg2 (25432), one the primary and the other its streaming hot standby (made with
# pg_basebackup -R, a physical replication slot per standby), and PgBouncer (127.0.0.1:16432, transaction
# pooling) in front of the primary. TLS everywhere on TCP: the nodes and PgBouncer present the stack CA's
# server certificate (clients can use sslmode=verify-full), PgBouncer verifies the node's (verify-full).
# Users: `sluice` (CREATEDB CREATEROLE, password $SECRETS/postgres-password) owning database `sluice`, and
# `replicator` (REPLICATION, password $SECRETS/postgres-replicator-password) for the standby.
#
# Which node is the primary is in $STATE/postgres/primary (pg1 at first). Files: $STATE/pg1, $STATE/pg2
# (data, log, socket; owned by postgres) and $STATE/pgbouncer. Configs: infra/cluster/postgres/ and
# infra/cluster/pgbouncer/, rendered on every start.
#
#   pgc_up | pgc_down | pgc_status | pgc_packages
#   pgc_node_start NODE | pgc_node_stop NODE | pgc_node_kill NODE (SIGKILL)   NODE: pg1 | pg2 | pgbouncer
#   pgc_primary    prints pg1 or pg2
#   pgc_failover   promotes the standby (the primary is dead, or is stopped first) and points PgBouncer at it
#   pgc_rejoin     re-makes the node that is not the primary as its standby (fresh pg_basebackup)
#
# Needs: STATE (absolute), SECRETS, STACK_LOG, STOP_TIMEOUT, LOG_TAG, the helpers of infra/lib.sh,
# infra/lib/daemons.sh and infra/cluster/ca.sh; root (runs the servers as the postgres user). Settings:
# SLUICE_CLUSTER_PG_START_TIMEOUT.

PGC_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/postgres"
PGB_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/pgbouncer"
PGC_NODES=(pg1 pg2)
PGC_USER=sluice
PGC_DB=sluice
PGB_PORT=16432
PGC_START_TIMEOUT="${SLUICE_CLUSTER_PG_START_TIMEOUT:-60}"

pgc_packages() {
  [[ -n "$(pg_bindir)" ]] || echo postgresql
  command -v psql >/dev/null 2>&1 || echo postgresql-client
  command -v pgbouncer >/dev/null 2>&1 || echo pgbouncer
  return 0
}

# pgc_as CMD...: CMD as the postgres user, without the caller's libpq settings (a PGPASSWORD in the
# environment would win over the replication passfile).
pgc_as() {
  runuser -u postgres -- env -u PGPASSWORD -u PGPASSFILE -u PGUSER -u PGHOST -u PGHOSTADDR -u PGPORT \
    -u PGDATABASE -u PGSSLMODE -u PGSERVICE "$@"
}

pgc_other() { if [[ "$1" == pg1 ]]; then echo pg2; else echo pg1; fi; }

pgc_port_of() { if [[ "$1" == pg1 ]]; then echo 15432; else echo 25432; fi; }

# pgc_node NODE: sets the node's port and paths; dies on an unknown name.
pgc_node() {
  case "${1:-}" in
    pg1 | pg2) ;;
    *) die "unknown PostgreSQL node '${1:-}' (expected pg1|pg2)" ;;
  esac
  PGC_NAME="$1"
  PGC_PORT=$(pgc_port_of "$1")
  PGC_DIR="$STATE/$1"
  PGC_DATA="$PGC_DIR/data"
  PGC_PIDFILE="$PGC_DATA/postmaster.pid"
  PGC_LOG="$PGC_DIR/log/postgres.log"
  PGC_SOCK_DIR="$PGC_DIR/run"
  # A unix socket path must fit in sun_path (107 bytes); deep CI clones may not.
  if (( ${#PGC_SOCK_DIR} + 16 > 100 )); then
    PGC_SOCK_DIR="/tmp/sluice-$1-$(printf '%s' "$STATE" | md5sum | cut -c1-12)"
  fi
  PGC_BIN=$(pg_bindir)
  PGC_META="$STATE/postgres"
  PGC_PASSFILE="$PGC_META/pgpass"
}

pgc_running() { daemon_running "$PGC_PIDFILE" "$PGC_DATA"; }

pgc_ready() { "$PGC_BIN/pg_isready" -q -h "$PGC_SOCK_DIR" -p "$PGC_PORT" -U postgres -d postgres; }

# pgc_sql SQL...: runs SQL (stdin) on the current node as postgres over its unix socket; prints the rows.
pgc_sql() {
  pgc_as "$PGC_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$PGC_SOCK_DIR" -p "$PGC_PORT" -U postgres -d postgres "$@"
}

pgc_in_recovery() { [[ "$(pgc_sql -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == t ]]; }

# ------------------------------------------------------------------ state --
pgc_primary() {
  local f="$STATE/postgres/primary" p=pg1
  if [[ -s "$f" ]]; then p=$(head -n1 "$f"); fi
  case "$p" in pg1 | pg2) echo "$p" ;; *) die "$f names '$p' (expected pg1|pg2)" ;; esac
}

pgc_set_primary() {
  mkdir -p "$STATE/postgres"
  printf '%s\n' "$1" >"$STATE/postgres/primary.tmp"
  mv "$STATE/postgres/primary.tmp" "$STATE/postgres/primary"
  log "postgres: the primary is now $1"
}

# The shared bits: the replication password file (libpq passfile of the standby's walreceiver and of
# pg_basebackup, owned by postgres) and the directory the state file lives in.
pgc_meta() {
  secret_ensure postgres-password
  secret_ensure postgres-replicator-password
  mkdir -p "$STATE/postgres"
  ensure_traversable "$STATE" postgres
  local tmp; tmp=$(mktemp)
  printf '*:*:*:replicator:%s\n' "$(<"$SECRETS/postgres-replicator-password")" >"$tmp"
  install -o postgres -g postgres -m 0600 "$tmp" "$STATE/postgres/pgpass"
  rm -f "$tmp"
}

# ------------------------------------------------------------------ nodes --
# The server settings, client authentication and TLS files of the current node, on every start.
pgc_write_config() {
  local tmp
  tmp=$(mktemp)
  render_template "$PGC_SRC/sluice.conf.template" "$tmp" PGC_NAME PGC_PORT PGC_SOCK_DIR ||
    die "$PGC_NAME: cannot render $PGC_SRC/sluice.conf.template"
  install -o postgres -g postgres -m 0600 "$tmp" "$PGC_DATA/sluice.conf"
  rm -f "$tmp"
  install -o postgres -g postgres -m 0600 "$PGC_SRC/pg_hba.conf" "$PGC_DATA/pg_hba.conf"
  install -o postgres -g postgres -m 0600 "$SECRETS/server.pem" "$PGC_DATA/server.pem"
  install -o postgres -g postgres -m 0600 "$SECRETS/server.key" "$PGC_DATA/server.key"
  grep -q "^include_if_exists = 'sluice.conf'" "$PGC_DATA/postgresql.conf" ||
    printf "\ninclude_if_exists = 'sluice.conf'\n" >>"$PGC_DATA/postgresql.conf"
}

pgc_dirs() {
  mkdir -p "$PGC_DIR/log" "$PGC_SOCK_DIR"
  chown postgres:postgres "$PGC_DIR" "$PGC_DIR/log" "$PGC_SOCK_DIR"
  chmod 0700 "$PGC_DIR"
}

# A new primary: initdb (only when the node has no data).
pgc_initdb() {
  say "$PGC_NAME: initdb ($PGC_BIN)"
  rm -rf "$PGC_DATA"
  install -d -o postgres -g postgres -m 0700 "$PGC_DATA"
  run_logged "initdb $PGC_NAME" pgc_as "$PGC_BIN/initdb" -D "$PGC_DATA" -U postgres -E UTF8 \
    --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
}

# pgc_basebackup FROM: the current node's data directory replaced by a fresh copy of node FROM (the
# primary, running), made a standby of it: standby.signal and primary_conninfo (pg_basebackup -R), through
# its replication slot named after this node, over TLS (verify-full) as `replicator`.
pgc_basebackup() {
  local from="$1" me="$PGC_NAME" from_port
  from_port=$(pgc_port_of "$from")
  # the slot, on the primary (re-made: an old one would hold WAL from before this copy)
  ( pgc_node "$from"
    pgc_sql >>"$STACK_LOG" 2>&1 <<EOF
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$me' AND NOT active;
SELECT pg_create_physical_replication_slot('$me', true)
 WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$me');
EOF
  ) || die_log "$me: cannot make the replication slot '$me' on $from" "$STACK_LOG"
  say "$me: copying $from's data (pg_basebackup) to start as its standby"
  rm -rf "$PGC_DATA"
  install -d -o postgres -g postgres -m 0700 "$PGC_DATA"
  run_logged "pg_basebackup $from -> $me" pgc_as "$PGC_BIN/pg_basebackup" -D "$PGC_DATA" -R -X stream \
    -S "$me" -c fast -w \
    -d "host=localhost port=$from_port user=replicator passfile=$PGC_PASSFILE sslmode=verify-full sslrootcert=$SECRETS/ca.pem application_name=$me"
}

# pgc_start_node: starts the current node with the data it has (pgc_ensure_node decides what that is).
pgc_start_node() {
  if pgc_running; then return 0; fi
  if port_open "$PGC_PORT"; then
    stop_package_services "$PGC_PORT"
    sleep 0.5
  fi
  check_port_free "$PGC_PORT" "$PGC_NAME"
  pgc_dirs
  pgc_write_config
  postmaster_cleanup_stale "$PGC_PIDFILE" "$PGC_SOCK_DIR" "$PGC_PORT"
  say "$PGC_NAME: starting"
  if ! pgc_as "$PGC_BIN/pg_ctl" -D "$PGC_DATA" -l "$PGC_LOG" -w -t "$PGC_START_TIMEOUT" start >>"$STACK_LOG" 2>&1 </dev/null 9>&-; then
    die_log "$PGC_NAME failed to start" "$PGC_LOG"
  fi
  wait_until "$PGC_NAME" "$PGC_START_TIMEOUT" "$PGC_LOG" "$PGC_PIDFILE" "$PGC_DATA" pgc_ready
  say "$PGC_NAME: healthy on localhost:$PGC_PORT (pid $(read_pid "$PGC_PIDFILE"), $(pgc_role))"
}

pgc_role() { if pgc_in_recovery; then echo standby; else echo primary; fi; }

# pgc_stop_node [KILL]: fast shutdown (SIGINT; SIGKILL after STOP_TIMEOUT), or with KILL a SIGKILL of the
# postmaster and its children (as if the machine died).
pgc_stop_node() {
  local pid; pid=$(read_pid "$PGC_PIDFILE")
  if [[ -z "$pid" ]] || ! pid_matches "$pid" "$PGC_DATA"; then
    say "$PGC_NAME: not running"
    return 0
  fi
  if [[ "${1:-}" == KILL ]]; then
    say "$PGC_NAME: SIGKILL (pid $pid and its children)"
    kill -KILL "$pid" 2>/dev/null || true
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill_pid "$pid" "$PGC_DATA" KILL
    return 0
  fi
  say "$PGC_NAME: stopping (pid $pid)"
  if ! pgc_as "$PGC_BIN/pg_ctl" -D "$PGC_DATA" -m fast -w -t "$STOP_TIMEOUT" stop >>"$STACK_LOG" 2>&1; then
    warn "$PGC_NAME: pg_ctl stop failed or timed out, killing pid $pid"
    kill_pid "$pid" "$PGC_DATA" KILL
    pkill -KILL -P "$pid" 2>/dev/null || true
  fi
  say "$PGC_NAME: stopped"
}

# pgc_is_standby_data: the current node's data directory is a standby's (standby.signal).
pgc_is_standby_data() { [[ -f "$PGC_DATA/standby.signal" ]]; }

# pgc_ensure_node NODE: the node running in its role: the primary (initdb if it has no data yet), or a
# standby of the primary (a fresh copy when it has no data or its data is not a standby's, e.g. the old
# primary after a failover).
pgc_ensure_node() {
  local primary; primary=$(pgc_primary)
  pgc_meta
  pgc_node "$1"
  if [[ "$1" == "$primary" ]]; then
    if [[ ! -f "$PGC_DATA/PG_VERSION" ]]; then
      pgc_dirs
      pgc_initdb
    fi
    pgc_start_node
    if pgc_in_recovery; then
      die "$1 is the primary (per $STATE/postgres/primary) but runs as a standby; fix the file or run postgres-failover"
    fi
    return 0
  fi
  if [[ -f "$PGC_DATA/PG_VERSION" ]] && pgc_is_standby_data; then
    pgc_start_node
    return 0
  fi
  # needs the primary up to copy from
  ( pgc_node "$primary"; pgc_running ) || pgc_ensure_node "$primary"
  pgc_node "$1"
  if pgc_running; then
    warn "$1: runs outside replication (not a standby of $primary): stopping it to re-make it as a standby"
    pgc_stop_node
  fi
  pgc_dirs
  pgc_basebackup "$primary"
  pgc_start_node
}

# pgc_pw_stamp SECRET_NAME: a digest of the password file, to tell whether the role has it already.
pgc_pw_stamp() { sha256sum <"$SECRETS/$1" | cut -d' ' -f1; }

# The users and database, on the primary (idempotent; SQL through stdin so no password reaches argv or
# a log). A password is set when the role is made and again only when its file changed (a digest of the
# file that was set is kept in $STATE/postgres/*.set): every ALTER ROLE ... PASSWORD salts anew, and a
# new SCRAM secret would break PgBouncer's logins for the clients it authenticated with the old one.
pgc_provision() {
  pgc_node "$(pgc_primary)"
  local alter_pw=0 alter_rpw=0
  [[ "$(cat "$PGC_META/postgres-password.set" 2>/dev/null)" == "$(pgc_pw_stamp postgres-password)" ]] || alter_pw=1
  [[ "$(cat "$PGC_META/postgres-replicator-password.set" 2>/dev/null)" == "$(pgc_pw_stamp postgres-replicator-password)" ]] || alter_rpw=1
  if ! pgc_sql >>"$STACK_LOG" 2>&1 <<EOF
\\set pw $(psql_quote "$(<"$SECRETS/postgres-password")")
\\set rpw $(psql_quote "$(<"$SECRETS/postgres-replicator-password")")
SELECT format('CREATE ROLE %I LOGIN CREATEDB CREATEROLE PASSWORD %L', '$PGC_USER', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PGC_USER') \\gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB CREATEROLE', '$PGC_USER') \\gexec
SELECT format('ALTER ROLE %I PASSWORD %L', '$PGC_USER', :'pw') WHERE $alter_pw = 1 \\gexec
SELECT format('CREATE ROLE replicator LOGIN REPLICATION PASSWORD %L', :'rpw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'replicator') \\gexec
SELECT 'ALTER ROLE replicator LOGIN REPLICATION' \\gexec
SELECT format('ALTER ROLE replicator PASSWORD %L', :'rpw') WHERE $alter_rpw = 1 \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$PGC_DB', '$PGC_USER')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PGC_DB') \\gexec
EOF
  then
    die_log "postgres: provisioning roles/database on $PGC_NAME failed" "$STACK_LOG"
  fi
  (umask 077
   pgc_pw_stamp postgres-password >"$PGC_META/postgres-password.set"
   pgc_pw_stamp postgres-replicator-password >"$PGC_META/postgres-replicator-password.set")
}

# pgc_wait_streaming STANDBY: until the primary reports the standby streaming (or die after the timeout).
pgc_wait_streaming() {
  local standby="$1" deadline=$((SECONDS + PGC_START_TIMEOUT))
  pgc_node "$(pgc_primary)"
  until [[ "$(pgc_sql -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$standby' AND state = 'streaming'" 2>/dev/null)" == 1 ]]; do
    (( SECONDS < deadline )) || die_log "$standby: not streaming from $PGC_NAME within ${PGC_START_TIMEOUT}s" "$STATE/$standby/log/postgres.log"
    sleep 0.5
  done
  say "$standby: streaming from $PGC_NAME"
}

# --------------------------------------------------------------- pgbouncer --
pgb_paths() {
  PGB_DIR="$STATE/pgbouncer"
  PGB_INI="$PGB_DIR/pgbouncer.ini"
  PGB_PID="$PGB_DIR/pgbouncer.pid"
}

pgb_running() { pgb_paths; daemon_running "$PGB_PID" "$PGB_INI"; }

# The ini pointing at the current primary, the TLS files and the auth file (SCRAM secrets of `sluice` from
# the primary's pg_authid: the same on both nodes, so a failover leaves it valid).
pgb_write_config() {
  pgb_paths
  local primary secret tmp
  primary=$(pgc_primary)
  install -d -o postgres -g postgres -m 0700 "$PGB_DIR"
  # shellcheck disable=SC2034 # read by render_template (by name)
  local PGB_PRIMARY="$primary" PGB_PRIMARY_PORT
  # shellcheck disable=SC2034 # read by render_template (by name)
  PGB_PRIMARY_PORT=$(pgc_port_of "$primary")
  tmp=$(mktemp)
  render_template "$PGB_SRC/pgbouncer.ini.template" "$tmp" PGB_PRIMARY PGB_PRIMARY_PORT PGB_PORT PGB_DIR ||
    die "pgbouncer: cannot render $PGB_SRC/pgbouncer.ini.template"
  install -o postgres -g postgres -m 0600 "$tmp" "$PGB_INI.new"
  mv "$PGB_INI.new" "$PGB_INI"
  install -o postgres -g postgres -m 0600 "$SECRETS/server.pem" "$PGB_DIR/server.pem"
  install -o postgres -g postgres -m 0600 "$SECRETS/server.key" "$PGB_DIR/server.key"
  install -o postgres -g postgres -m 0644 "$SECRETS/ca.pem" "$PGB_DIR/ca.pem"
  # the auth file: from the primary when it answers, else the one written before
  secret=$( pgc_node "$primary"; pgc_sql -c "SELECT rolpassword FROM pg_authid WHERE rolname = '$PGC_USER'" 2>/dev/null ) || secret=""
  if [[ "$secret" == SCRAM-SHA-256\$* ]]; then
    printf '"%s" "%s"\n' "$PGC_USER" "$secret" >"$tmp"
    install -o postgres -g postgres -m 0600 "$tmp" "$PGB_DIR/userlist.txt"
  elif [[ ! -s "$PGB_DIR/userlist.txt" ]]; then
    rm -f "$tmp"
    die "pgbouncer: no SCRAM secret of '$PGC_USER' on $primary (is it up and provisioned?)"
  fi
  rm -f "$tmp"
}

pgb_ready() { port_open "$PGB_PORT"; }

# pgb_config_sum: a digest of the ini and the auth file (to reload a running PgBouncer when they change);
# on the first start they do not exist yet (cat fails: pipefail would stop `up`).
pgb_config_sum() { cat "$PGB_INI" "$PGB_DIR/userlist.txt" 2>/dev/null | sha256sum | cut -d' ' -f1 || true; }

pgb_start() {
  pgb_paths
  local before; before=$(pgb_config_sum)
  pgb_write_config
  if pgb_running; then
    if [[ "$(pgb_config_sum)" != "$before" ]]; then
      kill -HUP "$(read_pid "$PGB_PID")"
      say "pgbouncer: already running (pid $(read_pid "$PGB_PID"), port $PGB_PORT), config changed: reloaded"
    else
      say "pgbouncer: already running (pid $(read_pid "$PGB_PID"), port $PGB_PORT)"
    fi
    return 0
  fi
  check_port_free "$PGB_PORT" pgbouncer
  command -v pgbouncer >/dev/null 2>&1 || die "pgbouncer not found (apt package pgbouncer)"
  # -u: PgBouncer refuses to run as root; it switches to postgres itself (no fork: the pid stays ours).
  spawn "$PGB_PID" "$PGB_DIR/pgbouncer.log" "$(command -v pgbouncer)" -u postgres "$PGB_INI"
  wait_until pgbouncer 30 "$PGB_DIR/pgbouncer.log" "$PGB_PID" "$PGB_INI" pgb_ready
  say "pgbouncer: healthy on 127.0.0.1:$PGB_PORT (pid $(read_pid "$PGB_PID")) -> $(pgc_primary)"
}

# pgb_reload: the ini re-rendered (the current primary), SIGHUP: new server connections go there, old
# ones are closed as they come back to the pool.
pgb_reload() {
  pgb_write_config
  if pgb_running; then
    kill -HUP "$(read_pid "$PGB_PID")"
    say "pgbouncer: reloaded -> $(pgc_primary)"
  fi
}

pgb_stop() {
  pgb_paths
  if [[ "${1:-}" == KILL ]]; then
    kill_daemon pgbouncer "$PGB_PID" "$PGB_INI"
    return 0
  fi
  # SIGINT: "safe shutdown" would wait for clients; SIGTERM closes at once
  stop_daemon pgbouncer "$PGB_PID" "$PGB_INI"
}

# ------------------------------------------------------------------ public --
pgc_node_start() {
  case "${1:-}" in
    pgbouncer) pgb_start ;;
    pg1 | pg2)
      pgc_ensure_node "$1"
      if [[ "$1" == "$(pgc_primary)" ]]; then pgc_provision; else pgc_wait_streaming "$1"; fi
      ;;
    *) die "unknown PostgreSQL node '${1:-}' (expected pg1|pg2|pgbouncer)" ;;
  esac
}

pgc_node_stop() {
  case "${1:-}" in
    pgbouncer) pgb_stop ;;
    *) pgc_node "$1"; pgc_stop_node ;;
  esac
}

pgc_node_kill() {
  case "${1:-}" in
    pgbouncer) pgb_stop KILL ;;
    *) pgc_node "$1"; pgc_stop_node KILL ;;
  esac
}

pgc_up() {
  local primary standby
  primary=$(pgc_primary)
  standby=$(pgc_other "$primary")
  pgc_ensure_node "$primary"
  pgc_provision
  pgc_ensure_node "$standby"
  pgc_wait_streaming "$standby"
  pgb_start
  say "postgres: primary $primary, standby $standby, PgBouncer on 127.0.0.1:$PGB_PORT; role '$PGC_USER', database '$PGC_DB'"
}

pgc_down() {
  pgb_stop
  # the standby first: the primary's fast shutdown then does not wait on its walsender
  local primary; primary=$(pgc_primary)
  pgc_node "$(pgc_other "$primary")"; pgc_stop_node
  pgc_node "$primary"; pgc_stop_node
}

pgc_failover() {
  local old new
  old=$(pgc_primary)
  new=$(pgc_other "$old")
  pgc_node "$old"
  if pgc_running; then
    # never two primaries: the old one goes down first
    warn "postgres-failover: $old still runs: stopping it before promoting $new"
    pgc_stop_node
  fi
  pgc_node "$new"
  pgc_running || die "postgres-failover: $new is not running (nothing to promote)"
  pgc_in_recovery || die "postgres-failover: $new is not a standby"
  local t0=$SECONDS
  say "$new: promoting (pg_ctl promote)"
  run_logged "pg_ctl promote $new" pgc_as "$PGC_BIN/pg_ctl" -D "$PGC_DATA" -w -t "$PGC_START_TIMEOUT" promote
  local deadline=$((SECONDS + PGC_START_TIMEOUT))
  # accepts writes: out of recovery and a transaction gets an xid (refused during recovery)
  until ! pgc_in_recovery && pgc_sql -c 'SELECT txid_current()' >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die_log "$new: does not accept writes ${PGC_START_TIMEOUT}s after promote" "$PGC_LOG"
    sleep 0.2
  done
  pgc_set_primary "$new"
  pgb_reload
  say "postgres-failover: $new is the primary ($((SECONDS - t0))s); 'postgres-rejoin' re-makes $old as its standby"
}

pgc_rejoin() {
  local primary old
  primary=$(pgc_primary)
  old=$(pgc_other "$primary")
  pgc_node "$primary"
  pgc_running || die "postgres-rejoin: the primary $primary is not running"
  pgc_node "$old"
  if pgc_running && pgc_is_standby_data && pgc_in_recovery; then
    say "$old: already a standby of $primary"
  else
    if pgc_running; then pgc_stop_node; fi
    pgc_meta
    pgc_dirs
    pgc_basebackup "$primary"
    pgc_start_node
  fi
  pgc_wait_streaming "$old"
}

pgc_status() {
  local node pid health primary
  primary=$(pgc_primary)
  for node in "${PGC_NODES[@]}"; do
    pgc_node "$node"
    pid=$(read_pid "$PGC_PIDFILE")
    if [[ -n "$pid" ]] && pid_matches "$pid" "$PGC_DATA"; then
      health=not-ready
      if pgc_ready; then health=$(pgc_role); fi
      printf '%-11s running  pid %-7s port %-5s %s\n' "$node" "$pid" "$PGC_PORT" "$health"
    else
      printf '%-11s stopped  pid %-7s port %-5s\n' "$node" - "$PGC_PORT"
    fi
  done
  pgb_paths
  pid=$(read_pid "$PGB_PID")
  if [[ -n "$pid" ]] && pid_matches "$pid" "$PGB_INI"; then
    health=port-closed
    if pgb_ready; then health="-> $primary"; fi
    printf '%-11s running  pid %-7s port %-5s %s\n' pgbouncer "$pid" "$PGB_PORT" "$health"
  else
    printf '%-11s stopped  pid %-7s port %-5s\n' pgbouncer - "$PGB_PORT"
  fi
}
