#!/usr/bin/env bash
# What migration 0005 (the rollups as views over the raw tables) saves and costs, on ClickHouse directly.
#
# Two databases get the same generated events: `rav_tables` as migration 0004 left a server (the rollup
# tables click_minute and rank_day fed by materialized views, click_day a view over click_minute), and
# `rav_views` as 0005 leaves it (raw tables only; click_minute, click_day and rank_day are views over them).
# Three datasets: busy clicks (8 tenants x 500 skewed links, one day), sparse clicks (1,000 tenants x
# 3,000 links, a week) and rank checks (each keyword checked once a day for 20 days).
#
# It prints, per dataset: ClickHouse's user CPU to insert the events (in 100,000-row blocks, with the
# views where there are any) and to merge every table to one part (OPTIMIZE ... FINAL), and the median
# of 5 runs of each question asked three ways: the old query on the rollup table (0004), the documented
# query on the raw table (0005), and the old query on the view that now has the rollup's name (0005).
# Each question's three answers must be equal; the script stops if they are not.
#
#   bash clickhouse/bench/rollups_as_views.sh [clicks per click dataset, default 3000000] [rank checks, default 1000000]
#
# Needs the local stack (make up). Leaves nothing behind.
set -euo pipefail

clicks=${1:-3000000}
checks=${2:-1000000}
. "$(dirname "$0")/http.sh"

# User CPU seconds of one statement, from the query log.
cpu() {
    local id="rav-$RANDOM$RANDOM"
    q "$1" "$id" >/dev/null
    q "SYSTEM FLUSH LOGS"
    q "SELECT ProfileEvents.Values[indexOf(ProfileEvents.Names, 'UserTimeMicroseconds')] / 1e6 FROM system.query_log WHERE query_id = '$id' AND type = 2"
}

click_columns='event_id String, tenant_id String, occurred_at DateTime, short_code String, visitor_id Nullable(String)'
rank_columns='event_id String, tenant_id String, occurred_at DateTime, occurred_at_micros UInt32, campaign_id String, keyword String, geo String, engine String, device String, position Nullable(UInt8)'
click_states="uniqExactState(event_id) AS clicks_state, uniqExactIfState(ifNull(visitor_id, ''), isNotNull(visitor_id)) AS visitors_state"
rank_states="uniqExactState(event_id) AS checks_state, argMaxState(ifNull(position, toUInt8(0)), (occurred_at, occurred_at_micros, event_id)) AS last_state, minState(ifNull(position, toUInt8(255))) AS best_state, maxState(ifNull(position, toUInt8(0))) AS worst_state"
rank_key='tenant_id, campaign_id, keyword, geo, engine, device'

setup() {
    for db in rav_tables rav_views; do
        q "DROP DATABASE IF EXISTS $db"
        q "CREATE DATABASE $db"
        q "CREATE TABLE $db.click_events ($click_columns) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(occurred_at) ORDER BY (tenant_id, short_code, occurred_at, event_id)"
        q "CREATE TABLE $db.rank_events ($rank_columns) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(occurred_at) ORDER BY (tenant_id, campaign_id, keyword, occurred_at, event_id)"
    done
    q "CREATE TABLE rav_tables.click_minute (tenant_id String, short_code String, minute DateTime('UTC'), clicks_state AggregateFunction(uniqExact, String), visitors_state AggregateFunction(uniqExactIf, String, UInt8)) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(minute) ORDER BY (tenant_id, short_code, minute)"
    q "CREATE MATERIALIZED VIEW rav_tables.click_minute_mv TO rav_tables.click_minute AS SELECT tenant_id, short_code, toStartOfMinute(occurred_at, 'UTC') AS minute, $click_states FROM rav_tables.click_events GROUP BY tenant_id, short_code, minute"
    q "CREATE VIEW rav_tables.click_day AS SELECT tenant_id, short_code, toDate(minute, 'UTC') AS day, clicks_state, visitors_state FROM rav_tables.click_minute"
    q "CREATE TABLE rav_tables.rank_day (tenant_id String, campaign_id String, keyword String, geo String, engine String, device String, day Date, checks_state AggregateFunction(uniqExact, String), last_state AggregateFunction(argMax, UInt8, Tuple(DateTime, UInt32, String)), best_state AggregateFunction(min, UInt8), worst_state AggregateFunction(max, UInt8)) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY ($rank_key, day)"
    q "CREATE MATERIALIZED VIEW rav_tables.rank_day_mv TO rav_tables.rank_day AS SELECT $rank_key, toDate(occurred_at, 'UTC') AS day, $rank_states FROM rav_tables.rank_events GROUP BY $rank_key, day"
    q "CREATE VIEW rav_views.click_minute AS SELECT tenant_id, short_code, toStartOfMinute(occurred_at, 'UTC') AS minute, $click_states FROM rav_views.click_events GROUP BY tenant_id, short_code, minute"
    q "CREATE VIEW rav_views.click_day AS SELECT tenant_id, short_code, toDate(occurred_at, 'UTC') AS day, $click_states FROM rav_views.click_events GROUP BY tenant_id, short_code, day"
    q "CREATE VIEW rav_views.rank_day AS SELECT $rank_key, toDate(occurred_at, 'UTC') AS day, $rank_states FROM rav_views.rank_events GROUP BY $rank_key, day"
}

