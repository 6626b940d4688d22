#!/usr/bin/env bash
# The rank_daily upsert with its column arrays unnested two ways, timed against each other on the local
# stack's PostgreSQL (`make up` first): `SELECT u.* FROM unnest(a1, …, a13) u` (a function scan, which
# copies every array into a tuple store first) and `SELECT unnest(a1), …, unnest(a13)` (a ProjectSet, the
# sink's form since session 13). A scratch database gets a table shaped like one rank_daily partition
# (same columns, key, COLLATE "C", fillfactor 80) holding 1,000,000 rows, and 40 batches of 10,000 new
# keys sorted like the sink sorts them. The batches are upserted alternately in the two forms (inserts),
# then all again (every key now exists: updates). Prints each form's summed statement time (psql
# \timing). The database is dropped at the end.
#
#   bash aggregator/sinks/bench/upsert_unnest.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=aggregator/sinks/bench/scratch_db.bash
source aggregator/sinks/bench/scratch_db.bash
scratch_db bench_upsert_unnest

rank_daily_table r | psql -q -v ON_ERROR_STOP=1 "$url"
psql -q -v ON_ERROR_STOP=1 "$url" <<'SQL'
INSERT INTO r
SELECT 'tenant-' || (h % 1000), 'campaign-' || (h % 37), 'kw ' || md5(i::text), 'us-' || (i % 50), 'google',
       'mobile', date '2026-12-04', 1, now(), 'evt-' || i, 1, 1, 1
FROM generate_series(1, 1000000) i, LATERAL (SELECT hashint4(i) & 2147483647 AS h) x;
CREATE TABLE batches AS
SELECT b,
  array_agg(t ORDER BY t, c, k) a1, array_agg(c ORDER BY t, c, k) a2, array_agg(k ORDER BY t, c, k) a3,
  array_agg(g ORDER BY t, c, k) a4, array_agg('google'::text ORDER BY t, c, k) a5,
  array_agg('mobile'::text ORDER BY t, c, k) a6, array_agg(date '2026-12-04' ORDER BY t, c, k) a7,
  array_agg(2::smallint ORDER BY t, c, k) a8, array_agg(now() ORDER BY t, c, k) a9,
  array_agg('evt-x' || k ORDER BY t, c, k) a10, array_agg(2::smallint ORDER BY t, c, k) a11,
  array_agg(2::smallint ORDER BY t, c, k) a12, array_agg(1::bigint ORDER BY t, c, k) a13
FROM (SELECT i / 10000 AS b, 'tenant-' || (h % 1000) t, 'campaign-' || (h % 37) c,
             'kw ' || md5((i + 5000000)::text) k, 'us-' || (i % 50) g
      FROM generate_series(0, 399999) i, LATERAL (SELECT hashint4(i + 7) & 2147483647 AS h) x) s
GROUP BY b;
VACUUM ANALYZE r;
SQL

cols="tenant_id, campaign_id, keyword, geo, engine, device, day, last_position, last_occurred_at,
      last_event_id, best_position, worst_position, checks"
# The sink's own conflict clause (its table alias is `r`, as here).
conflict=$(rank_daily_conflict)
script() {
  echo '\timing on'
  for b in $(seq 0 39); do
    if (( b % 2 == 0 )); then
      echo '\echo function-scan'
      echo "INSERT INTO r AS r ($cols) SELECT u.* FROM batches,
              unnest(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13) u WHERE b = $b $conflict;"
    else
      echo '\echo project-set'
      echo "INSERT INTO r AS r ($cols) SELECT unnest(a1), unnest(a2), unnest(a3), unnest(a4), unnest(a5),
              unnest(a6), unnest(a7), unnest(a8), unnest(a9), unnest(a10), unnest(a11), unnest(a12),
              unnest(a13) FROM batches WHERE b = $b $conflict;"
    fi
  done
}
for phase in "inserts (new keys)" "updates (the same keys again)"; do
  echo "== $phase, load $(cut -d' ' -f1-3 /proc/loadavg)"
  script | psql -q -v ON_ERROR_STOP=1 "$url" 2>&1 | grep -E '^(function-scan|project-set|Time:)' | paste - - |
    awk '{ ms[$1] += $3; n[$1]++ } END { for (f in ms) printf "  %-14s %2d batches of 10,000 rows: %8.1f ms\n", f, n[f], ms[f] }'
done
