//! The raw rows a batch keeps for ClickHouse's raw-event tables, encoded once, as each event is accepted.
//! An event becomes the bytes the table's `INSERT … FORMAT RowBinary` sends for it — its columns from
//! `event_id` up to, not including, the four that every row ends with (`kafka_topic`,
//! `kafka_partition`, `kafka_offset`, `ingested_at`; `clickhouse/migrations/0001_raw_events.sql`), which
//! the sink appends at flush. Rows are written back to back into chunks (4 KiB doubling to 256 KiB),
//! with an index of (offset, place) beside them.
//!
//! Why not keep the decoded events: a flush reads every row again, in the table's sort order, and a
//! decoded event is a struct with up to nine separately allocated strings. Under a backlog a batch holds
//! millions of them, so the flush's walk became a random walk over gigabytes of small blocks (cache and
//! TLB misses in the sort and the serializer), and bigger batches cost ingest as much CPU as they saved
//! PostgreSQL. Here a row is one contiguous run of bytes in a chunk filled in arrival order: the flush
//! reads the sort keys in one sequential pass and copies each row with one `memcpy`.
//!
//! What the rest of the batch needs from a row is read back from the bytes: its place in the table's
//! sorting key ([`sort_key`]) and, when a flush isolates a refused event, the event itself ([`decode`]).
//! Encoding converts each value to its column's type with a checked conversion: a value that does not
//! fit is an error naming the column, never a clamped or wrapped value.

use chrono::{DateTime, Utc};
use sluice_schemas::{ClickEvent, CrawlEvent, Event, EventKind, RankEvent, SCHEMA_VERSION};

/// Bytes of a table's first chunk in a batch; each next chunk doubles, up to [`CHUNK_BYTES`]. A batch
/// of a few events (a quiet partition, a small memory budget) then holds a few KiB, not 3 × 256 KiB.
const FIRST_CHUNK_BYTES: usize = 4 * 1024;

/// Bytes of a full-grown chunk. Rows never straddle chunks; a row longer than the next chunk gets a
/// chunk of its own size. The last chunk of each table of each batch is partly empty: at most this much
/// per table and batch.
const CHUNK_BYTES: usize = 256 * 1024;

/// The raw-table columns a stored row holds, in order: each table's columns up to `kafka_topic`.
pub fn leading_columns(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::Rank => &[
            "event_id",
            "tenant_id",
            "occurred_at",
            "occurred_at_micros",
            "campaign_id",
            "keyword",
            "geo",
            "engine",
            "device",
            "url",
            "position",
        ],
        EventKind::Crawl => &[
            "event_id",
            "tenant_id",
            "occurred_at",
            "occurred_at_micros",
            "campaign_id",
            "url",
            "domain",
            "status_code",
            "fetch_ms",
            "bytes",
            "content_hash",
        ],
        EventKind::Click => &[
            "event_id",
            "tenant_id",
            "occurred_at",
            "occurred_at_micros",
            "short_code",
            "referrer",
            "country",
            "user_agent",
            "visitor_id",
        ],
    }
}

/// The columns every raw table ends with, appended by the sink at flush.
pub const TRAILING_COLUMNS: [&str; 4] = [
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "ingested_at",
];

/// Where one row lives: its Kafka offset, its chunk and its span in the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    offset: i64,
    chunk: u32,
    start: u32,
    len: u32,
}

/// One table's rows of one batch, in arrival order.
#[derive(Debug, Clone)]
pub struct RawRows {
    kind: EventKind,
    chunks: Vec<Vec<u8>>,
    places: Vec<Place>,
    /// Where the next event is encoded before it is kept (so that a refused or duplicate one leaves
    /// nothing behind).
    scratch: Vec<u8>,
}

