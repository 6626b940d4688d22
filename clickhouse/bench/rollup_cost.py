#!/usr/bin/env python3
"""What the rollups cost on a ClickHouse server (the local 18.16 by default), measured, not estimated.

Two scratch databases get the same generated events (clicks, crawls, rank checks, plus a share of
duplicate deliveries): `raw` has only the raw tables (migration 0001), `rollup` has the raw tables and
the rollups with their materialized views (every migration). Inserts go in batches like ingest flushes.
Reported: insert time per kind in each database (the difference is what the views cost), bytes on disk
per table, the time of analyst-style questions answered from the rollups and from the raw tables (FINAL)
— each the median of several runs — and two designs not taken (see `alternatives`). The scratch databases
are dropped at the end. Standard library only:

    python3 clickhouse/bench/rollup_cost.py --rows 1000000 --batch 10000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import sluice_ch  # noqa: E402

SPAN = 30 * 86400
BASE = 1_761_955_200  # 2025-11-01 00:00:00 UTC: one month partition boundary inside the span


def _generator(id_prefix: str, topic: str, columns: str) -> str:
    """The SELECT that generates one raw table's rows: the columns every kind shares (id, tenant, time,
    Kafka coordinates) around the kind's own `columns`; formatted later with base, span, count, start."""
    return f"""
SELECT concat('{id_prefix}-', toString(n)) AS event_id,
       concat('tenant-', toString(cityHash64(n, 1) % 20)) AS tenant_id,
       toDateTime({{base}} + cityHash64(n, 2) % {{span}}) AS occurred_at,
       toUInt32(cityHash64(n, 3) % 1000000) AS occurred_at_micros,
{columns}
       '{topic}' AS kafka_topic, toUInt16(n % 6) AS kafka_partition, toUInt64(n) AS kafka_offset,
       toDateTime({{base}} + {{span}}) AS ingested_at
FROM (SELECT number AS n FROM system.numbers LIMIT {{count}} OFFSET {{start}})"""


GENERATORS = {
    "click_events": _generator("c", "click-events", """\
       concat('s', toString(toUInt32(pow((cityHash64(n, 4) % 1000000) / 1000000, 3) * 200))) AS short_code,
       CAST(if(cityHash64(n, 5) % 10 < 3, NULL, 'https://www.google.com/') AS Nullable(String)) AS referrer,
       CAST(if(cityHash64(n, 6) % 10 = 0, NULL, ['us', 'de', 'fr', 'gb'][cityHash64(n, 7) % 4 + 1]) AS Nullable(String)) AS country,
       CAST('Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0' AS Nullable(String)) AS user_agent,
       CAST(if(cityHash64(n, 8) % 100 < 15, NULL, concat('v-', toString(toUInt32(pow((cityHash64(n, 9) % 1000000) / 1000000, 2) * 2000)))) AS Nullable(String)) AS visitor_id,"""),
    "crawl_events": _generator("w", "crawl-events", """\
       concat('campaign-', toString(cityHash64(n, 4) % 5)) AS campaign_id,
       concat('https://d', toString(cityHash64(n, 5) % 40), '.example/path/', toString(n % 1000)) AS url,
       concat('d', toString(cityHash64(n, 5) % 40), '.example') AS domain,
       toUInt16([200, 200, 200, 200, 200, 200, 200, 301, 404, 503][cityHash64(n, 6) % 10 + 1]) AS status_code,
       toUInt32(5 + cityHash64(n, 7) % 5000) AS fetch_ms,
       toUInt64(cityHash64(n, 8) % 2000000) AS bytes,
       CAST(NULL AS Nullable(String)) AS content_hash,"""),
    "rank_events": _generator("r", "rank-events", """\
       concat('campaign-', toString(cityHash64(n, 4) % 5)) AS campaign_id,
       concat('keyword ', toString(toUInt32(pow((cityHash64(n, 5) % 1000000) / 1000000, 2) * 50))) AS keyword,
       ['us', 'de', 'fr'][cityHash64(n, 6) % 3 + 1] AS geo,
       ['google', 'bing'][cityHash64(n, 7) % 2 + 1] AS engine,
       ['desktop', 'mobile'][cityHash64(n, 8) % 2 + 1] AS device,
       CAST(NULL AS Nullable(String)) AS url,
       CAST(if(cityHash64(n, 9) % 100 < 15, NULL, toUInt8(1 + cityHash64(n, 10) % 100)) AS Nullable(UInt8)) AS position,"""),
}

