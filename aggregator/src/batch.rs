//! One Kafka partition's buffered work between two flushes. Decoded events come in with their offsets;
//! each one updates the partial aggregate of its row and is kept, encoded, as its row of the raw-event
//! tables ([`crate::raw`]). A batch
//! also remembers the offset range it covers — from the stored offset it continues (`expected_offset`,
//! checked by compare-and-swap at commit) to one past the last record it consumed (`end_offset`),
//! rejected records included, so that a poison record is passed over exactly once.
//!
//! A batch never mixes partitions: replaying a partition's offsets rebuilds batches whose union is the
//! same set of events, and the stored-offset check makes sure each range is applied once.
//!
//! After an operator rewound the stored offset (`sluice-ingest replay`), records below the partition's
//! replay fence (`replay_until`) were already applied once: they are kept for the ClickHouse raw tables
//! only (idempotent there) and touch neither the aggregates, the dedup window nor the dead-letter topic.

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use sluice_schemas::{validate::crawl_domain, ClickEvent, CrawlEvent, Event, EventKind, RankEvent};

use crate::dead_letter::DeadLetter;
use crate::dedup::{event_key, DedupWindow, EventKey};
use crate::model::{
    day_of, hour_of, ClickDailyKey, ClickDailyKeyRef, CrawlHourly, CrawlHourlyKey,
    CrawlHourlyKeyRef, RankDaily, RankDailyKey, RankDailyKeyRef,
};
use crate::raw::{self, RawRows};

/// Events and partial aggregates of one partition, with the offset range they cover.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub topic: String,
    pub partition: i32,
    /// The stored offset this batch continues from; `None` when the partition has none yet.
    pub expected_offset: Option<i64>,
    /// One past the last offset consumed into this batch; `None` while nothing was consumed.
    pub end_offset: Option<i64>,
    /// The replay fence: records at offsets below it were applied to PostgreSQL before an operator
    /// rewound the stored offset, so they only go to ClickHouse again. `None`: no replay in progress.
    pub replay_until: Option<i64>,
    pub clicks: HashMap<ClickDailyKey, i64>,
    pub ranks: HashMap<RankDailyKey, RankDaily>,
    pub crawls: HashMap<CrawlHourlyKey, CrawlHourly>,
    /// The accepted events as rows of `rank_events`, `crawl_events` and `click_events`.
    pub rank_events: RawRows,
    pub crawl_events: RawRows,
    pub click_events: RawRows,
    /// Keys this batch added to its partition's dedup window, with their expiry: persisted at commit.
    pub dedup_entries: Vec<(EventKey, i64)>,
    /// The partition's dedup watermark after this batch's last record (None: dedup off or untouched).
    pub watermark_ms: Option<i64>,
    /// Re-deliveries dropped by the dedup window.
    pub duplicates: u64,
    /// Refused records, to publish to the dead-letter topic before the offset moves past them.
    pub dead_letters: Vec<DeadLetter>,
    /// Records consumed (accepted and rejected).
    pub records: u64,
    /// Records read below the replay fence (a subset of `records`).
    pub replayed: u64,
    /// Bytes held (raw rows' chunks and index, aggregate rows, dedup entries, dead letters), for the
    /// memory budget: counted from the types' sizes, the strings' lengths and the chunks' capacities;
    /// `tests/memory.rs` checks it against an allocator's count.
    pub approx_bytes: usize,
}

impl Default for PartitionBatch {
    fn default() -> Self {
        PartitionBatch {
            topic: String::new(),
            partition: 0,
            expected_offset: None,
            end_offset: None,
            replay_until: None,
            clicks: HashMap::new(),
            ranks: HashMap::new(),
            crawls: HashMap::new(),
            rank_events: RawRows::new(EventKind::Rank),
            crawl_events: RawRows::new(EventKind::Crawl),
            click_events: RawRows::new(EventKind::Click),
            dedup_entries: Vec::new(),
            watermark_ms: None,
            duplicates: 0,
            dead_letters: Vec::new(),
            records: 0,
            replayed: 0,
            approx_bytes: 0,
        }
    }
}

