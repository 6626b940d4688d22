# shellcheck shell=bash
# Process and package helpers shared by the stack scripts (infra/stack.sh, infra/cluster.sh; sourced, not
# run): output and logging, pid files that cannot be fooled by pid reuse, starting servers detached,
# waiting for health, stopping with SIGTERM then SIGKILL, apt installs that do not start Debian's own
# services, and the server binaries' locations.
#
# Needs: STACK_LOG (a log file), STOP_TIMEOUT (seconds), LOG_TAG (the prefix of messages, default "stack"),
# and STATE (the lock lives there).
# ------------------------------------------------------------------ output --
# shellcheck disable=SC2034 # T0: when the script started, for its "done in Ns" lines
T0=$SECONDS
say()  { printf '[%s] %s\n' "${LOG_TAG:-stack}" "$*"; }
log()  { printf '%s %s\n' "$(date '+%F %T')" "$*" >>"$STACK_LOG"; }
warn() { printf '[%s] WARNING: %s\n' "${LOG_TAG:-stack}" "$*" >&2; log "WARNING: $*"; }
die()  { printf '[%s] ERROR: %s\n' "${LOG_TAG:-stack}" "$*" >&2; log "ERROR: $*"; exit 1; }

# die with the tail of a log file
die_log() {
  local msg="$1" file="$2"
  printf '[%s] ERROR: %s\n' "${LOG_TAG:-stack}" "$msg" >&2
  log "ERROR: $msg"
  if [[ -f "$file" ]]; then
    printf '[%s] ---- last 40 lines of %s ----\n' "${LOG_TAG:-stack}" "$file" >&2
    tail -n 40 "$file" >&2 || true
    printf '[%s] ----\n' "${LOG_TAG:-stack}" >&2
  fi
  exit 1
}

# run a command, output to stack.log; on failure print its tail and die
run_logged() {
  local what="$1"; shift
  log "+ $*"
  local mark; mark=$(wc -l <"$STACK_LOG")
  if ! "$@" >>"$STACK_LOG" 2>&1; then
    printf '[%s] ERROR: %s failed (full log: %s)\n' "${LOG_TAG:-stack}" "$what" "$STACK_LOG" >&2
    tail -n "+$((mark + 1))" "$STACK_LOG" | tail -n 40 >&2
    exit 1
  fi
}

# ------------------------------------------------------------- processes --
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# who listens on a port (for error messages)
port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | head -n1 | sed 's/  */ /g' || true; }

check_port_free() {
  if port_open "$1"; then
    die "port $1 ($2) is already in use by another process: $(port_owner "$1")"
  fi
}

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

# daemon_running PIDFILE PATTERN: the pid file names a live process whose command line has PATTERN
# (each server's own config or data path, so no other instance on this machine is mistaken for it).
daemon_running() { local p; p=$(read_pid "$1"); [[ -n "$p" ]] && pid_matches "$p" "$2"; }

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

