# shellcheck shell=bash
# The cluster stack's ClickHouse (sourced by infra/cluster.sh, not run): cluster `sluice`, one shard of two
# replicas, clickhouse1 and clickhouse2, two clickhouse-server processes (Debian's 18.16 package) coordinated
# by the stack's ZooKeeper. Replica N (1 or 2) listens on 127.0.0.1: HTTPS N8443 (the CA's server
# certificate), HTTP N8123 (plain, tooling and tests' verification only), native N9000, interserver N9009;
# its files are under $STATE/clickhouseN. Configs: infra/cluster/clickhouse/{config,users}.xml.template,
# rendered on every start. Users: `sluice` (password $SECRETS/clickhouse-password, stored as its SHA-256)
# and `default` (no password, loopback only). Each start creates the database `sluice` on that replica.
#
#   chc_up | chc_down | chc_status | chc_packages
#   chc_node_start NODE | chc_node_stop NODE | chc_node_kill NODE (SIGKILL)   NODE: clickhouse1 | clickhouse2
#
# Needs: STATE (absolute), SECRETS, STACK_LOG, STOP_TIMEOUT, LOG_TAG, the helpers of infra/lib.sh,
# infra/lib/daemons.sh and infra/cluster/ca.sh. Settings: SLUICE_CLUSTER_CH_START_TIMEOUT, and ZK_PORT
# (infra/cluster/zookeeper.sh).

CHC_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/clickhouse"
CHC_NODES=(clickhouse1 clickhouse2)
CHC_DB=sluice
CHC_START_TIMEOUT="${SLUICE_CLUSTER_CH_START_TIMEOUT:-60}"
# the nodes this script started (for the "healthy" / "already running" line)
declare -gA CHC_STARTED=()

chc_packages() {
  [[ -n "$(ch_server_cmd)" ]] || echo clickhouse-server
  command -v curl >/dev/null 2>&1 || echo curl
  return 0
}

# chc_node NODE: sets the replica's number, ports and paths; dies on an unknown name.
chc_node() {
  case "${1:-}" in
    clickhouse1) CHC_N=1 ;;
    clickhouse2) CHC_N=2 ;;
    *) die "unknown ClickHouse node '${1:-}' (expected clickhouse1|clickhouse2)" ;;
  esac
  CHC_NAME="$1"
  CHC_HTTPS_PORT=$((CHC_N * 10000 + 8443))
  CHC_HTTP_PORT=$((CHC_N * 10000 + 8123))
  CHC_TCP_PORT=$((CHC_N * 10000 + 9000))
  CHC_INTERSERVER_PORT=$((CHC_N * 10000 + 9009))
  CHC_DIR="$STATE/$1"
  CHC_CONFIG="$CHC_DIR/config.xml"
  CHC_USERS="$CHC_DIR/users.xml"
  CHC_DATA="$CHC_DIR/data"
  CHC_LOGS="$CHC_DIR/logs"
  CHC_PID="$CHC_DIR/clickhouse.pid"
}

chc_running() { daemon_running "$CHC_PID" "$CHC_CONFIG"; }

# The server settings and users of the current node, on every start.
chc_write_config() {
  mkdir -p "$CHC_DATA" "$CHC_DIR/tmp" "$CHC_DIR/user_files" "$CHC_DIR/format_schemas" "$CHC_LOGS"
  secret_ensure clickhouse-password
  # shellcheck disable=SC2034 # read by render_template (by name)
  local CHC_REPLICA="$CHC_NAME" CHC_ZK_PORT="${ZK_PORT:-12181}" CHC_TCP_PORT_1=19000 CHC_TCP_PORT_2=29000 \
    CHC_CERT="$SECRETS/server.pem" CHC_KEY="$SECRETS/server.key" CHC_CA="$SECRETS/ca.pem" CHC_PASSWORD_SHA256
  # shellcheck disable=SC2034 # read by render_template (by name)
  CHC_PASSWORD_SHA256=$(printf '%s' "$(<"$SECRETS/clickhouse-password")" | sha256sum | cut -d' ' -f1)
  render_template "$CHC_SRC/config.xml.template" "$CHC_CONFIG" CHC_LOGS CHC_HTTPS_PORT CHC_HTTP_PORT \
    CHC_TCP_PORT CHC_INTERSERVER_PORT CHC_CERT CHC_KEY CHC_CA CHC_ZK_PORT CHC_REPLICA CHC_TCP_PORT_1 \
    CHC_TCP_PORT_2 CHC_DATA CHC_DIR CHC_USERS || die "$CHC_NAME: cannot render $CHC_CONFIG"
  (umask 077; render_template "$CHC_SRC/users.xml.template" "$CHC_USERS" CHC_PASSWORD_SHA256) ||
    die "$CHC_NAME: cannot render $CHC_USERS"
}

