#!/usr/bin/env bash
# What click_day as a view over click_minute (migration 0004) saves and costs, against click_day as a
# table fed by its own materialized view (before 0004), on a ClickHouse server (the local 18.16 by default).
#
# Dense clicks: N clicks (3,000,000 by default) in one UTC day, 8 tenants x 500 links skewed toward the
# first ones, 80 % with a visitor. Two scratch databases get the raw table and click_minute with its view;
# `table_day` also gets the old click_day table and its view, `view_day` the view of 0004.
#   * insert: the same N rows go into each database's raw table in 100,000-row blocks (INSERT ... SELECT
#     from a source table), alternating, RUNS times each; user CPU from system.query_log;
#   * questions: every link's clicks and visitors per day, and one tenant's links for one day, from each
#     database's click_day (median of 5), as inserted and after OPTIMIZE ... FINAL.
# The scratch databases are dropped at the end. Needs only curl.
#
#   bash clickhouse/bench/day_from_minutes.sh [N] [RUNS]
set -euo pipefail
n=${1:-3000000}
runs=${2:-3}
. "$(dirname "$0")/http.sh"

state='clicks_state AggregateFunction(uniqExact, String), visitors_state AggregateFunction(uniqExactIf, String, UInt8)'
states="uniqExactState(event_id) AS clicks_state, uniqExactIfState(ifNull(visitor_id, ''), isNotNull(visitor_id)) AS visitors_state"
q "DROP DATABASE IF EXISTS dfm_source"
q "CREATE DATABASE dfm_source"
q "CREATE TABLE dfm_source.clicks (event_id String, tenant_id String, occurred_at DateTime, short_code String, visitor_id Nullable(String)) ENGINE = MergeTree() ORDER BY tuple()"
q "INSERT INTO dfm_source.clicks SELECT concat(toString(cityHash64(number)), '-', toString(number)), concat('tenant-', toString(number % 8)), toDateTime(1780012800 + intDiv(number * 86400, $n)), concat('link', toString(toUInt32(pow((cityHash64(number, 1) % 1000000) / 1000000, 3) * 500))), if(number % 5 = 0, NULL, concat('v', toString(cityHash64(number, 2) % 100000))) FROM system.numbers LIMIT $n"
for db in table_day view_day; do
    q "DROP DATABASE IF EXISTS dfm_$db"
    q "CREATE DATABASE dfm_$db"
    q "CREATE TABLE dfm_$db.click_events AS dfm_source.clicks ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(occurred_at) ORDER BY (tenant_id, short_code, occurred_at, event_id)"
    q "CREATE TABLE dfm_$db.click_minute (tenant_id String, short_code String, minute DateTime('UTC'), $state) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(minute) ORDER BY (tenant_id, short_code, minute)"
    q "CREATE MATERIALIZED VIEW dfm_$db.click_minute_mv TO dfm_$db.click_minute AS SELECT tenant_id, short_code, toStartOfMinute(occurred_at, 'UTC') AS minute, $states FROM dfm_$db.click_events GROUP BY tenant_id, short_code, minute"
done
q "CREATE TABLE dfm_table_day.click_day (tenant_id String, short_code String, day Date, $state) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (tenant_id, short_code, day)"
q "CREATE MATERIALIZED VIEW dfm_table_day.click_day_mv TO dfm_table_day.click_day AS SELECT tenant_id, short_code, toDate(occurred_at, 'UTC') AS day, $states FROM dfm_table_day.click_events GROUP BY tenant_id, short_code, day"
q "CREATE VIEW dfm_view_day.click_day AS SELECT tenant_id, short_code, toDate(minute, 'UTC') AS day, clicks_state, visitors_state FROM dfm_view_day.click_minute"

echo "server $(q 'SELECT version()'); $n clicks; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| insert into | run | user CPU s | µs per click |"
echo "|---|---|---|---|"
for run in $(seq "$runs"); do
    for db in table_day view_day; do
        for t in click_events click_minute click_day; do
            [ "$db/$t" = view_day/click_day ] || q "TRUNCATE TABLE dfm_$db.$t"
        done
        id="dfm-$db-$run-$RANDOM"
        q "INSERT INTO dfm_$db.click_events SELECT * FROM dfm_source.clicks" "$id"
        q "SYSTEM FLUSH LOGS"
        us=$(q "SELECT ProfileEvents.Values[indexOf(ProfileEvents.Names, 'UserTimeMicroseconds')] FROM system.query_log WHERE query_id = '$id' AND type = 2")
        echo "| $db | $run | $(awk "BEGIN{printf \"%.2f\", $us/1e6}") | $(awk "BEGIN{printf \"%.2f\", $us/$n}") |"
    done
done

questions() {
    local rows
    for db in table_day view_day; do
        rows=$(q "SELECT sum(rows) FROM system.parts WHERE database = 'dfm_$db' AND table = '$([ $db = table_day ] && echo click_day || echo click_minute)' AND active")
        all=$(median_ms "SELECT tenant_id, short_code, day, uniqExactMerge(clicks_state), uniqExactIfMerge(visitors_state) FROM dfm_$db.click_day GROUP BY tenant_id, short_code, day FORMAT Null")
        one=$(median_ms "SELECT short_code, uniqExactMerge(clicks_state) FROM dfm_$db.click_day WHERE tenant_id = 'tenant-3' AND day = toDate('2026-05-29') GROUP BY short_code FORMAT Null")
        echo "| $1 | $db | $rows | $all | $one |"
    done
}
echo
echo "| parts | click_day from | rows read from | every link per day, ms | one tenant, one day, ms |"
echo "|---|---|---|---|---|"
questions "as inserted"
for db in table_day view_day; do q "OPTIMIZE TABLE dfm_$db.click_minute FINAL"; done
q "OPTIMIZE TABLE dfm_table_day.click_day FINAL"
questions "merged"
# Both give the same answers.
for db in table_day view_day; do
    q "SELECT sum(c), sum(v) FROM (SELECT uniqExactMerge(clicks_state) AS c, uniqExactIfMerge(visitors_state) AS v FROM dfm_$db.click_day GROUP BY tenant_id, short_code, day)" | sed "s/^/$db totals: /"
done
for db in source table_day view_day; do q "DROP DATABASE dfm_$db"; done