# (question, [(how it is answered, SQL), ...]): the rollup way first, then the raw-table ways.
QUERIES = [
    (
        "clicks + unique visitors per link per day, 30 days",
        [
            ("click_day rollup", "SELECT tenant_id, short_code, day, uniqExactMerge(clicks_state), "
             "uniqExactIfMerge(visitors_state) FROM click_day GROUP BY tenant_id, short_code, day"),
            ("click_events FINAL", "SELECT tenant_id, short_code, toDate(occurred_at, 'UTC') AS day, count(), "
             "uniqExact(visitor_id) FROM click_events FINAL GROUP BY tenant_id, short_code, day"),
            ("click_events uniqExact(event_id), no FINAL", "SELECT tenant_id, short_code, "
             "toDate(occurred_at, 'UTC') AS day, uniqExact(event_id), uniqExact(visitor_id) FROM click_events "
             "GROUP BY tenant_id, short_code, day"),
        ],
    ),
    (
        "clicks per link per hour, one tenant, one day",
        [
            ("click_hour (view over click_minute)", "SELECT short_code, hour, uniqExactMerge(clicks_state) "
             "FROM click_hour WHERE tenant_id = 'tenant-3' AND hour >= toDateTime('2025-11-10 00:00:00', 'UTC') "
             "AND hour < toDateTime('2025-11-11 00:00:00', 'UTC') GROUP BY short_code, hour"),
            ("click_events FINAL", "SELECT short_code, toStartOfHour(occurred_at, 'UTC') AS hour, count() "
             "FROM click_events FINAL WHERE tenant_id = 'tenant-3' "
             "AND occurred_at >= toDateTime('2025-11-10 00:00:00', 'UTC') "
             "AND occurred_at < toDateTime('2025-11-11 00:00:00', 'UTC') GROUP BY short_code, hour"),
        ],
    ),
    (
        "clicks per link per minute, one tenant, one day",
        [
            ("click_minute rollup", "SELECT short_code, minute, uniqExactMerge(clicks_state) FROM click_minute "
             "WHERE tenant_id = 'tenant-3' AND minute >= toDateTime('2025-11-10 00:00:00', 'UTC') "
             "AND minute < toDateTime('2025-11-11 00:00:00', 'UTC') GROUP BY short_code, minute"),
            ("click_events FINAL", "SELECT short_code, toStartOfMinute(occurred_at, 'UTC') AS minute, count() "
             "FROM click_events FINAL WHERE tenant_id = 'tenant-3' "
             "AND occurred_at >= toDateTime('2025-11-10 00:00:00', 'UTC') "
             "AND occurred_at < toDateTime('2025-11-11 00:00:00', 'UTC') GROUP BY short_code, minute"),
        ],
    ),
    (
        "top 10 links per tenant per day",
        [
            ("click_day rollup", "SELECT tenant_id, day, short_code, uniqExactMerge(clicks_state) AS c FROM "
             "click_day GROUP BY tenant_id, day, short_code ORDER BY tenant_id, day, c DESC, short_code "
             "LIMIT 10 BY tenant_id, day"),
            ("click_events FINAL", "SELECT tenant_id, toDate(occurred_at, 'UTC') AS day, short_code, count() AS c "
             "FROM click_events FINAL GROUP BY tenant_id, day, short_code "
             "ORDER BY tenant_id, day, c DESC, short_code LIMIT 10 BY tenant_id, day"),
        ],
    ),
    (
        "rank history (last, best, worst, checks) per keyword per day",
        [
            ("rank_day rollup", "SELECT tenant_id, campaign_id, keyword, geo, engine, device, day, "
             "argMaxMerge(last_state), minMerge(best_state), maxMerge(worst_state), uniqExactMerge(checks_state) "
             "FROM rank_day GROUP BY tenant_id, campaign_id, keyword, geo, engine, device, day"),
            ("rank_events FINAL", "SELECT tenant_id, campaign_id, keyword, geo, engine, device, "
             "toDate(occurred_at, 'UTC') AS day, "
             "argMax(ifNull(position, toUInt8(0)), (occurred_at, occurred_at_micros, event_id)), "
             "min(ifNull(position, toUInt8(255))), max(ifNull(position, toUInt8(0))), count() "
             "FROM rank_events FINAL GROUP BY tenant_id, campaign_id, keyword, geo, engine, device, day"),
        ],
    ),
    (
        "crawl status mix per domain per hour",
        [
            ("crawl_hour rollup", "SELECT tenant_id, domain, hour, uniqExactIfMerge(status_2xx_state), "
             "uniqExactIfMerge(status_3xx_state), uniqExactIfMerge(status_4xx_state), "
             "uniqExactIfMerge(status_5xx_state) FROM crawl_hour GROUP BY tenant_id, domain, hour"),
            ("crawl_events FINAL", "SELECT tenant_id, domain, toStartOfHour(occurred_at, 'UTC') AS hour, "
             "countIf(intDiv(status_code, 100) = 2), countIf(intDiv(status_code, 100) = 3), "
             "countIf(intDiv(status_code, 100) = 4), countIf(intDiv(status_code, 100) = 5) "
             "FROM crawl_events FINAL GROUP BY tenant_id, domain, hour"),
        ],
    ),
    (
        "fetch latency p50/p90/p99 per domain per hour",
        [
            ("crawl_fetches FINAL (documented)", "SELECT tenant_id, domain, hour, quantileExact(0.5)(fetch_ms), "
             "quantileExact(0.9)(fetch_ms), quantileExact(0.99)(fetch_ms) FROM crawl_fetches FINAL "
             "GROUP BY tenant_id, domain, hour"),
            ("crawl_events FINAL", "SELECT tenant_id, domain, toStartOfHour(occurred_at, 'UTC') AS hour, "
             "quantileExact(0.5)(fetch_ms), quantileExact(0.9)(fetch_ms), quantileExact(0.99)(fetch_ms) "
             "FROM crawl_events FINAL GROUP BY tenant_id, domain, hour"),
            ("crawl_fetches, no FINAL (duplicates counted twice)", "SELECT tenant_id, domain, hour, "
             "quantileExact(0.5)(fetch_ms), quantileExact(0.9)(fetch_ms), quantileExact(0.99)(fetch_ms) "
             "FROM crawl_fetches GROUP BY tenant_id, domain, hour"),
            ("crawl_fetches, no FINAL, quantilesTDigest (approximate)", "SELECT tenant_id, domain, hour, "
             "quantilesTDigest(0.5, 0.9, 0.99)(fetch_ms) FROM crawl_fetches GROUP BY tenant_id, domain, hour"),
        ],
    ),
    (
        "bytes and fetch time per domain per day",
        [
            ("crawl_fetches FINAL (documented)", "SELECT tenant_id, domain, toDate(hour, 'UTC') AS day, count(), "
             "sum(bytes), sum(fetch_ms) FROM crawl_fetches FINAL GROUP BY tenant_id, domain, day"),
            ("crawl_events FINAL", "SELECT tenant_id, domain, toDate(occurred_at, 'UTC') AS day, count(), "
             "sum(bytes), sum(fetch_ms) FROM crawl_events FINAL GROUP BY tenant_id, domain, day"),
        ],
    ),
]


