#!/usr/bin/env python3
"""Writes the seed corpus of the `pipeline` fuzz target (corpus/pipeline/, committed).

Each seed is a sequence of records `[control][length u16 LE][payload]` (fuzz_targets/pipeline.rs):
control & 3 = kind (0 rank, 1 crawl, 2 click), bit 2 = bincode, bits 3-7 = seconds added to the record
timestamp. The fuzz target's fixed now is 2026-07-01T00:30:00Z. Bincode is written by hand here (varint
integers, zigzag for signed, varint length before strings, 0/1 before options), as sluice-schemas'
`codec::BINCODE` configuration encodes it; the round-trip assertion of the target checks each accepted
seed against the Rust encoder.

Run from anywhere: python3 aggregator/fuzz/make_seeds.py (rewrites the seed_* files, keeps the others:
crash regressions and what fuzzing added).
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "pipeline")
RANK, CRAWL, CLICK = 0, 1, 2
BINCODE = 4

CLICK_DOC = {"schema_version": 1, "event_id": "k-1", "tenant_id": "initech",
             "occurred_at": "2026-06-15T11:00:00Z", "short_code": "x7Gq",
             "referrer": "https://news.example/", "country": "de", "user_agent": None,
             "visitor_id": "v-42"}
RANK_DOC = {"schema_version": 1, "event_id": "r-1", "tenant_id": "acme",
            "occurred_at": "2026-06-14T23:59:59Z", "campaign_id": "camp-7",
            "keyword": "trail shoes", "geo": "us", "engine": "google", "device": "mobile",
            "url": "https://shop.example/trail", "position": 3}
CRAWL_DOC = {"schema_version": 1, "event_id": "c-1", "tenant_id": "globex",
             "occurred_at": "2026-06-15T10:59:59.999999Z", "campaign_id": "audit",
             "url": "https://WWW.Example.COM/a?b=c", "status_code": 200, "fetch_ms": 120,
             "bytes": 5120, "content_hash": "sha256:00ff"}
DOCS = {RANK: RANK_DOC, CRAWL: CRAWL_DOC, CLICK: CLICK_DOC}


def record(control, payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    return bytes([control]) + struct.pack("<H", len(payload)) + payload


def doc(kind, **changes):
    d = dict(DOCS[kind])
    for k, v in changes.items():
        if v is DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return json.dumps(d, ensure_ascii=False)


DROP = object()


# --- bincode (standard config: little endian, varint) ---
def uvar(n):
    if n < 251:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfb" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfc" + struct.pack("<I", n)
    if n <= 0xFFFFFFFFFFFFFFFF:
        return b"\xfd" + struct.pack("<Q", n)
    return b"\xfe" + n.to_bytes(16, "little")


def ivar(n):
    return uvar((n << 1) if n >= 0 else ((-n) << 1) - 1)


def s(text):
    b = text.encode("utf-8")
    return uvar(len(b)) + b


def opt(v, enc):
    return b"\x00" if v is None else b"\x01" + enc(v)


def micros(rfc3339):
    from datetime import datetime
    t = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def bincode(kind, d):
    out = uvar(d["schema_version"]) + s(d["event_id"]) + s(d["tenant_id"]) + ivar(micros(d["occurred_at"]))
    if kind == RANK:
        out += s(d["campaign_id"]) + s(d["keyword"]) + s(d["geo"]) + s(d["engine"]) + s(d["device"])
        out += opt(d["url"], s) + opt(d["position"], ivar)
    elif kind == CRAWL:
        out += s(d["campaign_id"]) + s(d["url"]) + ivar(d["status_code"]) + ivar(d["fetch_ms"])
        out += ivar(d["bytes"]) + opt(d["content_hash"], s)
    else:
        out += s(d["short_code"])
        for f in ("referrer", "country", "user_agent", "visitor_id"):
            out += opt(d[f], s)
    return out


def bdoc(kind, **changes):
    d = dict(DOCS[kind])
    d.update(changes)
    return bincode(kind, d)


def nested(depth):
    return "[" * depth + "]" * depth


SEEDS = {
    # The documented examples, each kind, both encodings.
    "rank_json": record(RANK, doc(RANK)),
    "crawl_json": record(CRAWL, doc(CRAWL)),
    "click_json": record(CLICK, doc(CLICK)),
    "rank_bincode": record(RANK | BINCODE, bdoc(RANK)),
    "crawl_bincode": record(CRAWL | BINCODE, bdoc(CRAWL)),
    "click_bincode": record(CLICK | BINCODE, bdoc(CLICK)),
    # Several records: a re-delivery 3 s later, two crawls in one hour, an unranked check.
    "mixed_batch": record(CLICK, doc(CLICK)) + record(RANK | 8, doc(RANK, position=None))
    + record(CRAWL, doc(CRAWL)) + record(CRAWL | 16, doc(CRAWL, event_id="c-2", status_code=503))
    + record(CLICK | 24, doc(CLICK)) + record(CLICK | BINCODE, bdoc(CLICK, event_id="k-2")),
    # Text: NUL (D1), other control characters, lone and paired surrogate escapes, multi-byte, limits.
    "nul_escaped": record(CLICK, doc(CLICK, referrer="a\u0000b")),
    "nul_in_key": record(RANK, doc(RANK, keyword="shoes\u0000")),
    "nul_bincode": record(CRAWL | BINCODE, bdoc(CRAWL, content_hash="\u0000")),
    "controls_escaped": record(RANK, doc(RANK, keyword="\u0001\u001f\u007f\t\n\r\u2028")),
    "control_raw": record(CLICK, doc(CLICK).replace("news", "ne\x01ws")),
    "lone_surrogate": record(CLICK, doc(CLICK).replace("x7Gq", "\\ud800")),
    "lone_low_surrogate": record(CLICK, doc(CLICK).replace("x7Gq", "\\udc00x")),
    "paired_surrogates": record(CLICK, doc(CLICK).replace("x7Gq", "\\ud83d\\ude00")),
    "multibyte_max_len": record(RANK, doc(RANK, event_id="é" * 64, keyword="键" * 682, geo="ü" * 32)),
    "over_max_len": record(RANK, doc(RANK, event_id="a" * 129)),
    "empty_strings": record(RANK, doc(RANK, event_id="")) + record(CLICK, doc(CLICK, referrer="")),
    "invalid_utf8": record(CLICK, doc(CLICK).encode().replace(b"x7Gq", b"x\xff\xfeq")),
    # Numbers: floats, strings, signs, u32 edges, beyond 64 bits, i64 extremes (overflow when summed).
    "float_bytes": record(CRAWL, doc(CRAWL, bytes=1.0)),
    "exp_fetch_ms": record(CRAWL, doc(CRAWL).replace('"fetch_ms": 120', '"fetch_ms": 1e2')),
    "string_status": record(CRAWL, doc(CRAWL, status_code="200")),
    "negative_zero": record(CRAWL, doc(CRAWL).replace('"bytes": 5120', '"bytes": -0')),
    "u32_edges": record(CRAWL, doc(CRAWL, fetch_ms=4294967295, bytes=4294967295, status_code=599))
    + record(CRAWL, doc(CRAWL, event_id="c-3", fetch_ms=0, bytes=0, status_code=100)),
    "beyond_u32": record(CRAWL, doc(CRAWL, fetch_ms=4294967296)),
    "i64_max_bytes": record(CRAWL, doc(CRAWL, bytes=9223372036854775807)),
    "i64_max_bytes_bincode": record(CRAWL | BINCODE, bdoc(CRAWL, bytes=9223372036854775807)),
    "beyond_64_bits": record(CRAWL, doc(CRAWL).replace("5120", "99999999999999999999999")),
    "negative_bytes": record(CRAWL, doc(CRAWL, bytes=-1)),
    "position_edges": record(RANK, doc(RANK, position=1)) + record(RANK, doc(RANK, event_id="r-2", position=100))
    + record(RANK, doc(RANK, event_id="r-3", position=0)) + record(RANK, doc(RANK, event_id="r-4", position=101))
    + record(RANK, doc(RANK, event_id="r-5", position=-2147483648)),
    "schema_version_2": record(CLICK, doc(CLICK, schema_version=2)),
    "schema_version_float": record(CLICK, doc(CLICK, schema_version=1.0)),
    # Shapes: arrays (D3), scalars, duplicate keys, deep nesting, unknown fields, missing keys, empty.
    "array_rank": record(RANK, json.dumps(list(RANK_DOC.values()))),
    "array_click": record(CLICK, json.dumps(list(CLICK_DOC.values()))),
    "scalar": record(CLICK, "42") + record(CLICK, "null") + record(CLICK, '"x"'),
    "duplicate_keys": record(CLICK, doc(CLICK)[:-1] + ', "event_id": "k-9"}'),
    "deep_nesting_ok": record(CLICK, doc(CLICK, extra=json.loads(nested(100)))),
    "deep_nesting_200": record(CLICK, doc(CLICK)[:-1] + ', "extra": ' + nested(200) + "}"),
    "unknown_fields": record(CRAWL, doc(CRAWL, extra={"a": [1, 2.5, None]}, schema_version=1)),
    "missing_position": record(RANK, doc(RANK, position=DROP)),
    "missing_url": record(CRAWL, doc(CRAWL, url=DROP)),
    "tombstone": record(CLICK, b""),
    "whitespace_object": record(CLICK, " \n\t" + doc(CLICK) + " \r\n"),
    "trailing_bytes_bincode": record(CLICK | BINCODE, bdoc(CLICK) + b"\x00"),
    # URLs: hosts that need normalizing, IPs, non-http schemes.
    "url_hosts": record(CRAWL, doc(CRAWL, url="http://[::1]:8080/x"))
    + record(CRAWL, doc(CRAWL, event_id="c-4", url="https://xn--bcher-kva.EXAMPLE/"))
    + record(CRAWL, doc(CRAWL, event_id="c-5", url="https://Bücher.example/%00"))
    + record(CRAWL, doc(CRAWL, event_id="c-6", url="ftp://example.com/"))
    + record(CRAWL, doc(CRAWL, event_id="c-7", url="https://a%00b.example/")),
    # Time: leap seconds, offsets, precision, the window's edges (now = 2026-07-01T00:30:00Z).
    "leap_seconds": record(CLICK, doc(CLICK, occurred_at="2025-12-31T23:59:60Z"))
    + record(CLICK, doc(CLICK, event_id="k-2", occurred_at="2026-06-30T23:59:60.999999Z"))
    + record(CRAWL, doc(CRAWL, occurred_at="2026-06-30T23:59:60.5+00:00")),
    "offsets": record(CLICK, doc(CLICK, occurred_at="2026-06-15T23:30:00-23:59"))
    + record(CLICK, doc(CLICK, event_id="k-2", occurred_at="2026-06-16T13:59:59.1234567+14:00"))
    + record(CLICK, doc(CLICK, event_id="k-3", occurred_at="2026-06-15t11:00:00z"))
    + record(CLICK, doc(CLICK, event_id="k-4", occurred_at="2026-06-15T11:00:00-00:00")),
    "window_edges": record(CLICK, doc(CLICK, occurred_at="2026-07-01T01:30:00Z"))
    + record(CLICK, doc(CLICK, event_id="k-2", occurred_at="2026-07-01T01:30:00.000001Z"))
    + record(CLICK, doc(CLICK, event_id="k-3", occurred_at="2025-06-30T00:30:00Z"))
    + record(CLICK, doc(CLICK, event_id="k-4", occurred_at="2025-06-30T00:29:59.999999Z")),
    "not_rfc3339": record(CLICK, doc(CLICK, occurred_at="2026-06-15 11:00"))
    + record(CLICK, doc(CLICK, occurred_at=1781521200)),
    "bincode_extreme_time": record(CLICK | BINCODE, uvar(1) + s("k") + s("t") + ivar(-(2**63)) + s("x") + b"\x00" * 4),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name.startswith("seed_"):
            os.remove(os.path.join(OUT, name))
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, "seed_" + name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
