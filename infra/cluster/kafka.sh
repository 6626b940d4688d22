# shellcheck shell=bash
# The cluster stack's Kafka (sourced by infra/cluster.sh, not run): three KRaft nodes kafka1..kafka3, each
# a broker and a controller in one JVM (node.id 1..3, a dynamic quorum of the three formatted with
# --initial-controllers), from the same Maven Central jars as the single-node stack (infra/kafka/pom.xml).
# Clients reach them on a SASL_SSL listener (SCRAM-SHA-512, user `sluice`, the server certificate of the
# stack's CA); replication and this script's own tooling use a PLAINTEXT listener on 127.0.0.1. The SCRAM
# credential is written into the metadata at format time; its password goes through a 0600 file, never
# through argv or a log. Settings: infra/cluster/kafka/server.properties.template.
#
#   kafka_packages           apt packages missing for Kafka (java, maven)
#   kafka_install            the jars into $KAFKA_LIBS (a copy of the single-node stack's if it is current)
#   kafka_up / kafka_down    start (and wait for all three brokers registered) / stop every node
#   kafka_launch_all, kafka_wait_all   kafka_up in two halves (other servers start in between)
#   kafka_status             one line per node
#   kafka_node_start|kafka_node_stop|kafka_node_kill NAME   NAME = kafka1|kafka2|kafka3
#
# Needs: REPO, STATE (absolute), SECRETS, STACK_LOG, STOP_TIMEOUT and the helpers of infra/lib/daemons.sh.

KAFKA_HEAP="${SLUICE_CLUSTER_KAFKA_HEAP:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${SLUICE_CLUSTER_KAFKA_START_TIMEOUT:-180}"
KAFKA_TOPIC_PARTITIONS="${SLUICE_CLUSTER_TOPIC_PARTITIONS:-6}"
KAFKA_USER=sluice
KAFKA_SRC="$REPO/infra/kafka"
KAFKA_CLUSTER_SRC="$REPO/infra/cluster/kafka"

# Ports of node N (1..3): SASL_SSL client N9092, PLAINTEXT internal N9094, controller N9093.
kafka_client_port()     { printf '%s9092' "$1"; }
kafka_internal_port()   { printf '%s9094' "$1"; }
kafka_controller_port() { printf '%s9093' "$1"; }

# The paths below the state dir (STATE must be final).
kafka_init_paths() {
  KAFKA_DIR="$STATE/kafka"
  KAFKA_LIBS="$KAFKA_DIR/libs"
  KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster-id"
  KAFKA_KEYSTORE="$KAFKA_DIR/keystore.pem"
}

kafka_node_dir()   { printf '%s/kafka%s' "$KAFKA_DIR" "$1"; }
kafka_node_props() { printf '%s/kafka%s/server.properties' "$KAFKA_DIR" "$1"; }
kafka_node_pid()   { printf '%s/kafka%s/kafka.pid' "$KAFKA_DIR" "$1"; }

# kafka_node_number NAME: 1..3 for kafka1..kafka3, or dies.
kafka_node_number() {
  case "$1" in
    kafka1|kafka2|kafka3) printf '%s' "${1#kafka}" ;;
    *) die "unknown kafka node '$1' (expected kafka1|kafka2|kafka3)" ;;
  esac
}

# "localhost:19092,localhost:29092,localhost:39092": what clients bootstrap from.
kafka_bootstrap() { printf 'localhost:19092,localhost:29092,localhost:39092'; }
# The internal listeners, for this script's tools.
kafka_internal_bootstrap() { printf '127.0.0.1:19094,127.0.0.1:29094,127.0.0.1:39094'; }

# ---------------------------------------------------------------- install --
kafka_packages() {
  command -v java >/dev/null 2>&1 || echo openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || echo maven
  command -v openssl >/dev/null 2>&1 || echo openssl
  return 0
}

kafka_install() {
  # The single-node stack's jars, if it has the same pom's: no second Maven run.
  kafka_install_libs "${SLUICE_STACK_STATE_DIR:-${SLUICE_STATE_DIR:-$REPO/.state}}/kafka/libs"
}