class Server:
    def __init__(self, url: str, database: str) -> None:
        self.url = url.rstrip("/")
        self.database = database

    def q(self, sql: str, database: bool = True) -> str:
        params = {"default_format": "TabSeparated"}
        if database:
            params["database"] = self.database
        req = urllib.request.Request(f"{self.url}/?{urllib.parse.urlencode(params)}", data=sql.encode())
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{e.read().decode()}\nin: {sql[:300]}") from e

    def timed(self, sql: str) -> float:
        start = time.perf_counter()
        self.q(sql)
        return time.perf_counter() - start


def alternatives(server: Server, runs: int) -> None:
    """Two designs not taken, measured on the same data after a full merge: count states over a 64-bit
    hash of event_id instead of the string (uniqExact hashes strings to 128 bits), and the crawl status
    mix from crawl_fetches FINAL instead of the crawl_hour states."""
    for table, state in (("alt_day_string", "String"), ("alt_day_hash64", "UInt64")):
        server.q(f"CREATE TABLE {table} (tenant_id String, short_code String, day Date, "
                 f"clicks_state AggregateFunction(uniqExact, {state})) ENGINE = AggregatingMergeTree() "
                 "PARTITION BY toYYYYMM(day) ORDER BY (tenant_id, short_code, day)")
        arg = "event_id" if state == "String" else "cityHash64(event_id)"
        server.q(f"INSERT INTO {table} SELECT tenant_id, short_code, toDate(occurred_at, 'UTC') AS day, "
                 f"uniqExactState({arg}) FROM click_events GROUP BY tenant_id, short_code, day")
    for table in ("alt_day_string", "alt_day_hash64", "crawl_hour", "crawl_fetches", "click_events"):
        server.q(f"OPTIMIZE TABLE {table} FINAL")
    print("\nAfter OPTIMIZE … FINAL (one part per partition):\n")
    print("| alternative | bytes on disk | median ms |")
    print("|---|---|---|")
    cases = [
        ("clicks per link per day, uniqExact(event_id) states", "alt_day_string",
         "SELECT tenant_id, short_code, day, uniqExactMerge(clicks_state) FROM alt_day_string "
         "GROUP BY tenant_id, short_code, day"),
        ("clicks per link per day, uniqExact(cityHash64(event_id)) states", "alt_day_hash64",
         "SELECT tenant_id, short_code, day, uniqExactMerge(clicks_state) FROM alt_day_hash64 "
         "GROUP BY tenant_id, short_code, day"),
        ("clicks per link per day, click_events FINAL count()", "click_events",
         "SELECT tenant_id, short_code, toDate(occurred_at, 'UTC') AS day, count() FROM click_events FINAL "
         "GROUP BY tenant_id, short_code, day"),
        ("status mix per domain per hour, crawl_hour states", "crawl_hour",
         "SELECT tenant_id, domain, hour, uniqExactIfMerge(status_2xx_state), uniqExactIfMerge(status_3xx_state), "
         "uniqExactIfMerge(status_4xx_state), uniqExactIfMerge(status_5xx_state) FROM crawl_hour "
         "GROUP BY tenant_id, domain, hour"),
        ("status mix per domain per hour, crawl_fetches FINAL countIf", "crawl_fetches",
         "SELECT tenant_id, domain, hour, countIf(intDiv(status_code, 100) = 2), countIf(intDiv(status_code, 100) = 3), "
         "countIf(intDiv(status_code, 100) = 4), countIf(intDiv(status_code, 100) = 5) FROM crawl_fetches FINAL "
         "GROUP BY tenant_id, domain, hour"),
    ]
    for label, table, sql in cases:
        size = int(server.q("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase() "
                            f"AND active AND table = '{table}'"))
        ms = statistics.median(server.timed(sql) for _ in range(runs)) * 1000
        print(f"| {label} | {size / 1e6:.1f} MB | {ms:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8123")
    ap.add_argument("--rows", type=int, default=1_000_000, help="events per kind")
    ap.add_argument("--batch", type=int, default=10_000, help="rows per INSERT (an ingest flush)")
    ap.add_argument("--duplicates", type=float, default=0.05, help="share of events delivered twice")
    ap.add_argument("--runs", type=int, default=5, help="runs per query (median reported)")
    args = ap.parse_args()

    suffix = uuid.uuid4().hex[:8]
    dbs = {"raw": Server(args.url, f"bench_raw_{suffix}"), "rollup": Server(args.url, f"bench_rollup_{suffix}")}
    version = dbs["raw"].q("SELECT version()", database=False).strip()
    print(f"server {version}; {args.rows:,} events per kind in inserts of {args.batch:,} rows, "
          f"{args.duplicates:.0%} delivered twice; query times: median of {args.runs}\n")
    migrations = sluice_ch.migrations()
    try:
        for name, server in dbs.items():
            server.q(f"CREATE DATABASE {server.database}", database=False)
            for _, _, base, _ in migrations[: 1 if name == "raw" else None]:
                for statement in sluice_ch.statements(base.read_text()):
                    server.q(statement)

        print("| table | inserts | raw only (s) | raw + rollups (s) | rollup overhead |")
        print("|---|---|---|---|---|")
        dup_every = max(1, round(1 / args.duplicates)) if args.duplicates > 0 else 0
        for table, generator in GENERATORS.items():
            times = {}
            inserts = 0
            for name, server in dbs.items():
                total = 0.0
                inserts = 0
                for start in range(0, args.rows, args.batch):
                    sql = f"INSERT INTO {table} " + generator.format(
                        base=BASE, span=SPAN, count=args.batch, start=start)
                    total += server.timed(sql)
                    inserts += 1
                    if dup_every and (start // args.batch) % dup_every == dup_every - 1:
                        # Re-deliver one earlier batch: a replay after a crash.
                        replay = start - args.batch * (dup_every // 2)
                        total += server.timed(f"INSERT INTO {table} " + generator.format(
                            base=BASE, span=SPAN, count=args.batch, start=max(0, replay)))
                        inserts += 1
                times[name] = total
            overhead = times["rollup"] / times["raw"] - 1
            print(f"| {table} | {inserts} | {times['raw']:.2f} | {times['rollup']:.2f} | {overhead:+.0%} |")

        # Let background merges settle so that queries see a realistic part count.
        time.sleep(5)
        print("\n| table (rollup database) | rows | parts | bytes on disk |")
        print("|---|---|---|---|")
        for table, rows, parts, size in (
            line.split("\t") for line in dbs["rollup"].q(
                "SELECT table, sum(rows), count(), sum(bytes_on_disk) FROM system.parts "
                "WHERE database = currentDatabase() AND active GROUP BY table ORDER BY table"
            ).splitlines()
        ):
            print(f"| {table} | {int(rows):,} | {parts} | {int(size) / 1e6:.1f} MB |")

        print("\n| question | answered from | median ms |")
        print("|---|---|---|")
        server = dbs["rollup"]
        for question, variants in QUERIES:
            for how, sql in variants:
                ms = statistics.median(server.timed(sql) for _ in range(args.runs)) * 1000
                print(f"| {question} | {how} | {ms:.0f} |")
                question = ""
        alternatives(dbs["rollup"], args.runs)
    finally:
        for server in dbs.values():
            server.q(f"DROP DATABASE IF EXISTS {server.database}", database=False)


if __name__ == "__main__":
    main()