/// An accepted event that a raw table's column cannot hold (a gap in validation, which keeps every
/// value in range): the record is refused like an invalid one, never stored clamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfit(pub String);

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unfit {}

/// What the allocator spends on one heap block beyond its bytes, on average (size-class rounding and
/// headers; 16 for mimalloc and glibc malloc with blocks of tens of bytes).
const ALLOC_OVERHEAD_BYTES: usize = 16;

/// Heap bytes of one owned string (decoded strings are allocated at their exact length).
fn heap(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        s.len() + ALLOC_OVERHEAD_BYTES
    }
}

/// Heap bytes of a rank event's event id and six key strings.
fn rank_strings_heap(e: &RankEvent) -> usize {
    [&e.event_id, &e.tenant_id, &e.campaign_id, &e.keyword]
        .into_iter()
        .chain([&e.geo, &e.engine, &e.device])
        .map(|s| heap(s))
        .sum()
}

/// Bytes of one map entry: the slot (key and value), its control byte, at hashbrown's 7/8 load.
fn map_entry<K, V>() -> usize {
    (size_of::<(K, V)>() + 1) * 8 / 7
}

/// What [`PartitionBatch::offer`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// New: merged into the aggregates and kept for ClickHouse.
    Added,
    /// A re-delivery inside the dedup window: only the offset moved.
    Duplicate,
    /// Below the replay fence: kept for ClickHouse only (its aggregates were applied before the rewind).
    Replayed,
}

impl PartitionBatch {
    pub fn new(topic: impl Into<String>, partition: i32, expected_offset: Option<i64>) -> Self {
        PartitionBatch {
            topic: topic.into(),
            partition,
            expected_offset,
            ..Default::default()
        }
    }

    /// True when the batch covers no record at all (nothing to flush, no offset to move).
    pub fn is_empty(&self) -> bool {
        self.end_offset.is_none()
    }

    /// Number of accepted events held.
    pub fn events(&self) -> usize {
        self.rank_events.len() + self.crawl_events.len() + self.click_events.len()
    }

    /// An empty batch that continues where this one ends (for the records that arrive during its flush).
    /// Its vectors and maps start at this batch's sizes: under load one flush's batch is much like the
    /// next, and growing a vector of a million events by doubling reallocates it ~20 times, copying
    /// twice its final size into freshly faulted memory; a map of a million rows rehashes as often.
    pub fn successor(&self) -> PartitionBatch {
        let mut next = PartitionBatch::new(
            self.topic.clone(),
            self.partition,
            self.end_offset.or(self.expected_offset),
        );
        next.watermark_ms = self.watermark_ms;
        next.replay_until = self.replay_until;
        next.rank_events.reserve(self.rank_events.len());
        next.crawl_events.reserve(self.crawl_events.len());
        next.click_events.reserve(self.click_events.len());
        next.dedup_entries.reserve(self.dedup_entries.len());
        next.clicks.reserve(self.clicks.len());
        next.ranks.reserve(self.ranks.len());
        next.crawls.reserve(self.crawls.len());
        next
    }

    /// Sets the replay fence (from the stored offset's `replay_until`).
    pub fn with_replay_until(mut self, replay_until: Option<i64>) -> Self {
        self.replay_until = replay_until;
        self
    }

    /// True when the record at `offset` lies below the replay fence: it was applied before the rewind.
    pub fn replaying(&self, offset: i64) -> bool {
        self.replay_until.is_some_and(|fence| offset < fence)
    }

    /// Counts a record that was rejected: it moves the offset, touches no aggregate, and is kept for the
    /// dead-letter topic when one is configured — unless it lies below the replay fence, in which case it
    /// was dead-lettered the first time it was read.
    pub fn reject(&mut self, offset: i64, dead_letter: Option<DeadLetter>) {
        self.advance(offset);
        if self.replaying(offset) {
            self.replayed += 1;
            return;
        }
        if let Some(letter) = dead_letter {
            self.approx_bytes += letter.approx_bytes();
            self.dead_letters.push(letter);
        }
    }