# The node ids (one a line) of the brokers registered and unfenced, asked through the internal listeners:
# a round trip to every one of them (ApiVersions), not just an open port.
kafka_registered_ids() {
  kafka_tool 60 org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$(kafka_internal_bootstrap)" 2>>"$STACK_LOG" |
    sed -n 's/^[^ ]* (id: \([0-9]*\) .*-> ($/\1/p' | sort -u
}

# kafka_registered N...: each node N is registered.
kafka_registered() {
  local ids n
  ids=$(kafka_registered_ids) || return 1
  for n in "$@"; do grep -qx "$n" <<<"$ids" || return 1; done
}

# ------------------------------------------------------------------ nodes --
kafka_node_running() { daemon_running "$(kafka_node_pid "$1")" "$(kafka_node_props "$1")"; }

# kafka_config N FILE: node N's settings from infra/cluster/kafka/.
# shellcheck disable=SC2034 # the locals are read by render_template (by name)
kafka_config() {
  local n="$1"
  local KAFKA_NODE_ID="$n" KAFKA_CLIENT_PORT KAFKA_INTERNAL_PORT KAFKA_CONTROLLER_PORT \
    KAFKA_CONTROLLER_BOOTSTRAP="127.0.0.1:19093,127.0.0.1:29093,127.0.0.1:39093" \
    KAFKA_DATA_DIR KAFKA_NUM_PARTITIONS="$KAFKA_TOPIC_PARTITIONS" KAFKA_TRUSTSTORE="$SECRETS/ca.pem"
  KAFKA_CLIENT_PORT=$(kafka_client_port "$n")
  KAFKA_INTERNAL_PORT=$(kafka_internal_port "$n")
  KAFKA_CONTROLLER_PORT=$(kafka_controller_port "$n")
  KAFKA_DATA_DIR="$(kafka_node_dir "$n")/data"
  render_template "$KAFKA_CLUSTER_SRC/server.properties.template" "$2" \
    KAFKA_NODE_ID KAFKA_CONTROLLER_BOOTSTRAP KAFKA_CLIENT_PORT KAFKA_INTERNAL_PORT KAFKA_CONTROLLER_PORT \
    KAFKA_KEYSTORE KAFKA_TRUSTSTORE KAFKA_DATA_DIR KAFKA_NUM_PARTITIONS
}

# The PEM key store of the client listener: the PKCS#8 key, then the certificate (0600).
kafka_write_keystore() {
  [[ -s "$SECRETS/server.p8.pem" && -s "$SECRETS/server.pem" && -s "$SECRETS/ca.pem" ]] ||
    die "kafka: $SECRETS lacks server.p8.pem/server.pem/ca.pem (made by ca_ensure)"
  (umask 077; cat "$SECRETS/server.p8.pem" "$SECRETS/server.pem" >"$KAFKA_KEYSTORE.tmp")
  mv "$KAFKA_KEYSTORE.tmp" "$KAFKA_KEYSTORE"
}

# A Kafka Uuid: 16 random bytes, url-safe base64 without padding, not starting with '-'.
kafka_random_uuid() {
  local id=""
  while [[ -z "$id" || "$id" == -* ]]; do
    id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  printf '%s' "$id"
}