chc_ping() { [[ "$(curl -s --max-time 2 "http://127.0.0.1:$CHC_HTTP_PORT/ping" 2>/dev/null)" == "Ok." ]]; }

# chc_query SQL: runs SQL as `default` over the current node's plain HTTP port, prints the result.
chc_query() {
  curl -sS --fail-with-body --max-time 60 "http://127.0.0.1:$CHC_HTTP_PORT/" --data-binary "$1"
}

# chc_launch: starts the current node; fails (status 1) if it already runs.
chc_launch() {
  if chc_running; then return 1; fi
  local port
  for port in "$CHC_HTTPS_PORT" "$CHC_HTTP_PORT" "$CHC_TCP_PORT" "$CHC_INTERSERVER_PORT"; do
    check_port_free "$port" "$CHC_NAME"
  done
  chc_write_config
  local cmd; cmd=$(ch_server_cmd)
  [[ -n "$cmd" ]] || die "$CHC_NAME: clickhouse-server not found (apt package clickhouse-server)"
  # shellcheck disable=SC2086 # $cmd may be "clickhouse server"
  spawn "$CHC_PID" "$CHC_LOGS/stdout.log" $cmd --config-file="$CHC_CONFIG"
  CHC_STARTED[$CHC_NAME]=1
  say "$CHC_NAME: started (pid $(read_pid "$CHC_PID"))"
}

chc_node_start() {
  chc_node "$1"
  local out
  chc_launch || true
  wait_until "$CHC_NAME" "$CHC_START_TIMEOUT" "$CHC_LOGS/clickhouse-server.err.log" "$CHC_PID" "$CHC_CONFIG" chc_ping
  report_up "$CHC_NAME" "${CHC_STARTED[$CHC_NAME]:-0}" "$CHC_PID" "$CHC_HTTPS_PORT"
  out=$(chc_query "CREATE DATABASE IF NOT EXISTS $CHC_DB" 2>&1) || die "$CHC_NAME: CREATE DATABASE $CHC_DB failed: $out"
}

chc_node_stop() { chc_node "$1"; stop_daemon "$CHC_NAME" "$CHC_PID" "$CHC_CONFIG"; }

chc_node_kill() { chc_node "$1"; kill_daemon "$CHC_NAME" "$CHC_PID" "$CHC_CONFIG"; }

chc_up() {
  local node
  # launch both before waiting: they boot in parallel
  for node in "${CHC_NODES[@]}"; do chc_node "$node"; chc_launch || true; done
  for node in "${CHC_NODES[@]}"; do chc_node_start "$node"; done
  say "clickhouse: database '$CHC_DB' ready on ${CHC_NODES[*]}"
}

chc_down() { local node; for node in "${CHC_NODES[@]}"; do chc_node_stop "$node"; done; }

chc_status() {
  local node pid health
  for node in "${CHC_NODES[@]}"; do
    chc_node "$node"
    pid=$(read_pid "$CHC_PID")
    if [[ -n "$pid" ]] && pid_matches "$pid" "$CHC_CONFIG"; then
      health=not-answering
      if chc_ping; then health=answering; fi
      printf '%-11s running  pid %-7s port %-5s %s\n' "$node" "$pid" "$CHC_HTTPS_PORT" "$health"
    else
      printf '%-11s stopped  pid %-7s port %-5s\n' "$node" - "$CHC_HTTPS_PORT"
    fi
  done
}