impl RawRows {
    pub fn new(kind: EventKind) -> Self {
        RawRows {
            kind,
            chunks: Vec::new(),
            places: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Room for `rows` more index entries (the chunks grow one at a time and need none).
    pub(crate) fn reserve(&mut self, rows: usize) {
        self.places.reserve(rows);
    }

    /// Encodes `event` (of this table's kind; `domain` for a crawl) into the scratch buffer, replacing
    /// what it held: [`keep`](Self::keep) then stores it. An error names the column that cannot hold
    /// its value.
    pub(crate) fn encode(&mut self, event: &Event, domain: &str) -> Result<(), String> {
        debug_assert_eq!(event.kind(), self.kind);
        self.scratch.clear();
        encode(event, domain, &mut self.scratch)
    }

    /// Stores the row last encoded, read at `offset`. Returns the bytes this newly took from the
    /// allocator: an index entry, plus a whole chunk when the row opened one.
    pub(crate) fn keep(&mut self, offset: i64) -> usize {
        let len = self.scratch.len();
        let mut taken = size_of::<Place>();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            let next = self
                .chunks
                .last()
                .map_or(FIRST_CHUNK_BYTES, |c| (2 * c.capacity()).min(CHUNK_BYTES));
            let capacity = len.max(next);
            self.chunks.push(Vec::with_capacity(capacity));
            taken += capacity + size_of::<Vec<u8>>();
        }
        let chunk = self.chunks.len() - 1;
        let bytes = &mut self.chunks[chunk];
        let start = bytes.len();
        bytes.extend_from_slice(&self.scratch);
        self.places.push(Place {
            offset,
            chunk: u32::try_from(chunk).expect("fewer than 2^32 chunks"),
            start: u32::try_from(start).expect("a chunk is smaller than 4 GiB"),
            len: u32::try_from(len).expect("a row is smaller than 4 GiB"),
        });
        taken
    }

    /// The rows, in arrival order: (Kafka offset, the row's bytes).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (i64, &[u8])> + '_ {
        self.places.iter().map(|p| (p.offset, self.bytes(p)))
    }

    /// The row read at `offset`, if this table holds one.
    pub fn get(&self, offset: i64) -> Option<&[u8]> {
        self.places
            .binary_search_by_key(&offset, |p| p.offset)
            .ok()
            .map(|i| self.bytes(&self.places[i]))
    }

    fn bytes(&self, p: &Place) -> &[u8] {
        let start = p.start as usize;
        &self.chunks[p.chunk as usize][start..start + p.len as usize]
    }
}

/// An event's place in its raw table's sorting key (`ORDER BY` in
/// `clickhouse/migrations/0001_raw_events.sql`), in the parts the server compares: the leading string
/// columns (`prefix`, unused places empty), `occurred_at` in whole seconds, then `event_id`. Bytes
/// compare as the server compares strings (and as Rust compares `str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey<'a> {
    pub prefix: [&'a [u8]; 3],
    pub secs: u32,
    pub event_id: &'a [u8],
}

/// The sort key of a stored row of `kind`: rank (tenant_id, campaign_id, keyword), crawl (tenant_id,
/// campaign_id, domain), click (tenant_id, short_code), then occurred_at and event_id.
pub fn sort_key(kind: EventKind, row: &[u8]) -> SortKey<'_> {
    let mut r = Reader(row);
    let event_id = r.str();
    let tenant = r.str();
    let secs = r.u32();
    r.u32();
    let prefix = match kind {
        EventKind::Rank => [tenant, r.str(), r.str()],
        EventKind::Crawl => {
            let campaign = r.str();
            r.str();
            [tenant, campaign, r.str()]
        }
        EventKind::Click => [tenant, r.str(), b""],
    };
    SortKey {
        prefix,
        secs,
        event_id,
    }
}