# kafka_format N: formats node N's storage once (cluster id, the three initial voters with their directory
# ids, the SCRAM credential of `sluice`). The voters' directory ids are fixed in $KAFKA_DIR/directory-ids
# the first time any node is formatted, so every node is formatted with the same voter set.
kafka_format() {
  local n="$1" dir data props
  dir=$(kafka_node_dir "$n")
  data="$dir/data"
  props=$(kafka_node_props "$n")
  [[ -f "$data/meta.properties" ]] && return 0
  [[ -s "$KAFKA_CLUSTER_ID_FILE" ]] || kafka_random_uuid >"$KAFKA_CLUSTER_ID_FILE"
  local ids_file="$KAFKA_DIR/directory-ids" i voters=""
  if [[ ! -s "$ids_file" ]]; then
    for i in 1 2 3; do printf '%s %s\n' "$i" "$(kafka_random_uuid)"; done >"$ids_file"
  fi
  while read -r i uuid; do
    voters+="${voters:+,}$i@127.0.0.1:$(kafka_controller_port "$i"):$uuid"
  done <"$ids_file"
  local cid pw
  cid=$(head -n1 "$KAFKA_CLUSTER_ID_FILE")
  pw=$(head -n1 "$SECRETS/kafka-password")
  [[ "$pw" =~ ^[A-Za-z0-9._~+/=-]+$ ]] ||
    die "kafka: $SECRETS/kafka-password must be one line of letters, digits and ._~+/=- (SCRAM format syntax)"
  say "kafka$n: formatting KRaft storage (cluster id $cid)"
  # The whole command line goes through a java @argfile (0600, removed at once): the password is in no
  # process's argv and in no log.
  local argfile="$dir/format.args"
  (umask 077; printf '%s\n' kafka.tools.StorageTool format --cluster-id "$cid" --config "$props" \
    --initial-controllers "$voters" --add-scram "SCRAM-SHA-512=[name=$KAFKA_USER,password=$pw]" >"$argfile")
  log "+ StorageTool format --cluster-id $cid --config $props --initial-controllers $voters --add-scram SCRAM-SHA-512=[name=$KAFKA_USER,password=***]"
  local rc=0 out="$dir/format.out"
  (umask 077; kafka_tool 120 "@$argfile" >"$out" 2>&1) || rc=$?
  rm -f "$argfile"
  # the tool prints the bootstrap records, the credential's salt and keys among them: not into the log
  sed 's/UserScramCredentialRecord([^)]*)/UserScramCredentialRecord(<redacted>)/g' "$out" >>"$STACK_LOG"
  rm -f "$out"
  ((rc == 0)) || die_log "kafka$n: StorageTool format failed (exit $rc)" "$STACK_LOG"
}

# kafka_launch N: starts node N unless it runs (no waiting).
kafka_launch() {
  local n="$1" dir props pid
  dir=$(kafka_node_dir "$n")
  props=$(kafka_node_props "$n")
  pid=$(kafka_node_pid "$n")
  if kafka_node_running "$n"; then return 0; fi
  check_port_free "$(kafka_client_port "$n")" "kafka$n client"
  check_port_free "$(kafka_internal_port "$n")" "kafka$n internal"
  check_port_free "$(kafka_controller_port "$n")" "kafka$n controller"
  mkdir -p "$dir/data" "$dir/logs"
  kafka_write_keystore
  kafka_config "$n" "$props" || die "kafka$n: cannot render $props"
  kafka_format "$n"
  printf -v "KAFKA_BIND_ERRORS_$n" '%s' "$(kafka_bind_errors "$n")"
  # shellcheck disable=SC2086 # KAFKA_HEAP is a list of JVM options
  spawn "$pid" "$dir/logs/kafka.out" java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir/logs" \
    -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$props"
  printf -v "KAFKA_JUST_STARTED_$n" 1
  say "kafka$n: started (pid $(read_pid "$pid"))"
}

# kafka_bind_errors N: how many times node N's log says it could not bind a port.
kafka_bind_errors() {
  local c
  c=$(grep -c "Socket server failed to bind" "$(kafka_node_dir "$1")/logs/server.log" 2>/dev/null) || true
  echo "${c:-0}"
}

# kafka_listen N: waits until node N's internal and client ports are open. Node 3's ports (39092-39094)
# lie in Linux's ephemeral port range (32768-60999 by default): an outgoing connection (another node
# trying a controller that is not up yet) can hold one of them as its local port at the moment node 3
# binds it, and the node exits with "Address already in use" (seen once in CI); a closed one keeps it in
# TIME_WAIT for 60 s. Such a start is retried, 3 s apart, until the start timeout; any other exit stops
# `up` as before.
kafka_listen() {
  local n="$1" log pidfile props tries=0 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  local before="KAFKA_BIND_ERRORS_$n"
  log="$(kafka_node_dir "$n")/logs/server.log"
  pidfile=$(kafka_node_pid "$n")
  props=$(kafka_node_props "$n")
  until port_open "$(kafka_internal_port "$n")" && port_open "$(kafka_client_port "$n")"; do
    if ! daemon_running "$pidfile" "$props"; then
      # A bind failure of this start: more of them in the log than when it was launched (a node that
      # already ran before this `up` has no count, and is not restarted).
      if ((SECONDS < deadline)) && [[ -n "${!before:-}" ]] && (($(kafka_bind_errors "$n") > ${!before})); then
        tries=$((tries + 1))
        warn "kafka$n: a port was in use as it started; starting it again (attempt $((tries + 1)))"
        rm -f "$pidfile"
        sleep 3
        kafka_launch "$n"
        continue
      fi
      die_log "kafka$n (pid $(read_pid "$pidfile")) is not running" "$log"
    fi
    ((SECONDS < deadline)) || die_log "kafka$n: its ports did not open within ${KAFKA_START_TIMEOUT}s" "$log"
    sleep 0.5
  done
}

