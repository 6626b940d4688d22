#!/usr/bin/env bash
# New rank_daily rows three ways, on the local stack's PostgreSQL (`make up` first): the sink's
# INSERT … ON CONFLICT DO UPDATE, the plain INSERT the sink uses for keys it has not written
# (`postgres/known.rs`), and the plain insert meeting one existing key — the sink's fall-back: inside a
# savepoint the plain insert fails on that key, the savepoint is rolled back, and the batch goes by
# ON CONFLICT (every statement of it timed).
#
# A scratch database gets a table shaped like one rank_daily partition (same columns, primary key and
# secondary index, COLLATE "C", fillfactor 80) holding 1,000,000 rows, and 60 batches of 10,000 new keys,
# sorted like the sink sorts them. Batch b goes by form b mod 3; the fall-back batches also carry one
# existing key, in the middle of their sort order. Prints each form's summed statement time (psql
# \timing). The database is dropped at the end.
#
#   bash aggregator/sinks/bench/insert_new_rows.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=aggregator/sinks/bench/scratch_db.bash
source aggregator/sinks/bench/scratch_db.bash
scratch_db bench_insert_new_rows

rank_daily_table r | psql -q -v ON_ERROR_STOP=1 "$url"
psql -q -v ON_ERROR_STOP=1 "$url" <<'SQL'
CREATE INDEX r_campaign_day ON r (tenant_id, campaign_id, day DESC);
INSERT INTO r SELECT 'tenant-' || (h % 1000), 'camp-1', 'kw ' || md5(i::text), 'us', 'google', 'desktop',
  date '2026-12-04', 5, now(), md5(h::text), 5, 5, 1
FROM generate_series(1, 1000000) i, LATERAL (SELECT hashint4(i) & 2147483647 AS h) x;
-- 600,000 new keys in 60 batches; each fall-back batch (b % 3 = 2) also gets one existing key.
CREATE TABLE inserts AS
SELECT b, array_agg(t ORDER BY t, k) a1, array_agg(k ORDER BY t, k) a3, array_agg(e ORDER BY t, k) a10
FROM (SELECT i % 60 AS b, 'tenant-' || (h % 1000) t, 'nk ' || md5(i::text) k, md5(i::text) e
      FROM generate_series(1, 600000) i, LATERAL (SELECT hashint4(i + 7) & 2147483647 AS h) x
      UNION ALL
      SELECT b, 'tenant-500', (SELECT keyword FROM r WHERE tenant_id = 'tenant-500' LIMIT 1), 'x'
      FROM generate_series(2, 59, 3) b) q
GROUP BY b;
VACUUM ANALYZE r;
SQL

select_rows() {
  echo "SELECT unnest(a1), 'camp-1', unnest(a3), 'us', 'google', 'desktop', date '2026-12-04',
          3::smallint, now(), unnest(a10), 3::smallint, 3::smallint, 1::bigint FROM inserts WHERE b = $1"
}
# The sink's own conflict clause (its table alias is `r`, as here).
conflict=$(rank_daily_conflict)
on_conflict() {
  echo "INSERT INTO r AS r $(select_rows "$1") $conflict;"
}
script() {
  echo '\timing on'
  for b in $(seq 0 59); do
    case $((b % 3)) in
      0) echo '\echo on_conflict'; on_conflict "$b" ;;
      1) echo '\echo plain_insert'; echo "INSERT INTO r $(select_rows "$b");" ;;
      2) echo 'BEGIN;'
         echo 'SAVEPOINT s;'
         echo '\echo fall_back'; echo "INSERT INTO r $(select_rows "$b");"
         echo '\echo fall_back'; echo 'ROLLBACK TO SAVEPOINT s;'
         echo '\echo fall_back'; on_conflict "$b"
         echo 'COMMIT;' ;;
    esac
  done
}
echo "== 60 batches of 10,000 new keys into 1,000,000 rows, load $(cut -d' ' -f1-3 /proc/loadavg)"
# Each form's name is echoed before its timed statements; BEGIN, SAVEPOINT and COMMIT are not counted.
script | psql -q "$url" 2>&1 |
  awk '/^(on_conflict|plain_insert|fall_back)$/ { form = $1; next }
       /^Time:/ && form != "" { ms[form] += $2; form = "" }
       END { printf "  %-13s %8.1f ms for 20 batches\n", "on_conflict", ms["on_conflict"]
             printf "  %-13s %8.1f ms for 20 batches\n", "plain_insert", ms["plain_insert"]
             printf "  %-13s %8.1f ms for 20 batches (failed insert + rollback + on_conflict)\n", "fall_back", ms["fall_back"] }'