/// Appends the row of `event` to `out` (`domain`: a crawl's, derived at ingest; ignored otherwise).
pub(crate) fn encode(event: &Event, domain: &str, out: &mut Vec<u8>) -> Result<(), String> {
    match event {
        Event::Rank(e) => {
            head(&e.event_id, &e.tenant_id, e.occurred_at, out)?;
            for s in [&e.campaign_id, &e.keyword, &e.geo, &e.engine, &e.device] {
                put_str(s, out);
            }
            put_opt_str(e.url.as_deref(), out);
            match e.position {
                None => out.push(1),
                Some(p) => {
                    out.push(0);
                    out.push(fits(p, "position (UInt8)")?);
                }
            }
        }
        Event::Crawl(e) => {
            head(&e.event_id, &e.tenant_id, e.occurred_at, out)?;
            put_str(&e.campaign_id, out);
            put_str(&e.url, out);
            put_str(domain, out);
            out.extend_from_slice(
                &fits::<u16, _>(e.status_code, "status_code (UInt16)")?.to_le_bytes(),
            );
            out.extend_from_slice(&fits::<u32, _>(e.fetch_ms, "fetch_ms (UInt32)")?.to_le_bytes());
            out.extend_from_slice(&fits::<u64, _>(e.bytes, "bytes (UInt64)")?.to_le_bytes());
            put_opt_str(e.content_hash.as_deref(), out);
        }
        Event::Click(e) => {
            head(&e.event_id, &e.tenant_id, e.occurred_at, out)?;
            put_str(&e.short_code, out);
            for s in [&e.referrer, &e.country, &e.user_agent, &e.visitor_id] {
                put_opt_str(s.as_deref(), out);
            }
        }
    }
    Ok(())
}

/// Appends the four columns every raw table ends with: `kafka_topic`, `kafka_partition`,
/// `kafka_offset`, `ingested_at`.
pub fn encode_trailer(
    topic: &str,
    partition: u16,
    offset: u64,
    ingested_at: u32,
    out: &mut Vec<u8>,
) {
    put_str(topic, out);
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&ingested_at.to_le_bytes());
}

/// The event a stored row of `kind` was encoded from, and for a crawl its domain. Every row this
/// module wrote decodes; anything else is an error saying where it stopped.
pub fn decode(kind: EventKind, row: &[u8]) -> Result<(Event, String), String> {
    let mut r = Reader(row);
    let event_id = r.string()?;
    let tenant_id = r.string()?;
    let secs = r.u32();
    let micros = r.u32();
    let occurred_at =
        DateTime::<Utc>::from_timestamp_micros(i64::from(secs) * 1_000_000 + i64::from(micros))
            .ok_or("occurred_at out of range")?;
    let schema_version = SCHEMA_VERSION;
    let (event, domain) = match kind {
        EventKind::Rank => {
            let event = RankEvent {
                schema_version,
                event_id,
                tenant_id,
                occurred_at,
                campaign_id: r.string()?,
                keyword: r.string()?,
                geo: r.string()?,
                engine: r.string()?,
                device: r.string()?,
                url: r.opt_string()?,
                position: r.null()?.then(|| r.u8()).map(i32::from),
            };
            (Event::Rank(event), String::new())
        }
        EventKind::Crawl => {
            let campaign_id = r.string()?;
            let url = r.string()?;
            let domain = r.string()?;
            let event = CrawlEvent {
                schema_version,
                event_id,
                tenant_id,
                occurred_at,
                campaign_id,
                url,
                status_code: i32::from(r.u16()),
                fetch_ms: i64::from(r.u32()),
                bytes: i64::try_from(r.u64()).map_err(|_| "bytes beyond i64")?,
                content_hash: r.opt_string()?,
            };
            (Event::Crawl(event), domain)
        }
        EventKind::Click => {
            let event = ClickEvent {
                schema_version,
                event_id,
                tenant_id,
                occurred_at,
                short_code: r.string()?,
                referrer: r.opt_string()?,
                country: r.opt_string()?,
                user_agent: r.opt_string()?,
                visitor_id: r.opt_string()?,
            };
            (Event::Click(event), String::new())
        }
    };
    if r.0.is_empty() {
        Ok((event, domain))
    } else {
        Err(format!("{} bytes left after the row", r.0.len()))
    }
}

