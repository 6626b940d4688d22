# Sourced by the bench scripts here: a ClickHouse server over HTTP (CLICKHOUSE_URL, the local 18.16 by
# default) with the settings they all use — predicate push-down on (as the stack's users.xml sets it),
# 100,000-row blocks, queries logged.
url=${CLICKHOUSE_URL:-http://127.0.0.1:8123}
settings="enable_optimize_predicate_expression=1&max_block_size=100000&min_insert_block_size_rows=100000&min_insert_block_size_bytes=0&log_queries=1"

# q SQL [QUERY_ID]: runs one statement, prints its result.
q() { curl -sS --fail-with-body "$url/?$settings${2:+&query_id=$2}" --data-binary "$1"; }

# median_ms SQL: the median wall time of 5 runs, in ms.
median_ms() {
    for _ in 1 2 3 4 5; do
        s=$(date +%s%N)
        q "$1" >/dev/null
        e=$(date +%s%N)
        echo $(((e - s) / 1000000))
    done | sort -n | sed -n 3p
}