    /// Offers a valid event read at `offset` with Kafka timestamp `record_ts_ms`. With a dedup window, a
    /// re-delivery of a key still in the window only moves the offset. Below the replay fence the event
    /// is kept for ClickHouse only, and the dedup window is neither consulted nor changed: from the fence
    /// on it decides exactly as it would have without the replay.
    ///
    /// The event's raw row is encoded first: an event a raw table cannot hold ([`Unfit`]) changes
    /// nothing — not the offset, the window or the aggregates — and the caller refuses the record.
    pub fn offer(
        &mut self,
        event: Event,
        offset: i64,
        record_ts_ms: i64,
        dedup: Option<&mut DedupWindow>,
    ) -> Result<Offered, Unfit> {
        // Validation guarantees a crawl's http(s) URL with a host; an empty domain cannot occur.
        let domain = match &event {
            Event::Crawl(e) => crawl_domain(&e.url).unwrap_or_default(),
            _ => String::new(),
        };
        self.rows_mut(event.kind())
            .encode(&event, &domain)
            .map_err(|detail| Unfit(format!("event {:?}: {detail}", event.event_id())))?;
        if self.replaying(offset) {
            self.replayed += 1;
            self.keep(&event, &domain, offset, false);
            return Ok(Offered::Replayed);
        }
        if let Some(window) = dedup {
            let key = event_key(event.tenant_id(), event.event_id());
            let verdict = window.observe(key, record_ts_ms);
            self.watermark_ms = Some(window.watermark_ms());
            match verdict {
                Some(expiry) => {
                    self.approx_bytes += size_of::<(EventKey, i64)>();
                    self.dedup_entries.push((key, expiry));
                }
                None => {
                    self.advance(offset);
                    self.duplicates += 1;
                    return Ok(Offered::Duplicate);
                }
            }
        }
        self.keep(&event, &domain, offset, true);
        Ok(Offered::Added)
    }

    /// Adds one accepted event read at `offset`: aggregates and raw row (no dedup window).
    pub fn add(&mut self, event: Event, offset: i64) -> Result<(), Unfit> {
        self.offer(event, offset, 0, None).map(|_| ())
    }

    fn rows_mut(&mut self, kind: EventKind) -> &mut RawRows {
        match kind {
            EventKind::Rank => &mut self.rank_events,
            EventKind::Crawl => &mut self.crawl_events,
            EventKind::Click => &mut self.click_events,
        }
    }

    /// Keeps the raw row just encoded for `event` and, with `aggregate`, merges the event into the
    /// partial aggregates.
    fn keep(&mut self, event: &Event, domain: &str, offset: i64, aggregate: bool) {
        self.advance(offset);
        self.approx_bytes += self.rows_mut(event.kind()).keep(offset);
        if aggregate {
            match event {
                Event::Click(e) => self.aggregate_click(e),
                Event::Rank(e) => self.aggregate_rank(e),
                Event::Crawl(e) => self.aggregate_crawl(e, domain),
            }
        }
    }

    /// Merges a click into its row, cloning the key's strings only when the row is new.
    fn aggregate_click(&mut self, e: &ClickEvent) {
        let key = ClickDailyKeyRef {
            tenant_id: &e.tenant_id,
            short_code: &e.short_code,
            day: day_of(e.occurred_at),
        };
        match self.clicks.entry_ref(&key) {
            EntryRef::Occupied(mut row) => {
                let clicks = row.get_mut();
                *clicks = crate::model::add(*clicks, 1, "click_daily.clicks");
            }
            EntryRef::Vacant(row) => {
                self.approx_bytes +=
                    map_entry::<ClickDailyKey, i64>() + heap(&e.tenant_id) + heap(&e.short_code);
                row.insert(1);
            }
        }
    }

