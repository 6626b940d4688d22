#!/usr/bin/env bash
# `make run`: a bounded end-to-end demo on the local stack (which `make run` has already brought up and
# built). Starts sluice-ingest, publishes synthetic rank/crawl/click traffic at RATE events/s for DURATION
# seconds, prints a progress line every 5 s (produce rate, ingest rate, events in PostgreSQL aggregates,
# rows in ClickHouse), waits for ingest to catch up, shows sample product and analyst queries, then stops
# ingest gracefully (SIGTERM) and prints a summary. Ctrl-C stops everything early, gracefully.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RATE="${RATE:-5000}"
DURATION="${DURATION:-60}"
BIN="$REPO/target/release"
eval "$(bash infra/stack.sh env)"
STATE="${SLUICE_STATE_DIR:-$REPO/.state}"
DEMO="$STATE/demo"
mkdir -p "$DEMO"
export SLUICE_METRICS_ADDR="${SLUICE_METRICS_ADDR:-127.0.0.1:9464}"
export RUST_LOG="${RUST_LOG:-info}"

say() { printf '[run] %s\n' "$*"; }
pg() { psql "$SLUICE_POSTGRES_URL" -XAtqc "$1"; }
ch() { curl -sfS "$SLUICE_CLICKHOUSE_URL/?database=$SLUICE_CLICKHOUSE_DATABASE" --data-binary "$1"; }
metric() { # sum of a counter family on the ingest metrics endpoint
  curl -sf "http://$SLUICE_METRICS_ADDR/metrics" 2>/dev/null |
    awk -v n="$1" '$1 ~ "^"n"({|$)" { s += $2 } END { printf "%d\n", s }'
}
pg_events() {
  pg "SELECT (SELECT coalesce(sum(clicks),0) FROM click_daily) + (SELECT coalesce(sum(checks),0) FROM rank_daily)
           + (SELECT coalesce(sum(pages),0) FROM crawl_hourly)"
}
ch_rows() {
  ch "SELECT (SELECT count() FROM rank_events FINAL) + (SELECT count() FROM crawl_events FINAL) + (SELECT count() FROM click_events FINAL)"
}

