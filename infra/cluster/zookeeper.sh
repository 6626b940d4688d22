# shellcheck shell=bash
# The cluster stack's ZooKeeper (sourced by infra/cluster.sh, not run): one standalone server from Debian's
# `zookeeper` package (3.8), run as our own java process on 127.0.0.1:$ZK_PORT with its data under
# $STATE/zookeeper. The ClickHouse replicas keep their replicated tables' metadata and the ON CLUSTER DDL
# queue there. The config is infra/cluster/zookeeper/zoo.cfg.template, rendered on every start.
#
#   zk_up | zk_down | zk_status | zk_packages
#   zk_node_start zookeeper | zk_node_stop zookeeper | zk_node_kill zookeeper (SIGKILL, no cleanup)
#
# Needs: STATE (absolute), STACK_LOG, STOP_TIMEOUT, LOG_TAG and the helpers of infra/lib.sh and
# infra/lib/daemons.sh. Settings: SLUICE_CLUSTER_ZK_PORT, SLUICE_CLUSTER_ZK_HEAP,
# SLUICE_CLUSTER_ZK_START_TIMEOUT.

ZK_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/zookeeper"
ZK_PORT="${SLUICE_CLUSTER_ZK_PORT:-12181}"
ZK_HEAP="${SLUICE_CLUSTER_ZK_HEAP:--Xms64m -Xmx256m}"
ZK_START_TIMEOUT="${SLUICE_CLUSTER_ZK_START_TIMEOUT:-60}"
# Debian's jars: zookeeper.jar's manifest names its dependencies; log4j 1.2 and its slf4j binding are
# dependencies of the package too.
ZK_CLASSPATH="/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"

# The paths below the state dir (STATE may be set after this file is sourced).
zk_paths() {
  ZK_DIR="$STATE/zookeeper"
  ZK_DATA="$ZK_DIR/data"
  ZK_LOGS="$ZK_DIR/logs"
  ZK_CFG="$ZK_DIR/zoo.cfg"
  ZK_PID="$ZK_DIR/zookeeper.pid"
}

zk_packages() {
  [[ -r /usr/share/java/zookeeper.jar ]] || echo zookeeper
  command -v java >/dev/null 2>&1 || echo openjdk-17-jre-headless
  return 0
}

zk_node_name() {
  [[ "${1:-}" == zookeeper ]] || die "unknown ZooKeeper node '${1:-}' (expected zookeeper)"
}

zk_running() { zk_paths; daemon_running "$ZK_PID" "$ZK_CFG"; }

# zk_4lw WORD: sends a four-letter word, prints the answer.
zk_4lw() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf %s "$2" >&3 && cat <&3' _ "$ZK_PORT" "$1" 2>/dev/null
}

# Serving requests (standalone mode), not just listening: "srvr" answers "This ZooKeeper instance is not
# currently serving requests" until then.
zk_serving() { zk_4lw srvr | grep -q '^Mode: '; }

# zk_launch: starts the server; fails (status 1) if it already runs.
zk_launch() {
  zk_paths
  if zk_running; then return 1; fi
  check_port_free "$ZK_PORT" zookeeper
  [[ -r /usr/share/java/zookeeper.jar ]] || die "zookeeper: /usr/share/java/zookeeper.jar missing (apt package zookeeper)"
  mkdir -p "$ZK_DATA" "$ZK_LOGS"
  render_template "$ZK_SRC/zoo.cfg.template" "$ZK_CFG" ZK_DATA ZK_PORT || die "zookeeper: cannot render $ZK_CFG"
  # shellcheck disable=SC2086 # ZK_HEAP is a list of JVM options
  spawn "$ZK_PID" "$ZK_LOGS/zookeeper.out" java $ZK_HEAP -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dzookeeper.log.dir="$ZK_LOGS" -Dlog4j.configuration="file:$ZK_SRC/log4j.properties" \
    -cp "$ZK_CLASSPATH" org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_CFG"
  say "zookeeper: started (pid $(read_pid "$ZK_PID")), waiting for it to serve"
}

zk_node_start() {
  zk_node_name "$1"
  local started=0
  if zk_launch; then started=1; fi
  wait_until zookeeper "$ZK_START_TIMEOUT" "$ZK_LOGS/zookeeper.log" "$ZK_PID" "$ZK_CFG" zk_serving
  report_up zookeeper "$started" "$ZK_PID" "$ZK_PORT"
}

zk_node_stop() { zk_node_name "$1"; zk_paths; stop_daemon zookeeper "$ZK_PID" "$ZK_CFG"; }

zk_node_kill() {
  zk_node_name "$1"
  zk_paths
  kill_daemon zookeeper "$ZK_PID" "$ZK_CFG"
}

zk_up() { zk_node_start zookeeper; }
zk_down() { zk_node_stop zookeeper; }

zk_status() {
  zk_paths
  local pid; pid=$(read_pid "$ZK_PID")
  if [[ -n "$pid" ]] && pid_matches "$pid" "$ZK_CFG"; then
    local health=not-serving
    if zk_serving; then health=serving; fi
    printf '%-11s running  pid %-7s port %-5s %s\n' zookeeper "$pid" "$ZK_PORT" "$health"
  else
    printf '%-11s stopped  pid %-7s port %-5s\n' zookeeper - "$ZK_PORT"
  fi
}
