#!/usr/bin/env bash
# Sluice cluster stack: every tier replicated, as plain background processes on 127.0.0.1, beside (not
# instead of) the single-node stack of infra/stack.sh, on its own ports and state dir. Kafka: three KRaft
# brokers (SASL_SSL + SCRAM-SHA-512); ClickHouse: two replicas of one shard with ZooKeeper (HTTPS);
# PostgreSQL: a primary and a streaming hot standby behind PgBouncer (TLS). One local CA signs every
# server's certificate. This script dispatches; each tier lives in infra/cluster/<tier>.sh with its
# templates in infra/cluster/<tier>/. Data, logs, pid files and secrets live under the state dir.
#
#   infra/cluster.sh up | down | status | install | env
#   infra/cluster.sh start|stop|kill NODE      NODE: kafka1 kafka2 kafka3 zookeeper clickhouse1 clickhouse2
#                                                    pg1 pg2 pgbouncer
#   infra/cluster.sh postgres-primary | postgres-failover | postgres-rejoin
#
# Its own settings are SLUICE_CLUSTER_* variables; the state dir is $SLUICE_CLUSTER_STATE_DIR (default
# .state-cluster). `up` writes the service's config for this topology to <state>/sluice.toml (ingest) and
# <state>/produce.toml (sluice-produce); `env` prints the lines that point the tools at it.
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=infra/lib/daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemons.sh"
# shellcheck source=infra/lib/kafka.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/kafka.sh"

# ---------------------------------------------------------------- settings --
LOG_TAG=cluster
STATE="${SLUICE_CLUSTER_STATE_DIR:-$REPO/.state-cluster}"
# SIGKILL follows SIGTERM after this many seconds.
STOP_TIMEOUT="${SLUICE_CLUSTER_STOP_TIMEOUT:-20}"
# The user of every server (Kafka SCRAM, PostgreSQL, ClickHouse).
# shellcheck disable=SC2034 # for the tier files
CLUSTER_USER=sluice

# Paths below the state dir; finalised by init_state_paths (needs an absolute dir).
init_state_paths() {
  mkdir -p "$STATE"
  STATE="$(cd "$STATE" && pwd)"
  STACK_LOG="$STATE/cluster.log"
  SECRETS="$STATE/secrets"
  kafka_init_paths
  local c
  for c in zk chc pgc; do
    if declare -F "${c}_init_paths" >/dev/null; then "${c}_init_paths"; fi
  done
}

# shellcheck source=infra/cluster/ca.sh
source "$REPO/infra/cluster/ca.sh"
# shellcheck source=infra/cluster/kafka.sh
source "$REPO/infra/cluster/kafka.sh"
# The other tiers, when present: each defines <c>_up/_down/_status/_node_start/_node_stop/_node_kill/
# _packages with c in zk (zookeeper), chc (clickhouse), pgc (postgres + pgbouncer).
for tier_file in zookeeper clickhouse postgres; do
  if [[ -f "$REPO/infra/cluster/$tier_file.sh" ]]; then
    # shellcheck source=/dev/null
    source "$REPO/infra/cluster/$tier_file.sh"
  fi
done
unset tier_file

# has_tier C: the tier file of C (zk|chc|pgc) is loaded.
has_tier() { declare -F "${1}_up" >/dev/null; }

# tier_of NODE: kafka|zk|chc|pgc, or dies.
tier_of() {
  local t
  case "${1:-}" in
    kafka1|kafka2|kafka3) echo kafka; return ;;
    zookeeper) t=zk ;;
    clickhouse1|clickhouse2) t=chc ;;
    pg1|pg2|pgbouncer) t=pgc ;;
    *) die "unknown node '${1:-}' (expected kafka1|kafka2|kafka3|zookeeper|clickhouse1|clickhouse2|pg1|pg2|pgbouncer)" ;;
  esac
  has_tier "$t" || die "node '$1': its tier (infra/cluster/${t}) is not in this checkout"
  echo "$t"
}