    fn aggregate_rank(&mut self, e: &RankEvent) {
        let key = RankDailyKeyRef {
            tenant_id: &e.tenant_id,
            campaign_id: &e.campaign_id,
            keyword: &e.keyword,
            geo: &e.geo,
            engine: &e.engine,
            device: &e.device,
            day: day_of(e.occurred_at),
        };
        // Validation bounds positions to 1..=100, so the narrowing cannot fail; were it to, ingest stops
        // rather than store the check as unranked.
        let position = e.position.map(|p| {
            i16::try_from(p)
                .unwrap_or_else(|_| panic!("position {p} of {} is not a smallint", e.event_id))
        });
        match self.ranks.entry_ref(&key) {
            EntryRef::Occupied(mut row) => row.get_mut().add(position, e.occurred_at, &e.event_id),
            EntryRef::Vacant(row) => {
                // The row owns copies of the key's six strings and of the event id (`last_event_id`).
                self.approx_bytes += map_entry::<RankDailyKey, RankDaily>() + rank_strings_heap(e);
                row.insert(RankDaily::single(position, e.occurred_at, &e.event_id));
            }
        }
    }

    fn aggregate_crawl(&mut self, e: &CrawlEvent, domain: &str) {
        let key = CrawlHourlyKeyRef {
            tenant_id: &e.tenant_id,
            campaign_id: &e.campaign_id,
            domain,
            hour: hour_of(e.occurred_at),
        };
        match self.crawls.entry_ref(&key) {
            EntryRef::Occupied(mut row) => row.get_mut().add(e.status_code, e.fetch_ms, e.bytes),
            EntryRef::Vacant(row) => {
                self.approx_bytes += map_entry::<CrawlHourlyKey, CrawlHourly>()
                    + heap(&e.tenant_id)
                    + heap(&e.campaign_id)
                    + heap(domain);
                row.insert(CrawlHourly::default())
                    .add(e.status_code, e.fetch_ms, e.bytes);
            }
        }
    }

    /// Offsets of the events merged into the aggregates (not those below the replay fence), ascending:
    /// the candidates when PostgreSQL refuses the batch's aggregates.
    pub fn aggregated_offsets(&self) -> Vec<i64> {
        let mut offsets = self.event_offsets();
        offsets.retain(|o| !self.replaying(*o));
        offsets
    }

    /// Offsets of every raw event (ClickHouse rows), ascending.
    pub fn event_offsets(&self) -> Vec<i64> {
        let mut offsets: Vec<i64> = self
            .raw_tables()
            .into_iter()
            .flat_map(|rows| rows.iter().map(|(o, _)| o))
            .collect();
        offsets.sort_unstable();
        offsets
    }

    /// The raw rows of one table: the events of `kind`.
    pub fn rows_of(&self, kind: EventKind) -> &RawRows {
        match kind {
            EventKind::Rank => &self.rank_events,
            EventKind::Crawl => &self.crawl_events,
            EventKind::Click => &self.click_events,
        }
    }

    /// The three raw tables' rows: rank, crawl, click.
    pub fn raw_tables(&self) -> [&RawRows; 3] {
        EventKind::ALL.map(|kind| self.rows_of(kind))
    }

