"""A generated dataset for the analytics tests: rank, crawl and click events around a given "now" (a
quarter in the last two hours, most in the last three days, some up to 35 days back), hand-written corner
cases (rank ties at the same microsecond, an unranked last check, clicks on both sides of midnight), and
an insertion plan that delivers some events more than once: copies inside the same insert, whole inserts
replayed (a crash before the offset commit), and single events re-sent in later inserts (producer
retries). Duplicates carry new Kafka offsets and ingest times, as real re-deliveries do."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

US = 1_000_000

STATUS_CODES = [100, 200, 200, 200, 200, 200, 201, 204, 301, 304, 404, 404, 410, 429, 500, 503]


@dataclass
class Dataset:
    now_us: int
    rank: list[dict] = field(default_factory=list)
    crawl: list[dict] = field(default_factory=list)
    click: list[dict] = field(default_factory=list)
    # Inserts in order: (table, events), events may repeat within and across inserts.
    inserts: list[tuple[str, list[dict]]] = field(default_factory=list)

    def deliveries(self) -> int:
        return sum(len(rows) for _, rows in self.inserts)


def generate(now_us: int, seed: int = 20261124, per_kind: int = 2000) -> Dataset:
    rng = random.Random(seed)
    ds = Dataset(now_us=now_us)
    tenants = ["acme", "globex"]

    def when() -> int:
        r = rng.random()
        if r < 0.25:
            back = rng.randrange(0, 2 * 3600 * US)
        elif r < 0.85:
            back = rng.randrange(0, 3 * 86400 * US)
        else:
            back = rng.randrange(0, 35 * 86400 * US)
        return now_us - back

    for i in range(per_kind):
        tenant = rng.choice(tenants)
        ranked = rng.random() > 0.15
        ds.rank.append(
            {
                "event_id": f"r-{i:05d}",
                "tenant_id": tenant,
                "ts": when(),
                "campaign_id": rng.choice(["spring", "brand"]),
                "keyword": rng.choice(["running shoes", "best running shoes", "trail shoes", "shoe sale"]),
                "geo": rng.choice(["us", "de"]),
                "engine": "google",
                "device": rng.choice(["desktop", "mobile"]),
                "url": f"https://{tenant}.example/p/{rng.randrange(50)}" if ranked else None,
                "position": rng.randint(1, 100) if ranked else None,
            }
        )
    for i in range(per_kind):
        tenant = rng.choice(tenants)
        domain = f"{rng.choice(['www', 'shop', 'blog', 'docs'])}.{tenant}.example"
        status = rng.choice(STATUS_CODES)
        ds.crawl.append(
            {
                "event_id": f"w-{i:05d}",
                "tenant_id": tenant,
                "ts": when(),
                "campaign_id": rng.choice(["spring", "brand"]),
                "url": f"https://{domain}/path/{rng.randrange(1000)}",
                "domain": domain,
                "status_code": status,
                "fetch_ms": rng.randint(5, 5000),
                "bytes": 0 if status < 200 or status in (204, 304) else rng.randint(0, 2_000_000),
                "content_hash": f"{rng.getrandbits(64):016x}" if status == 200 else None,
            }
        )
    for i in range(per_kind):
        tenant = rng.choice(tenants)
        ds.click.append(
            {
                "event_id": f"c-{i:05d}",
                "tenant_id": tenant,
                "ts": when(),
                "short_code": f"{tenant[0]}{rng.choice(['x7Gq', 'a1', 'b22', 'Zz9', 'q0', 'promo'])}",
                "referrer": rng.choice([None, "https://www.google.com/", "https://t.co/"]),
                "country": rng.choice([None, "us", "us", "de", "fr"]),
                "user_agent": rng.choice([None, "Mozilla/5.0"]),
                "visitor_id": None if rng.random() < 0.15 else f"v-{rng.randrange(40)}",
            }
        )
    _corner_cases(ds)

    for table, events in (("rank_events", ds.rank), ("crawl_events", ds.crawl), ("click_events", ds.click)):
        _plan(rng, ds, table, events)
    return ds


def _corner_cases(ds: Dataset) -> None:
    day = ds.now_us - ds.now_us % (86400 * US)
    yesterday = day - 86400 * US

    def rank(eid: str, ts: int, position: int | None, keyword: str = "tie keyword") -> dict:
        return {
            "event_id": eid, "tenant_id": "acme", "ts": ts, "campaign_id": "edge", "keyword": keyword,
            "geo": "gb", "engine": "bing", "device": "desktop", "url": None, "position": position,
        }

    ds.rank += [
        # Same microsecond: the greater event_id is the last check (position 2).
        rank("edge-tie-a", yesterday + 5 * 3600 * US + 7, 9),
        rank("edge-tie-b", yesterday + 5 * 3600 * US + 7, 2),
        # Same second, the later microsecond wins although its id is smaller.
        rank("edge-sub-b", yesterday + 6 * 3600 * US + 1, 40, "sub second"),
        rank("edge-sub-a", yesterday + 6 * 3600 * US + 2, 30, "sub second"),
        # Ranked the day before, last check yesterday unranked: dropped out.
        rank("edge-drop-1", yesterday - 3600 * US, 4, "dropped"),
        rank("edge-drop-2", yesterday + 3600 * US, 6, "dropped"),
        rank("edge-drop-3", yesterday + 2 * 3600 * US, None, "dropped"),
    ]
    for i, ts in enumerate([day - 1, day, yesterday - 1, yesterday]):
        ds.click.append(
            {
                "event_id": f"edge-click-{i}", "tenant_id": "acme", "ts": ts, "short_code": "edge",
                "referrer": None, "country": None, "user_agent": None, "visitor_id": "v-edge",
            }
        )


def _plan(rng: random.Random, ds: Dataset, table: str, events: list[dict]) -> None:
    order = events[:]
    rng.shuffle(order)
    blocks = [order[i : i + 400] for i in range(0, len(order), 400)]
    for block in blocks:
        # A re-sent event inside the same insert.
        block += [rng.choice(block) for _ in range(len(block) // 30)]
    # Single events re-sent in later inserts.
    for b in range(1, len(blocks)):
        blocks[b] += rng.sample(order[: 400 * b], 10)
    # A whole insert replayed after a "crash".
    blocks.append(blocks[0][:])
    for block in blocks:
        ds.inserts.append((table, block))


def raw_row(table: str, event: dict, offset: int, ingested_at: int) -> dict:
    """The raw-table row of an event (what ClickHouseSink::write sends)."""
    row = {k: v for k, v in event.items() if k != "ts"}
    row["occurred_at"] = event["ts"] // US
    row["occurred_at_micros"] = event["ts"] % US
    row["kafka_topic"] = table.replace("_events", "-events")
    row["kafka_partition"] = 0
    row["kafka_offset"] = offset
    row["ingested_at"] = ingested_at
    return row


def insert_statements(ds: Dataset) -> list[str]:
    offset = 0
    out = []
    for table, events in ds.inserts:
        lines = []
        for event in events:
            lines.append(json.dumps(raw_row(table, event, offset, ds.now_us // US)))
            offset += 1
        out.append(f"INSERT INTO {table} FORMAT JSONEachRow\n" + "\n".join(lines))
    return out
