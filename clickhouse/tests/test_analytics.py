"""The analyst queries of docs/analytics.md on ClickHouse 26.x (chdb, always) and on the local 18.16
server (over HTTP, when it answers): the migrations (base, plus the modern overlays where the server is
modern) are applied to an empty database, a generated dataset with duplicate deliveries is inserted into
the raw tables, and every documented query must return exactly what oracle.py computes from the events —
also after re-running every migration and after merging every table. Queries written for the rollup
tables, which are views since migration 0005, must still give the same answers. The modern-only DDL
(overlays, the retention TTL) is checked on chdb."""

from __future__ import annotations

import os
import struct
import time
import uuid

import pytest

import dataset
import oracle
import sluice_ch

HTTP_URL = os.environ.get("SLUICE_CLICKHOUSE_URL", "http://127.0.0.1:8123")
BACKENDS = ["chdb"] + (["http"] if sluice_ch.server_reachable(HTTP_URL) else [])
QUERIES = sluice_ch.analyst_queries()


def make_backend(kind: str) -> sluice_ch.Backend:
    if kind == "chdb":
        return sluice_ch.ChdbBackend("sluice")
    return sluice_ch.HttpBackend(HTTP_URL, f"pytest_analytics_{uuid.uuid4().hex[:8]}")


def merge_tree_tables(backend: sluice_ch.Backend) -> list[str]:
    return [
        f"{db}.{name}"
        for db, name in backend.rows(
            "SELECT database, name FROM system.tables WHERE database = currentDatabase() "
            "AND engine LIKE '%MergeTree' ORDER BY name"
        )
    ]


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(request):
    """A database with the dataset loaded while merges are stopped, so that every duplicate delivery
    is still a separate row when the queries run (the hard case: nothing collapsed yet)."""
    backend = make_backend(request.param)
    backend.migrate()
    for table in merge_tree_tables(backend):
        backend.query(f"SYSTEM STOP MERGES {table}")
    ds = dataset.generate(time.time_ns() // 1000)
    for statement in dataset.insert_statements(ds):
        backend.query(statement)
    for table in ("rank_events", "crawl_events", "click_events", "crawl_fetches"):
        [(rows, events)] = backend.rows(f"SELECT count(), uniqExact(event_id) FROM {table}")
        assert int(rows) > int(events), f"{table}: the duplicate deliveries were collapsed already"
    yield backend, ds
    backend.close()


def run_stable(backend: sluice_ch.Backend, sql: str) -> tuple[list[tuple], int]:
    """Runs a query within one wall-clock minute (the finest bucket a query depends on); returns the rows
    and the second it started, for the oracle."""
    for _ in range(5):
        before = time.time()
        rows = backend.rows(sql)
        if int(before) // 60 == int(time.time()) // 60:
            return rows, int(before)
    raise AssertionError("could not run the query within one minute")


def check_all(backend: sluice_ch.Backend, ds: dataset.Dataset) -> None:
    failures = []
    for name, sql in QUERIES.items():
        rows, now = run_stable(backend, sql)
        problem = oracle.same_rows(oracle.ORACLES[name](ds, now), rows)
        if problem:
            failures.append(f"{name}: {problem}")
    assert not failures, "\n".join(failures)


def test_every_documented_query_has_an_oracle():
    assert len(QUERIES) >= 10
    assert set(QUERIES) == set(oracle.ORACLES)


def test_dataset_has_duplicates_and_data_in_every_window():
    ds = dataset.generate(time.time_ns() // 1000)
    events = len(ds.rank) + len(ds.crawl) + len(ds.click)
    assert ds.deliveries() > events * 1.2
    now = ds.now_us // dataset.US
    for name, compute in oracle.ORACLES.items():
        assert compute(ds, now), f"{name}: the dataset leaves this query empty"


# Queries written for the rollup tables before migration 0005, which made each rollup a view over its raw
# table with the same columns: they must still give the documented answers (oracle.py's, by name).
STATE_QUERIES = {
    "clicks_per_minute": """SELECT tenant_id, short_code, minute, uniqExactMerge(clicks_state),
        uniqExactIfMerge(visitors_state) FROM click_minute
        WHERE minute >= toStartOfMinute(now() - INTERVAL 1 HOUR, 'UTC')
        GROUP BY tenant_id, short_code, minute ORDER BY tenant_id, short_code, minute""",
    "clicks_per_hour": """SELECT tenant_id, short_code, hour, uniqExactMerge(clicks_state),
        uniqExactIfMerge(visitors_state) FROM click_hour
        WHERE hour >= toStartOfHour(now() - INTERVAL 24 HOUR, 'UTC')
        GROUP BY tenant_id, short_code, hour ORDER BY tenant_id, short_code, hour""",
    "clicks_per_day": """SELECT tenant_id, short_code, day, uniqExactMerge(clicks_state),
        uniqExactIfMerge(visitors_state) FROM click_day WHERE day >= toDate(now(), 'UTC') - 6
        GROUP BY tenant_id, short_code, day ORDER BY tenant_id, short_code, day""",
    "rank_history": """SELECT tenant_id, campaign_id, keyword, geo, engine, device, day,
        nullIf(argMaxMerge(last_state), 0), nullIf(minMerge(best_state), 255),
        nullIf(maxMerge(worst_state), 0), uniqExactMerge(checks_state) FROM rank_day
        WHERE day >= toDate(now(), 'UTC') - 29
        GROUP BY tenant_id, campaign_id, keyword, geo, engine, device, day
        ORDER BY tenant_id, campaign_id, keyword, geo, engine, device, day""",
    "crawl_status_mix": """SELECT tenant_id, domain, hour,
        uniqExactIfMerge(status_1xx_state) + uniqExactIfMerge(status_2xx_state)
            + uniqExactIfMerge(status_3xx_state) + uniqExactIfMerge(status_4xx_state)
            + uniqExactIfMerge(status_5xx_state),
        uniqExactIfMerge(status_1xx_state), uniqExactIfMerge(status_2xx_state),
        uniqExactIfMerge(status_3xx_state), uniqExactIfMerge(status_4xx_state),
        uniqExactIfMerge(status_5xx_state), maxMerge(fetch_ms_max_state) FROM crawl_hour
        WHERE hour >= toStartOfHour(now() - INTERVAL 24 HOUR, 'UTC')
        GROUP BY tenant_id, domain, hour ORDER BY tenant_id, domain, hour""",
}


def assert_matches_oracle(backend: sluice_ch.Backend, ds: dataset.Dataset, name: str, sql: str) -> None:
    rows, now = run_stable(backend, sql)
    problem = oracle.same_rows(oracle.ORACLES[name](ds, now), rows)
    assert problem is None, f"{backend.name}: {problem}"


@pytest.mark.parametrize("name", sorted(STATE_QUERIES))
def test_the_old_rollup_names_answer_queries_written_for_them(loaded, name):
    assert_matches_oracle(*loaded, name, STATE_QUERIES[name])


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_matches_oracle(loaded, name):
    assert_matches_oracle(*loaded, name, QUERIES[name])


def test_answers_survive_rerun_migrations_and_merges(loaded):
    backend, ds = loaded
    # The migrations since 0005 run again (the Rust runner never re-runs one it recorded, and 0002-0004
    # no longer apply over 0005's views): each drops whatever its names are and creates them again.
    backend.migrate(since=5)
    check_all(backend, ds)
    for table in merge_tree_tables(backend):
        backend.query(f"SYSTEM START MERGES {table}")
        backend.query(f"OPTIMIZE TABLE {table} FINAL")
    [(rows, events)] = backend.rows("SELECT count(), uniqExact(event_id) FROM click_events")
    assert rows == events
    check_all(backend, ds)


def test_modern_overlay_on_chdb(tmp_path):
    backend = make_backend("chdb")
    try:
        assert backend.is_modern()
        ran = backend.migrate()
        assert any(r.endswith(".modern") for r in ran)
        types = dict(backend.rows("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                                  "AND table = 'click_events'"))
        assert types["country"] == "LowCardinality(Nullable(String))"
        assert types["occurred_at_us"] == "DateTime64(6, \\'UTC\\')"
        backend.query(
            "INSERT INTO click_events (event_id, tenant_id, occurred_at, occurred_at_micros, short_code, "
            "kafka_topic, kafka_partition, kafka_offset, ingested_at) "
            "VALUES ('e1', 't', 1767323045, 123456, 's', 'click-events', 0, 0, 1767323046)"
        )
        assert backend.rows("SELECT toString(occurred_at_us) FROM click_events") == [("2026-01-02 03:04:05.123456",)]
        # Ingest's RowBinary rows (the layout of ClickHouseSink::write) still load into the changed columns.
        path = tmp_path / "click.rowbinary"
        path.write_bytes(click_rowbinary("e2", "t", 1767323046, 7, "s", country="de", visitor="v"))
        backend.query(
            "INSERT INTO click_events (event_id, tenant_id, occurred_at, occurred_at_micros, short_code, referrer, "
            "country, user_agent, visitor_id, kafka_topic, kafka_partition, kafka_offset, ingested_at) "
            f"FROM INFILE '{path}' FORMAT RowBinary"
        )
        assert backend.rows("SELECT country, kafka_topic, toString(occurred_at_us) FROM click_events "
                            "WHERE event_id = 'e2'") == [("de", "click-events", "2026-01-02 03:04:06.000007")]
        assert backend.rows("SELECT uniqExactIfMerge(visitors_state) FROM click_day") == [("1",)]
    finally:
        backend.close()


def click_rowbinary(event_id: str, tenant: str, secs: int, micros: int, code: str, country: str | None,
                    visitor: str | None) -> bytes:
    """One click_events row in RowBinary, in the column order of ClickHouseSink::write."""

    def string(v: str) -> bytes:
        data = v.encode()
        assert len(data) < 128
        return bytes([len(data)]) + data

    def nullable(v: str | None) -> bytes:
        return b"\x01" if v is None else b"\x00" + string(v)

    return (
        string(event_id) + string(tenant) + struct.pack("<II", secs, micros) + string(code)
        + nullable(None) + nullable(country) + nullable(None) + nullable(visitor)
        + string("click-events") + struct.pack("<HQI", 0, 1, secs)
    )


def test_retention_ttl_on_chdb():
    backend = make_backend("chdb")
    try:
        backend.migrate()
        tables = backend.rows("SELECT name, partition_key FROM system.tables WHERE database = currentDatabase() "
                              "AND partition_key LIKE 'toYYYYMM(%' ORDER BY name")
        assert len(tables) == 4  # 3 raw tables and crawl_fetches (the rollups are views since 0005)
        for table, key in tables:
            column = key[len("toYYYYMM("):-1]
            backend.query(sluice_ch.ttl_statement(f"`{table}`", column, 3))
            # apply_retention skips tables whose engine_full already shows this TTL (changing a TTL
            # rewrites parts), so the text it looks for must be what 26.x prints.
            [(engine_full,)] = backend.rows(f"SELECT engine_full FROM system.tables WHERE "
                                            f"database = currentDatabase() AND name = '{table}'")
            expression = f"TTL {column} + toIntervalMonth(3)"
            assert engine_full.endswith(expression) or f"{expression} " in engine_full, engine_full
        now = int(time.time())
        old = now - 200 * 86400
        for i, ts in enumerate([old, old + 60, now - 3600]):
            backend.query(
                "INSERT INTO click_events (event_id, tenant_id, occurred_at, occurred_at_micros, short_code, "
                f"visitor_id, kafka_topic, kafka_partition, kafka_offset, ingested_at) "
                f"VALUES ('e{i}', 't', {ts}, 0, 's', 'v', 'click-events', 0, {i}, {now})"
            )
        for table, _ in tables:
            backend.query(f"OPTIMIZE TABLE {table} FINAL")
        assert backend.rows("SELECT event_id FROM click_events") == [("e2",)]
        for table in ("click_minute", "click_hour", "click_day"):
            assert backend.rows(f"SELECT uniqExactMerge(clicks_state) FROM {table}") == [("1",)], table
    finally:
        backend.close()