    /// The batch with only the events whose offset `keep` accepts: raw rows filtered, aggregates
    /// recomputed from the kept events (those below the replay fence stay raw rows only, as they came).
    /// Offset range, dedup entries, watermark, dead letters and counters are this batch's: an event
    /// left out is still consumed (its offset moves), and the caller dead-letters it.
    pub fn retain_events(&self, keep: impl Fn(i64) -> bool) -> PartitionBatch {
        let mut out = PartitionBatch {
            topic: self.topic.clone(),
            partition: self.partition,
            expected_offset: self.expected_offset,
            replay_until: self.replay_until,
            ..Default::default()
        };
        // In offset order across the three tables, as they were read.
        let mut kept: Vec<(i64, EventKind, &[u8])> = self
            .raw_tables()
            .into_iter()
            .flat_map(|rows| rows.iter().map(|(o, row)| (o, rows.kind(), row)))
            .filter(|(o, _, _)| keep(*o))
            .collect();
        kept.sort_unstable_by_key(|(o, _, _)| *o);
        for (offset, kind, row) in kept {
            let (event, _) = raw::decode(kind, row).expect("a row this batch encoded");
            // The row was encoded once already, so it fits again; below the fence it stays a raw row
            // only, as it came.
            out.offer(event, offset, 0, None)
                .expect("a row this batch encoded fits again");
        }
        out.end_offset = self.end_offset;
        out.dedup_entries = self.dedup_entries.clone();
        out.watermark_ms = self.watermark_ms;
        out.duplicates = self.duplicates;
        out.dead_letters = self.dead_letters.clone();
        out.records = self.records;
        out.replayed = self.replayed;
        out.approx_bytes = self.approx_bytes;
        out
    }

    /// The event read at `offset`, if this batch holds it.
    pub fn event_at(&self, offset: i64) -> Option<Event> {
        self.raw_tables().into_iter().find_map(|rows| {
            let row = rows.get(offset)?;
            Some(
                raw::decode(rows.kind(), row)
                    .expect("a row this batch encoded")
                    .0,
            )
        })
    }