# kafka_wait N...: each node's process runs and its ports are open, then all of them are registered.
kafka_wait() {
  local n
  for n in "$@"; do
    kafka_listen "$n"
  done
  # registration needs the quorum (two of three nodes): wait on the first node's context
  local -a ctx=("kafka$1" "$KAFKA_START_TIMEOUT" "$(kafka_node_dir "$1")/logs/server.log" \
    "$(kafka_node_pid "$1")" "$(kafka_node_props "$1")")
  wait_until "${ctx[@]}" kafka_registered "$@"
  for n in "$@"; do
    local just="KAFKA_JUST_STARTED_$n"
    report_up "kafka$n" "${!just:-0}" "$(kafka_node_pid "$n")" "$(kafka_client_port "$n")"
  done
}

kafka_launch_all() { local n; for n in 1 2 3; do kafka_launch "$n"; done; }
kafka_wait_all() { kafka_wait 1 2 3; }
kafka_up() { kafka_launch_all; kafka_wait_all; }

# A node registers through the quorum: alone (the two others down) it can only be waited for up to its
# controller port, and it exits if no second node joins within initial.broker.registration.timeout.ms
# (60 s).
kafka_node_start() {
  local n m others=0; n=$(kafka_node_number "$1")
  kafka_launch "$n"
  for m in 1 2 3; do
    if [[ "$m" != "$n" ]] && kafka_node_running "$m"; then others=$((others + 1)); fi
  done
  if ((others == 0)); then
    local -a ctx=("kafka$n" "$KAFKA_START_TIMEOUT" "$(kafka_node_dir "$n")/logs/server.log" \
      "$(kafka_node_pid "$n")" "$(kafka_node_props "$n")")
    wait_until "${ctx[@]}" port_open "$(kafka_controller_port "$n")"
    say "kafka$n: started, not registered: the quorum needs a second node within 60 s, or kafka$n exits"
    return 0
  fi
  kafka_wait "$n"
}

kafka_node_stop() {
  local n; n=$(kafka_node_number "$1")
  stop_daemon "kafka$n" "$(kafka_node_pid "$n")" "$(kafka_node_props "$n")"
}

# SIGKILL, no controlled shutdown: the failure tests' crash.
kafka_node_kill() {
  local n pid; n=$(kafka_node_number "$1")
  pid=$(read_pid "$(kafka_node_pid "$n")")
  if [[ -n "$pid" ]] && pid_matches "$pid" "$(kafka_node_props "$n")"; then
    log "kafka$n: SIGKILL pid $pid"
    kill_pid "$pid" "$(kafka_node_props "$n")" KILL
    say "kafka$n: killed (pid $pid)"
  else
    say "kafka$n: not running"
  fi
}

# All three at once: each does its controlled shutdown while the quorum still stands (one by one, the last
# two would wait for a quorum that is gone).
kafka_down() {
  local n pid
  for n in 1 2 3; do
    pid=$(read_pid "$(kafka_node_pid "$n")")
    if [[ -n "$pid" ]] && pid_matches "$pid" "$(kafka_node_props "$n")"; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for n in 1 2 3; do kafka_node_stop "kafka$n"; done
}

kafka_status() {
  local n
  for n in 1 2 3; do
    status_line "kafka$n" "$(read_pid "$(kafka_node_pid "$n")")" "$(kafka_node_props "$n")" \
      "$(kafka_client_port "$n")"
  done
}