/// `event_id`, `tenant_id`, `occurred_at` (whole seconds, `DateTime` is a `UInt32`: 1970-01-01 to
/// 2106-02-07) and `occurred_at_micros`.
fn head(
    event_id: &str,
    tenant_id: &str,
    at: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    put_str(event_id, out);
    put_str(tenant_id, out);
    let micros = at.timestamp_micros();
    let secs: u32 = fits(micros.div_euclid(1_000_000), "occurred_at (DateTime)")?;
    out.extend_from_slice(&secs.to_le_bytes());
    let sub = micros.rem_euclid(1_000_000) as u32;
    out.extend_from_slice(&sub.to_le_bytes());
    Ok(())
}

/// A validated value converted to its column's type. Validation keeps every value in range
/// (docs/events.md, `schemas/src/validate.rs`), so this never fails; if it did, the event is refused
/// with the column named rather than stored clamped or wrapped.
fn fits<T: TryFrom<S>, S: Copy + std::fmt::Display>(value: S, column: &str) -> Result<T, String> {
    T::try_from(value).map_err(|_| format!("{column}={value} does not fit its ClickHouse column"))
}

/// A `String` column: LEB128 length, then the bytes.
fn put_str(s: &str, out: &mut Vec<u8>) {
    let mut n = s.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(s.as_bytes());
}

/// A `Nullable(String)` column: 1 for NULL, else 0 and the string.
fn put_opt_str(s: Option<&str>, out: &mut Vec<u8>) {
    match s {
        None => out.push(1),
        Some(s) => {
            out.push(0);
            put_str(s, out);
        }
    }
}