# ---------------------------------------------------------------- install --
do_install() {
  local pkgs=() c
  mapfile -t pkgs < <(kafka_packages)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  for c in zk chc pgc; do
    if has_tier "$c" && declare -F "${c}_packages" >/dev/null; then
      mapfile -t -O "${#pkgs[@]}" pkgs < <("${c}_packages")
    fi
  done
  if ((${#pkgs[@]})); then
    require_root
    apt_install "${pkgs[@]}"
  fi
  kafka_install
}

# The CA, the server certificate and every server's password (made once, kept).
do_secrets() {
  ca_ensure
  local s
  for s in kafka-password postgres-password clickhouse-password; do secret_ensure "$s"; done
}

# ------------------------------------------------------- the service config --
# write_file DEST: stdin to DEST atomically (0644: no secret in these files, only paths to them).
write_file() {
  cat >"$1.tmp"
  chmod 0644 "$1.tmp"
  mv "$1.tmp" "$1"
}

# sluice.toml: ingest's whole config for the cluster (SLUICE_CONFIG); produce.toml: sluice-produce's (the
# keys of its ProducerConfig: `brokers`, `sasl_password_file`, librdkafka properties under [extra]).
write_service_configs() {
  local bootstrap; bootstrap=$(kafka_bootstrap)
  write_file "$STATE/sluice.toml" <<EOF
# Written by infra/cluster.sh up: ingest's settings for the cluster stack (SLUICE_CONFIG). Secrets are
# files under $SECRETS, not values here.
kafka_brokers = "$bootstrap"
kafka_sasl_password_file = "$SECRETS/kafka-password"
postgres_url = "postgres://$CLUSTER_USER@localhost:16432/sluice?sslmode=verify-full&sslrootcert=$SECRETS/ca.pem"
postgres_password_file = "$SECRETS/postgres-password"
# PgBouncer pools transactions: no named prepared statements, no session state (docs/postgres.md).
postgres_pool_mode = "transaction"
clickhouse_url = "https://localhost:18443,https://localhost:28443"
clickhouse_database = "sluice"
clickhouse_user = "$CLUSTER_USER"
clickhouse_password_file = "$SECRETS/clickhouse-password"
clickhouse_ca_file = "$SECRETS/ca.pem"
clickhouse_cluster = "sluice"

[kafka_properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "$CLUSTER_USER"
"ssl.ca.location" = "$SECRETS/ca.pem"
EOF
  write_file "$STATE/produce.toml" <<EOF
# Written by infra/cluster.sh up: sluice-produce's settings for the cluster stack, in the form of its
# ProducerConfig (producers/src/config.rs). The SASL password is read from the file named here.
brokers = "$bootstrap"
sasl_password_file = "$SECRETS/kafka-password"

[extra]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "$CLUSTER_USER"
"ssl.ca.location" = "$SECRETS/ca.pem"
EOF
}

cmd_env() {
  cat <<EOF
export SLUICE_CLUSTER_STATE_DIR=$STATE
export SLUICE_CONFIG=$STATE/sluice.toml
EOF
}

# ---------------------------------------------------------------- commands --
cmd_up() {
  require_root
  do_install
  do_secrets
  # the three JVMs boot while the others start
  kafka_launch_all
  if has_tier zk; then zk_up; fi
  if has_tier chc; then chc_up; fi
  if has_tier pgc; then pgc_up; fi
  kafka_wait_all
  write_service_configs
  say "up: done in $((SECONDS - T0))s (state: $STATE; 'infra/cluster.sh env' points ingest at it)"
}

cmd_down() {
  kafka_down
  if has_tier chc; then chc_down; fi
  if has_tier zk; then zk_down; fi
  if has_tier pgc; then pgc_down; fi
  say "down: done in $((SECONDS - T0))s"
}

cmd_status() {
  kafka_status
  local c
  for c in zk chc pgc; do
    if has_tier "$c"; then "${c}_status"; fi
  done
}

# node_cmd start|stop|kill NODE
node_cmd() {
  local verb="$1" node="${2:-}" t
  [[ -n "$node" ]] || usage
  t=$(tier_of "$node")
  if [[ "$verb" == start ]]; then
    require_root
    do_install
    do_secrets
  fi
  "${t}_node_${verb}" "$node"
}

# postgres_cmd primary|failover|rejoin
postgres_cmd() {
  has_tier pgc || die "postgres-$1: the PostgreSQL tier (infra/cluster/postgres.sh) is not in this checkout"
  declare -F "pgc_$1" >/dev/null || die "postgres-$1: infra/cluster/postgres.sh has no pgc_$1"
  "pgc_$1"
}

usage() {
  cat >&2 <<'EOF'
usage: infra/cluster.sh <command>
  up                 install what is missing, make the CA and passwords, start every node, wait healthy,
                     write <state>/sluice.toml and <state>/produce.toml
  down               stop every node (SIGTERM, SIGKILL after ~20s)
  status             one line per node
  install            apt packages and Kafka jars only
  env                print export lines (SLUICE_CONFIG, SLUICE_CLUSTER_STATE_DIR)
  start NODE         start one node and wait for it (kafka1 kafka2 kafka3 zookeeper clickhouse1
                     clickhouse2 pg1 pg2 pgbouncer)
  stop NODE          stop one node (SIGTERM, SIGKILL after ~20s)
  kill NODE          SIGKILL one node (a crash: no cleanup)
  postgres-primary   print the current PostgreSQL primary (pg1 or pg2)
  postgres-failover  promote the standby and point PgBouncer at it
  postgres-rejoin    rebuild the old primary as a standby of the new one
settings (environment): SLUICE_CLUSTER_STATE_DIR (default .state-cluster), SLUICE_CLUSTER_STOP_TIMEOUT,
  SLUICE_CLUSTER_KAFKA_HEAP, SLUICE_CLUSTER_KAFKA_START_TIMEOUT, SLUICE_CLUSTER_TOPIC_PARTITIONS,
  SLUICE_CLUSTER_CA_DAYS
EOF
  exit 2
}

main() {
  local cmd="${1:-}"
  [[ -n "$cmd" ]] || usage
  shift || true
  case "$cmd" in
    -h|--help|help) usage ;;
  esac
  init_state_paths
  case "$cmd" in
    env) cmd_env; return ;;
    status) cmd_status; return ;;
    postgres-primary) postgres_cmd primary; return ;;
  esac
  touch "$STACK_LOG"
  with_lock
  log "==== cluster.sh $cmd $* (state $STATE)"
  case "$cmd" in
    install) do_install; say "install: done ($((SECONDS - T0))s)" ;;
    up) cmd_up ;;
    down) cmd_down ;;
    start|stop|kill) node_cmd "$cmd" "${1:-}" ;;
    postgres-failover) postgres_cmd failover ;;
    postgres-rejoin) postgres_cmd rejoin ;;
    *) usage ;;
  esac
}

main "$@"
