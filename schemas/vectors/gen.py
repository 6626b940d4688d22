#!/usr/bin/env python3
"""Writes events.json, the shared producer test vectors (README.md beside this file).

The events below are written by hand. Their expected partitions come from Kafka's Java client
(KafkaPartition.java, run against the kafka-clients jar), and the expected aggregates from the rules of
docs/events.md ("Aggregates"), computed here with plain Python -- nothing of Sluice's own code is used.

    python3 schemas/vectors/gen.py --kafka-libs '/path/to/kafka/libs/*' > schemas/vectors/events.json
"""

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

PARTITIONS = 6
D1, D2 = "2000-01-01", "2000-01-02"  # the vector days (README.md: the harness shifts them to recent days)


def rank(n, tenant, campaign, keyword, geo, engine, device, at, position, url=None):
    return ("rank", f"rank-{n:02}", {
        "schema_version": 1, "event_id": f"v17-rank-{n:02}", "tenant_id": tenant, "occurred_at": at,
        "campaign_id": campaign, "keyword": keyword, "geo": geo, "engine": engine, "device": device,
        "url": url, "position": position})


def crawl(n, tenant, campaign, url, status, fetch_ms, size, at, content_hash=None):
    return ("crawl", f"crawl-{n:02}", {
        "schema_version": 1, "event_id": f"v17-crawl-{n:02}", "tenant_id": tenant, "occurred_at": at,
        "campaign_id": campaign, "url": url, "status_code": status, "fetch_ms": fetch_ms, "bytes": size,
        "content_hash": content_hash})


def click(n, tenant, short_code, at, referrer=None, country=None, user_agent=None, visitor_id=None):
    return ("click", f"click-{n:02}", {
        "schema_version": 1, "event_id": f"v17-click-{n:02}", "tenant_id": tenant, "occurred_at": at,
        "short_code": short_code, "referrer": referrer, "country": country, "user_agent": user_agent,
        "visitor_id": visitor_id})


# Every occurred_at is UTC, "Z", exactly six fractional digits, the last one non-zero (so every
# producer's canonical form -- six digits -- is also what the Rust producer writes).
VALID = [
    # One rank_daily row, three checks: the latest (15:30) is last; the unranked check counts only.
    rank(1, "acme", "spring-sale", "running shoes", "us", "google", "desktop", f"{D1}T09:00:00.100001Z", 7,
         "https://acme.example/shoes"),
    rank(2, "acme", "spring-sale", "running shoes", "us", "google", "desktop", f"{D1}T15:30:00.200003Z", 4,
         "https://acme.example/shoes?ref=2"),
    rank(3, "acme", "spring-sale", "running shoes", "us", "google", "desktop", f"{D1}T12:00:00.000005Z", None),
    # Two checks at the same instant: the greater event_id (rank-06) is last.
    rank(4, "globex", "launch", "globex widgets", "de", "bing", "mobile", f"{D2}T08:00:00.000001Z", 1),
    rank(6, "globex", "launch", "globex widgets", "de", "bing", "mobile", f"{D2}T08:00:00.000001Z", 3),
    # Multi-byte text, last microsecond of the day, did not rank.
    rank(5, "initech", "tps", "café crème ☕", "fr", "google", "tablet", f"{D2}T23:59:59.999999Z", None),
    # crawl_hourly: two pages in one hour (host lowercased), one in the next hour at the field maxima.
    crawl(1, "acme", "autumn", "https://Shop.ACME.example/a?x=1", 200, 120, 5000, f"{D1}T10:05:00.000007Z",
          "sha256:0f1e"),
    crawl(2, "acme", "autumn", "https://shop.acme.example/b", 301, 30, 0, f"{D1}T10:59:59.999999Z"),
    crawl(3, "acme", "autumn", "http://shop.acme.example/c", 404, 4294967295, 4294967295,
          f"{D1}T11:00:00.000001Z"),
    # A port is not part of the domain; a 1xx status counts as a page only.
    crawl(4, "hooli", "crawl-2", "https://hooli.example:8443/x", 503, 900, 12, f"{D2}T06:10:00.500001Z"),
    crawl(5, "hooli", "crawl-2", "https://hooli.example/y", 102, 0, 0, f"{D2}T06:20:00.000009Z"),
    # click_daily: two clicks on one link on day 1, one on day 2; a key with multi-byte UTF-8.
    click(1, "acme", "x7Gq", f"{D1}T07:00:00.123457Z", "https://news.example/", "de", None, "v-42"),
    click(2, "acme", "x7Gq", f"{D1}T18:00:00.000011Z", None, "us", "Mozilla/5.0", "v-43"),
    click(3, "acme", "x7Gq", f"{D2}T00:00:00.000001Z"),
    click(4, "initech", "café", f"{D2}T13:14:15.161719Z"),
    click(5, "globex", "brand-link", f"{D2}T09:30:00.000003Z", "https://globex.example/ü", "jp",
          "Mozilla/5.0 (日本語)", "v-\u00e9"),
]


def base(kind):
    """A valid event of `kind` to break one field of (invalid vectors)."""
    return json.loads(json.dumps(next(e for k, _, e in VALID if k == kind)))


def broken(kind, name, field, **changes):
    event = base(kind)
    event["event_id"] = f"v17-bad-{name}"
    for key, value in changes.items():
        if value is DROP:
            del event[key]
        else:
            event[key] = value
    return {"name": name, "kind": kind, "event": event, "field": field}