/// Reads the columns of a row this module encoded. The fixed-width reads are only ever applied to
/// rows written by [`encode`]; running past the end is a bug and panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn str(&mut self) -> &'a [u8] {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let b = self.take(1)[0];
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        self.take(n)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.str().to_vec()).map_err(|e| format!("a string column: {e}"))
    }

    /// Reads a `Nullable`'s flag: true when a value follows.
    fn null(&mut self) -> Result<bool, String> {
        match self.take(1)[0] {
            0 => Ok(true),
            1 => Ok(false),
            other => Err(format!("nullable flag {other}")),
        }
    }

    fn opt_string(&mut self) -> Result<Option<String>, String> {
        if self.null()? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().expect("2 bytes"))
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_click_row_is_the_row_binary_of_its_columns() {
        let mut e = ClickEvent::new("e1", "t", at("2026-01-02T03:04:05.123456Z"), "abc");
        e.country = Some("DE".into());
        let mut out = Vec::new();
        encode(&Event::Click(e.clone()), "", &mut out).unwrap();
        // Written out by hand from ClickHouse's RowBinary format: LEB128 length + bytes for a String,
        // little-endian UInt32s, a Nullable as 1 (NULL) or 0 followed by the value.
        let secs = 1_767_323_045u32.to_le_bytes();
        let micros = 123_456u32.to_le_bytes();
        let mut expected = vec![2, b'e', b'1', 1, b't'];
        expected.extend_from_slice(&secs);
        expected.extend_from_slice(&micros);
        expected.extend_from_slice(&[3, b'a', b'b', b'c', 1, 0, 2, b'D', b'E', 1, 1]);
        assert_eq!(out, expected);
        assert_eq!(decode(EventKind::Click, &out).unwrap().0, Event::Click(e));
        let key = sort_key(EventKind::Click, &out);
        assert_eq!(
            key,
            SortKey {
                prefix: [b"t", b"abc", b""],
                secs: 1_767_323_045,
                event_id: b"e1",
            }
        );
    }

    #[test]
    fn rank_and_crawl_rows_round_trip_with_long_strings() {
        // A 200-byte keyword takes a two-byte length (200 = 0xC8 0x01 in LEB128).
        let keyword = "k".repeat(200);
        let rank = RankEvent {
            schema_version: SCHEMA_VERSION,
            event_id: "r1".into(),
            tenant_id: "t".into(),
            occurred_at: at("1970-01-01T00:00:00Z"),
            campaign_id: "c".into(),
            keyword: keyword.clone(),
            geo: "de".into(),
            engine: "g".into(),
            device: "m".into(),
            url: None,
            position: Some(100),
        };
        let mut out = Vec::new();
        encode(&Event::Rank(rank.clone()), "", &mut out).unwrap();
        assert_eq!(&out[3 + 2 + 8 + 2..][..3], &[0xC8, 0x01, b'k']);
        assert_eq!(out[out.len() - 3..], [1, 0, 100]);
        assert_eq!(decode(EventKind::Rank, &out).unwrap().0, Event::Rank(rank));
        let key = sort_key(EventKind::Rank, &out);
        assert_eq!(key.prefix, [&b"t"[..], b"c", keyword.as_bytes()]);
        assert_eq!((key.secs, key.event_id), (0, &b"r1"[..]));

        let crawl = CrawlEvent {
            schema_version: SCHEMA_VERSION,
            event_id: "c1".into(),
            tenant_id: "t".into(),
            occurred_at: at("2106-02-07T06:28:15.999999Z"),
            campaign_id: "c".into(),
            url: "https://Example.com/x".into(),
            status_code: 599,
            fetch_ms: 4_294_967_295,
            bytes: 4_294_967_295,
            content_hash: Some("h".into()),
        };
        let mut out = Vec::new();
        encode(&Event::Crawl(crawl.clone()), "example.com", &mut out).unwrap();
        let (event, domain) = decode(EventKind::Crawl, &out).unwrap();
        assert_eq!(
            (event, domain.as_str()),
            (Event::Crawl(crawl), "example.com")
        );
        let key = sort_key(EventKind::Crawl, &out);
        assert_eq!(key.prefix, [&b"t"[..], b"c", b"example.com"]);
        assert_eq!(key.secs, u32::MAX);
    }

    #[test]
    fn values_that_do_not_fit_are_errors_naming_the_column() {
        let mut e = ClickEvent::new("e", "t", at("1969-12-31T23:59:59.5Z"), "x");
        let err = encode(&Event::Click(e.clone()), "", &mut Vec::new()).unwrap_err();
        assert!(err.contains("occurred_at (DateTime)=-1"), "{err}");
        e.occurred_at = DateTime::from_timestamp(i64::from(u32::MAX) + 1, 0).unwrap();
        assert!(encode(&Event::Click(e), "", &mut Vec::new()).is_err());
        let crawl = |status_code, fetch_ms, bytes| {
            Event::Crawl(CrawlEvent {
                schema_version: SCHEMA_VERSION,
                event_id: "c".into(),
                tenant_id: "t".into(),
                occurred_at: at("2026-01-01T00:00:00Z"),
                campaign_id: "c".into(),
                url: "http://a".into(),
                status_code,
                fetch_ms,
                bytes,
                content_hash: None,
            })
        };
        let err = |e: Event| encode(&e, "a", &mut Vec::new()).unwrap_err();
        assert!(err(crawl(65_536, 0, 0)).contains("status_code (UInt16)=65536"));
        assert!(err(crawl(200, 4_294_967_296, 0)).contains("fetch_ms (UInt32)=4294967296"));
        assert!(err(crawl(200, 0, -1)).contains("bytes (UInt64)=-1"));
    }

    #[test]
    fn rows_are_kept_in_chunks_and_found_by_offset() {
        let mut rows = RawRows::new(EventKind::Click);
        let t = at("2026-01-01T00:00:00Z");
        let click = |id: &str, n: usize| {
            let mut e = ClickEvent::new(id, "t", t, "x");
            e.user_agent = Some("u".repeat(n));
            Event::Click(e)
        };
        let entry = size_of::<Place>();
        let chunk = size_of::<Vec<u8>>();
        // A small row opens a 4 KiB chunk; the next one fits beside it.
        let mut taken = Vec::new();
        for (offset, n) in [(5, 1_000), (6, 1_000)] {
            rows.encode(&click(&format!("e{offset}"), n), "").unwrap();
            taken.push(rows.keep(offset));
        }
        assert_eq!(taken, [entry + FIRST_CHUNK_BYTES + chunk, entry]);
        // Rows of ~100 KiB (lengths from `encode`): the next chunk would be 8 KiB, so e9 gets one of its
        // own size; the next doubles that (e10, and e11 beside it if it fits), then 256 KiB at most; a
        // 300 KB row gets its own again.
        taken.clear();
        let events: Vec<(i64, Event)> = [(9, 100_000), (10, 100_000), (11, 100_000), (12, 300_000)]
            .into_iter()
            .map(|(o, n)| (o, click(&format!("e{o}"), n)))
            .collect();
        let len = |e: &Event| {
            let mut out = Vec::new();
            encode(e, "", &mut out).unwrap();
            out.len()
        };
        let (l9, l10, l11, l12) = (
            len(&events[0].1),
            len(&events[1].1),
            len(&events[2].1),
            len(&events[3].1),
        );
        for (offset, e) in &events {
            rows.encode(e, "").unwrap();
            taken.push(rows.keep(*offset));
        }
        let second = 2 * l9;
        let (third, e11) = if second - l10 >= l11 {
            (None, entry)
        } else {
            (Some(CHUNK_BYTES), entry + CHUNK_BYTES + chunk)
        };
        assert_eq!(
            taken,
            vec![
                entry + l9 + chunk,
                entry + second + chunk,
                e11,
                entry + l12 + chunk
            ]
        );
        let capacities: Vec<usize> = rows.chunks.iter().map(Vec::capacity).collect();
        let mut want = vec![FIRST_CHUNK_BYTES, l9, second];
        want.extend(third);
        want.push(l12);
        assert_eq!(capacities, want);
        assert_eq!(rows.len(), 6);
        let ids: Vec<String> = rows
            .iter()
            .map(|(o, row)| match decode(EventKind::Click, row).unwrap().0 {
                Event::Click(e) => format!("{o}:{}", e.event_id),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["5:e5", "6:e6", "9:e9", "10:e10", "11:e11", "12:e12"]);
        assert!(rows.get(7).is_none());
        let row = rows.get(9).unwrap();
        assert_eq!(sort_key(EventKind::Click, row).event_id, b"e9");
    }

    /// docs/events.md ("Bounds of the stored columns") relies on this: each buffered crawl event counts
    /// at least its index entry and its row's bytes against the buffer budget — 64 bytes at the shortest
    /// valid strings — so 2^31 of them would take over 2^31 × 64 bytes (137 GB), and no batch's i64 sum
    /// of u32 values can overflow.
    #[test]
    fn overflow_bound_a_buffered_crawl_event_takes_at_least_64_bytes() {
        let shortest = Event::Crawl(CrawlEvent {
            schema_version: SCHEMA_VERSION,
            event_id: "e".into(),
            tenant_id: "t".into(),
            occurred_at: at("2026-01-01T00:00:00Z"),
            campaign_id: "c".into(),
            url: "http://a".into(),
            status_code: 200,
            fetch_ms: 0,
            bytes: 0,
            content_hash: None,
        });
        let mut rows = RawRows::new(EventKind::Crawl);
        rows.encode(&shortest, "a").unwrap();
        let counted = size_of::<Place>() + rows.scratch.len();
        println!("a shortest crawl event counts {counted} bytes");
        assert!(counted >= 64, "{counted}");
    }
}