# spawn PIDFILE LOG COMMAND...: starts a server in its own session (it survives this shell), output to
# LOG, fd 9 (the lock) closed, its pid in PIDFILE.
spawn() {
  local pidfile="$1" out="$2"; shift 2
  rm -f "$pidfile"
  log "starting: $*"
  setsid nohup "$@" >>"$out" 2>&1 </dev/null 9>&- &
  local pid=$! self i
  echo "$pid" >"$pidfile"
  # Until the child has exec'd, its command line is this script's (a fork of it): a check of the pid
  # against the server's config path would find "not running" (seen on a loaded machine). Wait for the
  # exec, at most 5 s.
  self=$(tr '\0' ' ' <"/proc/$$/cmdline")
  for ((i = 0; i < 50; i++)); do
    [[ -r "/proc/$pid/cmdline" && "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == "$self" ]] || break
    sleep 0.1
  done
}

# wait_until NAME TIMEOUT LOG PIDFILE PATTERN PROBE...: polls PROBE until it succeeds; dies with LOG's
# tail if the server exits meanwhile or TIMEOUT seconds pass.
wait_until() {
  local name="$1" timeout="$2" logfile="$3" pidfile="$4" pattern="$5"; shift 5
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    daemon_running "$pidfile" "$pattern" || die_log "$name (pid $(read_pid "$pidfile")) is not running" "$logfile"
    (( SECONDS < deadline )) || die_log "$name: '$*' did not succeed within ${timeout}s" "$logfile"
    sleep 0.5
  done
}

# report_up NAME JUST_STARTED PIDFILE PORT
report_up() {
  if [[ "$2" == 1 ]]; then say "$1: healthy on 127.0.0.1:$4 (pid $(read_pid "$3"))"
  else say "$1: already running (pid $(read_pid "$3"), port $4)"; fi
}

# stop_daemon NAME PIDFILE PATTERN: SIGTERM, SIGKILL after STOP_TIMEOUT.
stop_daemon() {
  local pid; pid=$(read_pid "$2")
  if [[ -n "$pid" ]] && pid_matches "$pid" "$3"; then
    say "$1: stopping (pid $pid)"
    kill_pid "$pid" "$3"
    say "$1: stopped"
  else
    say "$1: not running"
  fi
  rm -f "$2"
}

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

# psql single-quoted backslash-command argument: escape \ and '
psql_quote() { local s="${1//\\/\\\\}"; printf "'%s'" "${s//\'/\'\'}"; }

# kill_daemon NAME PIDFILE PATTERN: SIGKILL (a crash: no shutdown, no cleanup), if it runs.
kill_daemon() {
  local pid; pid=$(read_pid "$2")
  if [[ -n "$pid" ]] && pid_matches "$pid" "$3"; then
    say "$1: SIGKILL (pid $pid)"
    kill_pid "$pid" "$3" KILL
  else
    say "$1: not running"
  fi
}

# status_line NAME PID PATTERN PORT: one line of `status`.
status_line() {
  local name="$1" pid="$2" pattern="$3" port="$4" health
  if [[ -n "$pid" ]] && pid_matches "$pid" "$pattern"; then
    if port_open "$port"; then health="listening"; else health="port-closed"; fi
    printf '%-11s running  pid %-7s port %-5s %s\n' "$name" "$pid" "$port" "$health"
  else
    printf '%-11s stopped  pid %-7s port %-5s\n' "$name" "-" "$port"
  fi
}

# postmaster_cleanup_stale PIDFILE SOCKET_DIR PORT: after a SIGKILL of a PostgreSQL postmaster, kill its
# orphaned backends (the children of the pid in PIDFILE: this server's only) and drop its stale lock
# files: the pid they name may survive as an unreaped zombie (PID 1 in containers often does not reap)
# and make postgres refuse to start.
postmaster_cleanup_stale() {
  local pidfile="$1" sock="$2/.s.PGSQL.$3" old i
  old=$(read_pid "$pidfile")
  if [[ -n "$old" ]]; then
    pkill -KILL -P "$old" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      pgrep -P "$old" >/dev/null 2>&1 || break
      sleep 0.2
    done
  fi
  if [[ -f "$pidfile" ]]; then
    log "removing stale $pidfile (pid ${old:-?} is gone)"
    rm -f "$pidfile"
  fi
  if [[ -e "$sock.lock" ]]; then
    log "removing stale socket lock $sock.lock"
    rm -f "$sock.lock" "$sock"
  fi
}

# ------------------------------------------------------------------ common --
# fd 9 holds the lock; every daemon launch closes it (9>&-) so that a running
# server never keeps the lock after this script exits.
with_lock() {
  exec 9>"$STATE/.lock"
  if ! flock -w 300 9; then die "another ${LOG_TAG:-stack} script holds $STATE/.lock"; fi
}

# urlencode STRING: percent-encodes everything but unreserved characters (for passwords in URLs).
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

