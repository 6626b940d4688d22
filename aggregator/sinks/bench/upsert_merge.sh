#!/usr/bin/env bash
# The click_daily upsert (INSERT … ON CONFLICT DO UPDATE, the sink's form) against PostgreSQL 15's MERGE
# and against the plain statements, on the local stack's PostgreSQL (`make up` first). ON CONFLICT writes
# two WAL records a row that the plain statements do not: a row lock before each update (Heap/LOCK) and
# the confirmation of each speculatively inserted row (Heap/HEAP_CONFIRM) — 8.7 % and 6.7 % of the WAL of
# a load run at 100k events/s (docs/BENCHMARKS.md, session 18). This measures what avoiding them is worth.
#
# A scratch database gets a table shaped like one click_daily partition (same columns, key, COLLATE "C",
# fillfactor 80) holding 1,000,000 rows. Updates: 60 batches of 10,000 existing keys, sorted like the sink
# sorts them, applied in turn as ON CONFLICT DO UPDATE, MERGE and UPDATE … FROM, twice. Inserts: 60
# batches of 10,000 new keys, in turn as ON CONFLICT DO UPDATE, MERGE, a plain INSERT, and one statement
# that updates the keys that exist and plainly inserts the rest (UPDATE … RETURNING in a CTE, then INSERT
# … WHERE NOT EXISTS). Prints each form's summed statement time (psql \timing). The database is dropped
# at the end.
#
#   bash aggregator/sinks/bench/upsert_merge.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=aggregator/sinks/bench/scratch_db.bash
source aggregator/sinks/bench/scratch_db.bash
scratch_db bench_upsert_merge

psql -q -v ON_ERROR_STOP=1 "$url" <<'SQL'
CREATE TABLE c (tenant_id text COLLATE "C", short_code text COLLATE "C", day date, clicks bigint NOT NULL,
  PRIMARY KEY (tenant_id, short_code, day)) WITH (fillfactor = 80);
INSERT INTO c SELECT 'tenant-' || (h % 1000), 'l' || md5(i::text), date '2026-12-04', 1
FROM generate_series(1, 1000000) i, LATERAL (SELECT hashint4(i) & 2147483647 AS h) x;
-- Updates: 600,000 of the rows' keys in 60 batches; inserts: 600,000 new keys in 60 batches.
CREATE TABLE updates AS
SELECT b, array_agg(t ORDER BY t, s) a1, array_agg(s ORDER BY t, s) a2,
       array_agg(date '2026-12-04' ORDER BY t, s) a3, array_agg(1::bigint ORDER BY t, s) a4
FROM (SELECT (row_number() OVER ()) % 60 AS b, tenant_id t, short_code s
      FROM c TABLESAMPLE BERNOULLI (70) REPEATABLE (7) LIMIT 600000) q
GROUP BY b;
CREATE TABLE inserts AS
SELECT i % 60 AS b, array_agg(t ORDER BY t, s) a1, array_agg(s ORDER BY t, s) a2,
       array_agg(date '2026-12-04' ORDER BY t, s) a3, array_agg(1::bigint ORDER BY t, s) a4
FROM (SELECT i, 'tenant-' || (h % 1000) t, 'n' || md5(i::text) s
      FROM generate_series(1, 600000) i, LATERAL (SELECT hashint4(i + 7) & 2147483647 AS h) x) q
GROUP BY i % 60;
VACUUM ANALYZE c;
SQL

source_of() { # the batch's rows, in the select-list unnest form the sink uses
  echo "(SELECT unnest(a1) t, unnest(a2) s, unnest(a3) d, unnest(a4) n FROM $1 WHERE b = $2) u"
}
on_conflict() {
  echo "INSERT INTO c AS c (tenant_id, short_code, day, clicks)
          SELECT unnest(a1), unnest(a2), unnest(a3), unnest(a4) FROM $1 WHERE b = $2
        ON CONFLICT (tenant_id, short_code, day) DO UPDATE SET clicks = c.clicks + EXCLUDED.clicks;"
}
merge() {
  echo "MERGE INTO c USING $(source_of "$1" "$2")
          ON c.tenant_id = u.t AND c.short_code = u.s AND c.day = u.d
        WHEN MATCHED THEN UPDATE SET clicks = c.clicks + u.n
        WHEN NOT MATCHED THEN INSERT VALUES (u.t, u.s, u.d, u.n);"
}
update_from() {
  echo "UPDATE c SET clicks = c.clicks + u.n FROM $(source_of "$1" "$2")
        WHERE c.tenant_id = u.t AND c.short_code = u.s AND c.day = u.d;"
}
plain_insert() {
  echo "INSERT INTO c (tenant_id, short_code, day, clicks)
          SELECT unnest(a1), unnest(a2), unnest(a3), unnest(a4) FROM $1 WHERE b = $2;"
}
update_then_insert() {
  echo "WITH u AS (SELECT unnest(a1) t, unnest(a2) s, unnest(a3) d, unnest(a4) n FROM $1 WHERE b = $2),
        upd AS (UPDATE c SET clicks = c.clicks + u.n FROM u
                WHERE c.tenant_id = u.t AND c.short_code = u.s AND c.day = u.d
                RETURNING c.tenant_id, c.short_code, c.day)
        INSERT INTO c (tenant_id, short_code, day, clicks) SELECT u.t, u.s, u.d, u.n FROM u
        WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.tenant_id = u.t AND upd.short_code = u.s AND upd.day = u.d);"
}
# $1: the batches' table; then the forms, batch b in form (b mod the number of forms).
script() {
  echo '\timing on'
  local table=$1
  shift
  local forms=("$@")
  for b in $(seq 0 59); do
    local form=${forms[$((b % ${#forms[@]}))]}
    echo "\\echo $form"
    "$form" "$table" "$b"
  done
}
summed() {
  psql -q -v ON_ERROR_STOP=1 "$url" 2>&1 | grep -E '^([a-z_]+|Time:)' | paste - - |
    awk '{ ms[$1] += $3; n[$1]++ } END { for (f in ms) printf "  %-13s %2d batches of 10,000 rows: %8.1f ms\n", f, n[f], ms[f] }'
}
for round in 1 2; do
  echo "== updates (existing keys), round $round, load $(cut -d' ' -f1-3 /proc/loadavg)"
  script updates on_conflict merge update_from | summed
done
echo "== inserts (new keys), load $(cut -d' ' -f1-3 /proc/loadavg)"
script inserts on_conflict merge plain_insert update_then_insert | summed