    fn advance(&mut self, offset: i64) {
        debug_assert!(
            self.end_offset.is_none_or(|end| offset >= end),
            "offsets go forward within a partition"
        );
        self.end_offset = Some(offset + 1);
        self.records += 1;
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use sluice_schemas::{ClickEvent, Event};

    use super::*;

    fn click(id: &str, code: &str) -> Event {
        let at: DateTime<Utc> = "2026-03-04T05:06:07Z".parse().unwrap();
        Event::Click(ClickEvent::new(id, "t", at, code))
    }

    fn letter(offset: i64) -> DeadLetter {
        DeadLetter {
            offset,
            key: None,
            value: b"{".to_vec(),
            headers: Vec::new(),
            timestamp_ms: None,
            reason: "invalid_encoding",
            detail: "eof".into(),
        }
    }

    #[test]
    fn below_the_fence_only_raw_rows_are_kept() {
        // Fence at 13: offsets 10..=12 were applied before the rewind, 13 and 14 are new.
        let mut window = DedupWindow::new(1_000, 500);
        let mut batch = PartitionBatch::new("c", 0, Some(10)).with_replay_until(Some(13));
        // The same key twice below the fence: only raw rows (the window is not consulted).
        for (offset, ts) in [(10, 600), (11, 700)] {
            let offered = batch
                .offer(click("a", "x"), offset, ts, Some(&mut window))
                .unwrap();
            assert_eq!(offered, Offered::Replayed, "offset {offset}");
        }
        batch.reject(12, Some(letter(12)));
        assert_eq!(window.len(), 0, "the window is untouched below the fence");
        assert_eq!(window.watermark_ms(), 500);
        assert_eq!(batch.watermark_ms, None);
        assert!(batch.clicks.is_empty() && batch.dedup_entries.is_empty());
        assert!(
            batch.dead_letters.is_empty(),
            "dead-lettered the first time"
        );
        assert_eq!(batch.click_events.len(), 2);
        assert_eq!((batch.records, batch.replayed), (3, 3));

        // From the fence on, everything as usual.
        for (offset, ts, expected) in [(13, 800, Offered::Added), (14, 900, Offered::Duplicate)] {
            let offered = batch
                .offer(click("a", "x"), offset, ts, Some(&mut window))
                .unwrap();
            assert_eq!(offered, expected, "offset {offset}");
        }
        batch.reject(15, Some(letter(15)));
        assert_eq!(batch.clicks.values().sum::<i64>(), 1);
        assert_eq!(batch.dedup_entries.len(), 1);
        assert_eq!(batch.dead_letters.len(), 1);
        assert_eq!(batch.click_events.len(), 3);
        assert_eq!(batch.watermark_ms, Some(900));
        assert_eq!((batch.records, batch.replayed, batch.duplicates), (6, 3, 1));
        assert_eq!(batch.end_offset, Some(16));

        let next = batch.successor();
        assert_eq!(next.replay_until, Some(13));
        assert_eq!(next.expected_offset, Some(16));
    }

    #[test]
    fn retaining_events_recomputes_the_aggregates() {
        // Fence at 11: offset 10 is a raw row only; 11..=14 aggregate.
        let mut batch = PartitionBatch::new("c", 0, Some(10)).with_replay_until(Some(11));
        batch.offer(click("a", "x"), 10, 1, None).unwrap();
        for (offset, code) in [(11, "x"), (12, "poison"), (13, "x"), (14, "y")] {
            batch
                .offer(click(&format!("e{offset}"), code), offset, 1, None)
                .unwrap();
        }
        batch.reject(15, Some(letter(15)));
        assert_eq!(batch.aggregated_offsets(), vec![11, 12, 13, 14]);
        assert_eq!(batch.event_offsets(), vec![10, 11, 12, 13, 14]);

        let kept = batch.retain_events(|o| o != 12);
        let clicks: std::collections::BTreeMap<&str, i64> = kept
            .clicks
            .iter()
            .map(|(k, v)| (k.short_code.as_str(), *v))
            .collect();
        assert_eq!(clicks, [("x", 2), ("y", 1)].into_iter().collect());
        assert_eq!(kept.event_offsets(), vec![10, 11, 13, 14]);
        assert_eq!(kept.aggregated_offsets(), vec![11, 13, 14]);
        assert_eq!(
            (kept.expected_offset, kept.end_offset),
            (Some(10), Some(16))
        );
        assert_eq!(kept.dead_letters.len(), 1);
        assert_eq!(kept.records, 6);
        match batch.event_at(12) {
            Some(Event::Click(e)) => assert_eq!(e.short_code, "poison"),
            other => panic!("{other:?}"),
        }
        assert_eq!(batch.event_at(15), None);
    }

    #[test]
    fn without_a_fence_nothing_is_replayed() {
        let mut batch = PartitionBatch::new("c", 0, Some(0));
        assert!(!batch.replaying(0));
        assert_eq!(batch.offer(click("a", "x"), 0, 1, None), Ok(Offered::Added));
        batch.reject(1, Some(letter(1)));
        assert_eq!((batch.replayed, batch.dead_letters.len()), (0, 1));
    }

    #[test]
    fn an_event_a_raw_table_cannot_hold_changes_nothing() {
        let mut window = DedupWindow::new(1_000, 0);
        let mut batch = PartitionBatch::new("c", 0, Some(0));
        // Before 1970: ClickHouse's DateTime cannot hold it (validation refuses it first in ingest).
        let early: DateTime<Utc> = "1969-12-31T23:59:59Z".parse().unwrap();
        let unfit = Event::Click(ClickEvent::new("a", "t", early, "x"));
        let err = batch.offer(unfit, 0, 5, Some(&mut window)).unwrap_err();
        assert!(err.0.contains("\"a\": occurred_at (DateTime)=-1"), "{err}");
        assert_eq!((batch.records, batch.end_offset), (0, None));
        assert_eq!((window.len(), batch.dedup_entries.len()), (0, 0));
        assert!(batch.clicks.is_empty() && batch.click_events.is_empty());
        assert_eq!(batch.approx_bytes, 0);
        // The same key, valid, is new: the window never saw the refused one.
        let offered = batch.offer(click("a", "x"), 0, 6, Some(&mut window));
        assert_eq!(offered, Ok(Offered::Added));
        assert_eq!(batch.event_at(0), Some(click("a", "x")));
    }
}