# load <table> <SELECT of the rows>: inserts into both databases; prints the CPU of each, and of merging.
load() {
    local tables=rav_tables views=rav_views
    echo "| insert, user CPU s | rollup tables: $(cpu "INSERT INTO $tables.$1 $2") | views: $(cpu "INSERT INTO $views.$1 $2") |"
    local merge_tables=0 t
    for t in $(q "SELECT name FROM system.tables WHERE database = '$tables' AND engine LIKE '%MergeTree'"); do
        merge_tables=$(awk "BEGIN{print $merge_tables + $(cpu "OPTIMIZE TABLE $tables.$t FINAL")}")
    done
    echo "| merge every table to one part, user CPU s | rollup tables: $merge_tables | views: $(cpu "OPTIMIZE TABLE $views.$1 FINAL") |"
}

# ask <question> <old query on {db}> <documented query on {db}>: the three ways, with equal answers.
ask() {
    local old_t=${2//\{db\}/rav_tables} doc=${3//\{db\}/rav_views} old_v=${2//\{db\}/rav_views} a b c
    a=$(q "$old_t" | md5sum) b=$(q "$doc" | md5sum) c=$(q "$old_v" | md5sum)
    if [ "$a" != "$b" ] || [ "$a" != "$c" ]; then
        echo "$1: the answers differ" >&2
        exit 1
    fi
    echo "| $1 | $(median_ms "$old_t") | $(median_ms "$doc") | $(median_ms "$old_v") |"
}

header() {
    echo
    echo "### $1 (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
}
questions() {
    echo
    echo "| question | rollup table (0004), ms | raw table, documented query (0005), ms | view with the rollup's name (0005), ms |"
    echo "|---|---|---|---|"
}

clicks_day_old="SELECT tenant_id, short_code, day, uniqExactMerge(clicks_state), uniqExactIfMerge(visitors_state) FROM {db}.click_day GROUP BY tenant_id, short_code, day ORDER BY tenant_id, short_code, day"
clicks_day_doc="SELECT tenant_id, short_code, toDate(occurred_at, 'UTC') AS day, uniqExact(event_id), uniqExactIf(ifNull(visitor_id, ''), isNotNull(visitor_id)) FROM {db}.click_events GROUP BY tenant_id, short_code, day ORDER BY tenant_id, short_code, day"
click_questions() {
    local tenant=$1 day=$2 link=$3
    questions
    ask "clicks and visitors per link per day, every link" "$clicks_day_old" "$clicks_day_doc"
    ask "clicks per link, one tenant, one day" \
        "SELECT short_code, uniqExactMerge(clicks_state) FROM {db}.click_day WHERE tenant_id = '$tenant' AND day = toDate('$day') GROUP BY short_code ORDER BY short_code" \
        "SELECT short_code, uniqExact(event_id) FROM {db}.click_events WHERE tenant_id = '$tenant' AND toDate(occurred_at, 'UTC') = toDate('$day') GROUP BY short_code ORDER BY short_code"
    ask "clicks per minute, one link" \
        "SELECT minute, uniqExactMerge(clicks_state) FROM {db}.click_minute WHERE tenant_id = '$tenant' AND short_code = '$link' GROUP BY minute ORDER BY minute" \
        "SELECT toStartOfMinute(occurred_at, 'UTC') AS minute, uniqExact(event_id) FROM {db}.click_events WHERE tenant_id = '$tenant' AND short_code = '$link' GROUP BY minute ORDER BY minute"
}

echo "server $(q 'SELECT version()')"
setup
header "Busy clicks: $clicks clicks in one day, 8 tenants x 500 skewed links"
load click_events "SELECT concat(toString(cityHash64(number)), '-', toString(number)), concat('tenant-', toString(number % 8)), toDateTime(1780012800 + intDiv(number * 86400, $clicks)), concat('link', toString(toUInt32(pow((cityHash64(number, 1) % 1000000) / 1000000, 3) * 500))), if(number % 5 = 0, NULL, concat('v', toString(cityHash64(number, 2) % 100000))) FROM system.numbers LIMIT $clicks"
click_questions tenant-3 2026-05-29 link0

setup
header "Sparse clicks: $clicks clicks over 7 days, 1,000 tenants x 3,000 links"
load click_events "SELECT concat(toString(cityHash64(number)), '-', toString(number)), concat('tenant-', toString(number % 1000)), toDateTime(1780012800 + cityHash64(number, 3) % (7 * 86400)), concat('link', toString(cityHash64(number, 1) % 3000)), if(number % 5 = 0, NULL, concat('v', toString(cityHash64(number, 2) % 100000))) FROM system.numbers LIMIT $clicks"
click_questions tenant-3 2026-05-29 link7

setup
header "Rank checks: $checks checks, each keyword checked once a day for 20 days, 1,000 tenants"
load rank_events "SELECT concat(toString(cityHash64(number)), '-', toString(number)), concat('tenant-', toString(intDiv(number, 20) % 1000)), toDateTime(1780012800 + (number % 20) * 86400 + cityHash64(number, 1) % 86400), cityHash64(number, 4) % 1000000, concat('c', toString(intDiv(number, 20000) % 10)), concat('k', toString(intDiv(number, 20))), 'us', 'google', 'desktop', if(cityHash64(number, 2) % 10 = 0, NULL, toUInt8(cityHash64(number, 2) % 100 + 1)) FROM system.numbers LIMIT $checks"
questions
ask "rank history per keyword per day" \
    "SELECT $rank_key, day, nullIf(argMaxMerge(last_state), 0), nullIf(minMerge(best_state), 255), nullIf(maxMerge(worst_state), 0), uniqExactMerge(checks_state) FROM {db}.rank_day GROUP BY $rank_key, day ORDER BY $rank_key, day" \
    "SELECT $rank_key, toDate(occurred_at, 'UTC') AS day, nullIf(argMax(ifNull(position, toUInt8(0)), (occurred_at, occurred_at_micros, event_id)), 0), min(position), max(position), uniqExact(event_id) FROM {db}.rank_events GROUP BY $rank_key, day ORDER BY $rank_key, day"
ask "one tenant's rank history" \
    "SELECT keyword, day, nullIf(argMaxMerge(last_state), 0), uniqExactMerge(checks_state) FROM {db}.rank_day WHERE tenant_id = 'tenant-7' GROUP BY keyword, day ORDER BY keyword, day" \
    "SELECT keyword, toDate(occurred_at, 'UTC') AS day, nullIf(argMax(ifNull(position, toUInt8(0)), (occurred_at, occurred_at_micros, event_id)), 0), uniqExact(event_id) FROM {db}.rank_events WHERE tenant_id = 'tenant-7' GROUP BY keyword, day ORDER BY keyword, day"

for db in rav_tables rav_views; do q "DROP DATABASE $db"; done