DROP = object()

# Only faults the JSON Schema files can see too (docs/events.md lists what they cannot: byte lengths of
# multi-byte text, 1.0 for an integer, duplicate keys, the time window).
INVALID = [
    broken("rank", "rank-missing-position", "position", position=DROP),
    broken("rank", "rank-position-zero", "position", position=0),
    broken("rank", "rank-position-101", "position", position=101),
    broken("rank", "rank-empty-geo", "geo", geo=""),
    broken("rank", "rank-schema-version-2", "schema_version", schema_version=2),
    broken("crawl", "crawl-status-600", "status_code", status_code=600),
    broken("crawl", "crawl-bytes-2pow32", "bytes", bytes=4294967296),
    broken("crawl", "crawl-negative-fetch-ms", "fetch_ms", fetch_ms=-1),
    broken("crawl", "crawl-ftp-url", "url", url="ftp://files.example/a"),
    broken("click", "click-nul-in-short-code", "short_code", short_code="x7\u0000Gq"),
    broken("click", "click-space-in-time", "occurred_at", occurred_at=f"{D1} 10:00:00.000001Z"),
    broken("click", "click-no-offset", "occurred_at", occurred_at=f"{D1}T10:00:00.000001"),
    broken("click", "click-missing-tenant", "tenant_id", tenant_id=DROP),
    broken("click", "click-tenant-129-bytes", "tenant_id", tenant_id="t" * 129),
    broken("click", "click-country-number", "country", country=49),
]


def key(kind, event):
    entity = event["short_code"] if kind == "click" else event["campaign_id"]
    return f"{event['tenant_id']}/{entity}"


def kafka_partitions(libs, keys):
    here = Path(__file__).resolve().parent
    out = subprocess.run(["java", "-cp", libs, str(here / "KafkaPartition.java"), str(PARTITIONS), *keys],
                         check=True, capture_output=True, text=True).stdout
    result = {}
    for line in out.splitlines():
        partition, k = line.split("\t", 1)
        result[k] = int(partition)
    assert set(result) == set(keys), "java printed other keys than asked"
    return result


def expected(valid):
    """docs/events.md "Aggregates", by hand: day/hour are UTC buckets of occurred_at (all vector times
    are UTC already, so the bucket is a prefix of the string)."""
    rank_rows, crawl_rows, click_rows = {}, {}, defaultdict(int)
    for kind, _, e in valid:
        day = e["occurred_at"][:10]
        if kind == "rank":
            k = (e["tenant_id"], e["campaign_id"], e["keyword"], e["geo"], e["engine"], e["device"], day)
            rank_rows.setdefault(k, []).append(e)
        elif kind == "crawl":
            host = urlsplit(e["url"]).hostname  # lowercased, without port
            hour = e["occurred_at"][:13] + ":00:00Z"
            crawl_rows.setdefault((e["tenant_id"], e["campaign_id"], host, hour), []).append(e)
        else:
            click_rows[(e["tenant_id"], e["short_code"], day)] += 1
    rank_daily = []
    for (t, c, kw, g, en, dv, day), checks in sorted(rank_rows.items()):
        # Same-format UTC strings sort like instants; ties broken by the greater event_id.
        last = max(checks, key=lambda e: (e["occurred_at"], e["event_id"]))
        ranked = [e["position"] for e in checks if e["position"] is not None]
        rank_daily.append({
            "tenant_id": t, "campaign_id": c, "keyword": kw, "geo": g, "engine": en, "device": dv, "day": day,
            "last_position": last["position"], "last_occurred_at": last["occurred_at"],
            "last_event_id": last["event_id"], "best_position": min(ranked) if ranked else None,
            "worst_position": max(ranked) if ranked else None, "checks": len(checks)})
    crawl_hourly = []
    for (t, c, domain, hour), pages in sorted(crawl_rows.items()):
        row = {"tenant_id": t, "campaign_id": c, "domain": domain, "hour": hour, "pages": len(pages)}
        for cls in (2, 3, 4, 5):
            row[f"status_{cls}xx"] = sum(1 for e in pages if e["status_code"] // 100 == cls)
        row["fetch_ms_sum"] = sum(e["fetch_ms"] for e in pages)
        row["fetch_ms_max"] = max(e["fetch_ms"] for e in pages)
        row["bytes_sum"] = sum(e["bytes"] for e in pages)
        crawl_hourly.append(row)
    click_daily = [{"tenant_id": t, "short_code": s, "day": d, "clicks": n}
                   for (t, s, d), n in sorted(click_rows.items())]
    count = lambda kind: sum(1 for k, _, _ in valid if k == kind)  # noqa: E731
    return {
        "postgres": {"rank_daily": rank_daily, "crawl_hourly": crawl_hourly, "click_daily": click_daily},
        "clickhouse": {"rank_events": count("rank"), "crawl_events": count("crawl"),
                       "click_events": count("click")},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka-libs", required=True,
                        help="Java class path holding kafka-clients and slf4j-api, e.g. '.state/kafka/libs/*'")
    args = parser.parse_args()
    partitions = kafka_partitions(args.kafka_libs, sorted({key(k, e) for k, _, e in VALID}))
    doc = {
        "partitions": PARTITIONS,
        "valid": [{"name": n, "kind": k, "key": key(k, e), "partition": partitions[key(k, e)], "event": e}
                  for k, n, e in VALID],
        "invalid": INVALID,
        "expected": expected(VALID),
    }
    json.dump(doc, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