INGEST_PID=""
PRODUCER_PID=""
cleanup() {
  [ -n "$PRODUCER_PID" ] && kill -INT "$PRODUCER_PID" 2>/dev/null || true
  if [ -n "$INGEST_PID" ] && kill -0 "$INGEST_PID" 2>/dev/null; then
    kill -TERM "$INGEST_PID" 2>/dev/null || true
    wait "$INGEST_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'say "interrupted: stopping"; exit 130' INT TERM

# Topics and a consumer group of this run's own, so the check at the end counts exactly this run's events
# (the databases are the shared local ones).
run_id="demo-$(date +%s)"
export SLUICE_RANK_TOPIC="$run_id-rank-events" SLUICE_CRAWL_TOPIC="$run_id-crawl-events"
export SLUICE_CLICK_TOPIC="$run_id-click-events" SLUICE_GROUP_ID="sluice-$run_id"
say "creating topics $run_id-{rank,crawl,click}-events (6 partitions each)"
"$BIN/sluice-ingest" provision --partitions 6 >"$DEMO/provision.log" 2>&1 || { cat "$DEMO/provision.log"; exit 1; }

say "migrating PostgreSQL and ClickHouse"
"$BIN/sluice-ingest" migrate 2>"$DEMO/migrate.log" || { cat "$DEMO/migrate.log"; exit 1; }
base_pg=$(pg_events)
base_ch=$(ch_rows)

say "starting sluice-ingest (log: $DEMO/ingest.log, metrics: http://$SLUICE_METRICS_ADDR/metrics)"
"$BIN/sluice-ingest" run 2>"$DEMO/ingest.log" &
INGEST_PID=$!
for _ in $(seq 1 100); do
  grep -q "partition assigned\|partitions assigned" "$DEMO/ingest.log" 2>/dev/null && break
  kill -0 "$INGEST_PID" 2>/dev/null || { say "ingest exited early:"; tail -20 "$DEMO/ingest.log"; exit 1; }
  sleep 0.2
done

say "publishing synthetic traffic: $RATE events/s for ${DURATION}s (run id $run_id; log: $DEMO/producer.log)"
"$BIN/sluice-produce" synthetic --rate "$RATE" --duration "${DURATION}s" --run-id "$run_id" \
  >"$DEMO/producer.json" 2>"$DEMO/producer.log" &
PRODUCER_PID=$!

start=$(date +%s.%N)
last_t=$start
last_consumed=$(metric sluice_ingest_records_consumed_total)
first_consumed=$last_consumed
printf '[run] %6s  %12s  %14s  %14s  %12s\n' "t(s)" "ingest ev/s" "consumed" "in postgres" "in clickhouse"
report() {
  local now consumed rate
  now=$(date +%s.%N)
  consumed=$(metric sluice_ingest_records_consumed_total)
  rate=$(awk -v a="$consumed" -v b="$last_consumed" -v t="$now" -v u="$last_t" 'BEGIN { printf "%d", (a-b)/(t-u) }')
  printf '[run] %6.0f  %12s  %14s  %14s  %12s\n' "$(awk -v t="$now" -v s="$start" 'BEGIN{print t-s}')" \
    "$rate" "$((consumed - first_consumed))" "$(( $(pg_events) - base_pg ))" "$(( $(ch_rows) - base_ch ))"
  last_consumed=$consumed
  last_t=$now
}
while kill -0 "$PRODUCER_PID" 2>/dev/null; do
  sleep 5
  report
done
wait "$PRODUCER_PID" || { say "producer failed:"; tail -5 "$DEMO/producer.log"; exit 1; }
PRODUCER_PID=""
produced=$(sed -n 's/.*"delivered":\([0-9]*\).*/\1/p' "$DEMO/producer.json")
say "producer done: $produced events delivered to Kafka; waiting for ingest to catch up"
deadline=$(( $(date +%s) + 120 ))
while [ $(( $(pg_events) - base_pg )) -lt "$produced" ] && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 1
done
report
end=$(date +%s.%N)

say "sample product query (PostgreSQL): today's top links"
psql "$SLUICE_POSTGRES_URL" -Xqc "SELECT tenant_id, short_code, clicks FROM click_daily
  WHERE day = (now() AT TIME ZONE 'UTC')::date ORDER BY clicks DESC, tenant_id, short_code LIMIT 5"
say "sample product query (PostgreSQL): a keyword's rank history"
psql "$SLUICE_POSTGRES_URL" -Xqc "SELECT day, engine, device, last_position, best_position, worst_position, checks
  FROM rank_daily WHERE (tenant_id, campaign_id, keyword) = (SELECT tenant_id, campaign_id, keyword FROM rank_daily
  ORDER BY checks DESC LIMIT 1) ORDER BY day DESC, engine, device LIMIT 8"
say "sample analyst query (ClickHouse): crawl health per domain, last 24 h"
ch "SELECT domain, count() AS pages, countIf(status_code >= 500) AS errors_5xx,
       round(avg(fetch_ms)) AS avg_fetch_ms, quantile(0.95)(fetch_ms) AS p95_fetch_ms
    FROM crawl_events FINAL WHERE occurred_at > now() - 86400
    GROUP BY domain ORDER BY pages DESC LIMIT 5 FORMAT PrettyCompactNoEscapes"

say "stopping sluice-ingest (SIGTERM: stop fetching, flush, commit)"
kill -TERM "$INGEST_PID"
if wait "$INGEST_PID"; then status=0; else status=$?; fi
INGEST_PID=""
in_pg=$(( $(pg_events) - base_pg ))
in_ch=$(( $(ch_rows) - base_ch ))
say "ingest exited with status $status"
awk -v p="$produced" -v g="$in_pg" -v c="$in_ch" -v t="$end" -v s="$start" 'BEGIN {
  printf "[run] summary: %d events published; %d aggregated in PostgreSQL; %d rows in ClickHouse; %.0f events/s end to end over %.1f s\n", p, g, c, g/(t-s), t-s }'
if [ "$in_pg" -ne "$produced" ] || [ "$in_ch" -ne "$produced" ]; then
  say "MISMATCH: not every published event landed exactly once (see $DEMO/ingest.log)"
  exit 1
fi
say "every published event landed exactly once in both databases"
