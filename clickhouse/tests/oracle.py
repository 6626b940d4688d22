"""The expected answer to every analyst query of docs/analytics.md, computed from the events alone (each
event_id once, however often it was delivered) with plain dicts and sorts — no SQL, no ClickHouse
semantics beyond what the document states. Rows come back as tuples of strings in ClickHouse's
TabSeparated rendering (NULL is \\N, dates YYYY-MM-DD, times YYYY-MM-DD hh:mm:ss, UTC)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from dataset import US, Dataset

NULL = "\\N"


def _dedup(events: list[dict]) -> list[dict]:
    seen = {}
    for e in events:
        seen.setdefault(e["event_id"], e)
    return list(seen.values())


def _s(ts_us: int) -> int:
    return ts_us // US


def _minute(s: int) -> int:
    return s - s % 60


def _hour(s: int) -> int:
    return s - s % 3600


def _day(s: int) -> int:
    return s // 86400


def fmt_time(s: int) -> str:
    return dt.datetime.fromtimestamp(s, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def fmt_day(d: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat()


def _opt(v) -> str:
    return NULL if v is None else str(v)


def _quantile_exact(values: list[int], level: float) -> int:
    ordered = sorted(values)
    index = int(level * len(ordered)) if level < 1 else len(ordered) - 1
    return ordered[index]


def _clicks(ds: Dataset, bucket, keep) -> list[tuple]:
    clicks = defaultdict(set)
    visitors = defaultdict(set)
    for e in _dedup(ds.click):
        b = bucket(_s(e["ts"]))
        if not keep(b):
            continue
        key = (e["tenant_id"], e["short_code"], b)
        clicks[key].add(e["event_id"])
        if e["visitor_id"] is not None:
            visitors[key].add(e["visitor_id"])
    return [(k, len(clicks[k]), len(visitors[k])) for k in sorted(clicks)]


def clicks_per_minute(ds: Dataset, now: int) -> list[tuple]:
    lo = _minute(now - 3600)
    rows = _clicks(ds, _minute, lambda m: m >= lo)
    return [(t, s, fmt_time(m), str(c), str(v)) for (t, s, m), c, v in rows]


def clicks_per_hour(ds: Dataset, now: int) -> list[tuple]:
    lo = _hour(now - 86400)
    rows = _clicks(ds, _hour, lambda h: h >= lo)
    return [(t, s, fmt_time(h), str(c), str(v)) for (t, s, h), c, v in rows]


def clicks_per_day(ds: Dataset, now: int) -> list[tuple]:
    lo = _day(now) - 6
    rows = _clicks(ds, _day, lambda d: d >= lo)
    return [(t, s, fmt_day(d), str(c), str(v)) for (t, s, d), c, v in rows]


def top_links_per_day(ds: Dataset, now: int) -> list[tuple]:
    lo = _day(now) - 6
    rows = _clicks(ds, _day, lambda d: d >= lo)
    by_day = defaultdict(list)
    for (t, s, d), c, v in rows:
        by_day[(t, d)].append((-c, s, v))
    out = []
    for (t, d) in sorted(by_day):
        for neg_c, s, v in sorted(by_day[(t, d)])[:10]:
            out.append((t, fmt_day(d), s, str(-neg_c), str(v)))
    return out


def _rank_days(ds: Dataset, keep_day) -> dict:
    """(tenant, campaign, keyword, geo, engine, device, day) -> list of (ts, event_id, position)."""
    checks = defaultdict(list)
    for e in _dedup(ds.rank):
        d = _day(_s(e["ts"]))
        if not keep_day(d):
            continue
        key = (e["tenant_id"], e["campaign_id"], e["keyword"], e["geo"], e["engine"], e["device"], d)
        checks[key].append((e["ts"], e["event_id"], e["position"]))
    return checks


def _last(checks: list) -> int | None:
    return max(checks)[2]


def rank_history(ds: Dataset, now: int) -> list[tuple]:
    lo = _day(now) - 29
    out = []
    checks = _rank_days(ds, lambda d: d >= lo)
    for key in sorted(checks):
        cs = checks[key]
        ranked = [c[2] for c in cs if c[2] is not None]
        best = min(ranked) if ranked else None
        worst = max(ranked) if ranked else None
        out.append(key[:6] + (fmt_day(key[6]), _opt(_last(cs)), _opt(best), _opt(worst), str(len(cs))))
    return out


def _day_pairs(ds: Dataset, now: int) -> dict:
    """entity -> (previous day's last position, yesterday's last position); None = no check that day,
    0 = the last check did not rank."""
    d = _day(now) - 1
    checks = _rank_days(ds, lambda day: day in (d - 1, d))
    pairs = defaultdict(lambda: [None, None])
    for key, cs in checks.items():
        pairs[key[:6]][0 if key[6] == d - 1 else 1] = _last(cs) or 0
    return pairs


def _movers(ds: Dataset, now: int, sign: int) -> list[tuple]:
    rows = []
    for entity, (prev, cur) in _day_pairs(ds, now).items():
        if prev and cur and sign * (prev - cur) > 0:
            rows.append((-sign * (prev - cur), entity, prev, cur))
    rows.sort()
    return [e + (str(p), str(c), str(-neg)) for neg, e, p, c in rows[:20]]


def rank_gainers(ds: Dataset, now: int) -> list[tuple]:
    return _movers(ds, now, 1)


def rank_losers(ds: Dataset, now: int) -> list[tuple]:
    return _movers(ds, now, -1)


def rank_dropped_out(ds: Dataset, now: int) -> list[tuple]:
    rows = [
        (prev, entity)
        for entity, (prev, cur) in _day_pairs(ds, now).items()
        if prev and cur == 0
    ]
    return [e + (str(p),) for p, e in sorted(rows)]


def _crawls_last_day(ds: Dataset, now: int) -> dict:
    lo = _hour(now - 86400)
    groups = defaultdict(list)
    for e in _dedup(ds.crawl):
        h = _hour(_s(e["ts"]))
        if h >= lo:
            groups[(e["tenant_id"], e["domain"], h)].append(e)
    return groups


def crawl_status_mix(ds: Dataset, now: int) -> list[tuple]:
    out = []
    groups = _crawls_last_day(ds, now)
    for key in sorted(groups):
        es = groups[key]
        classes = [sum(1 for e in es if c * 100 <= e["status_code"] < (c + 1) * 100) for c in (1, 2, 3, 4, 5)]
        out.append(
            (key[0], key[1], fmt_time(key[2]), str(len(es)))
            + tuple(str(n) for n in classes)
            + (str(max(e["fetch_ms"] for e in es)),)
        )
    return out


def crawl_latency(ds: Dataset, now: int) -> list[tuple]:
    out = []
    groups = _crawls_last_day(ds, now)
    for key in sorted(groups):
        ms = [e["fetch_ms"] for e in groups[key]]
        out.append(
            (key[0], key[1], fmt_time(key[2]), str(len(ms)))
            + tuple(str(_quantile_exact(ms, q)) for q in (0.5, 0.9, 0.99))
            + (str(max(ms)),)
        )
    return out


def crawl_error_domains(ds: Dataset, now: int) -> list[tuple]:
    per_domain = defaultdict(lambda: [0, 0])
    for (tenant, domain, _), es in _crawls_last_day(ds, now).items():
        per_domain[(tenant, domain)][0] += len(es)
        per_domain[(tenant, domain)][1] += sum(1 for e in es if e["status_code"] >= 400)
    rows = [(-(errors / pages), key, pages, errors) for key, (pages, errors) in per_domain.items() if pages >= 20]
    rows.sort()
    return [key + (str(p), str(e), repr(-neg)) for neg, key, p, e in rows[:20]]


def crawl_volume_per_day(ds: Dataset, now: int) -> list[tuple]:
    lo = _day(now) - 6
    groups = defaultdict(lambda: [0, 0, 0])
    for e in _dedup(ds.crawl):
        d = _day(_s(e["ts"]))
        if d >= lo:
            g = groups[(e["tenant_id"], e["domain"], d)]
            g[0] += 1
            g[1] += e["bytes"]
            g[2] += e["fetch_ms"]
    return [(t, dom, fmt_day(d)) + tuple(str(x) for x in groups[(t, dom, d)]) for t, dom, d in sorted(groups)]


def clicks_by_country(ds: Dataset, now: int) -> list[tuple]:
    d = _day(now) - 1
    clicks = defaultdict(int)
    visitors = defaultdict(set)
    for e in _dedup(ds.click):
        if _day(_s(e["ts"])) != d:
            continue
        key = (e["tenant_id"], e["country"] if e["country"] is not None else "unknown")
        clicks[key] += 1
        if e["visitor_id"] is not None:
            visitors[key].add(e["visitor_id"])
    rows = sorted((t, -n, c) for (t, c), n in clicks.items())
    return [(t, c, str(-neg), str(len(visitors[(t, c)]))) for t, neg, c in rows]


ORACLES = {
    "clicks_per_minute": clicks_per_minute,
    "clicks_per_hour": clicks_per_hour,
    "clicks_per_day": clicks_per_day,
    "top_links_per_day": top_links_per_day,
    "rank_history": rank_history,
    "rank_gainers": rank_gainers,
    "rank_losers": rank_losers,
    "rank_dropped_out": rank_dropped_out,
    "crawl_status_mix": crawl_status_mix,
    "crawl_latency": crawl_latency,
    "crawl_error_domains": crawl_error_domains,
    "crawl_volume_per_day": crawl_volume_per_day,
    "clicks_by_country": clicks_by_country,
}


def same_rows(expected: list[tuple], actual: list[tuple]) -> str | None:
    """None when equal (numbers that are not integers compared to 1e-9 relative); else a description."""
    if len(expected) != len(actual):
        return f"expected {len(expected)} rows, got {len(actual)}: first expected {expected[:3]}, got {actual[:3]}"
    for i, (e, a) in enumerate(zip(expected, actual)):
        if len(e) != len(a) or not all(_same_cell(x, y) for x, y in zip(e, a)):
            return f"row {i}: expected {e}, got {a}"
    return None


def _same_cell(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    try:
        x, y = float(expected), float(actual)
    except ValueError:
        return False
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y))
