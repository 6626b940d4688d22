//! One Kafka partition's buffered work between two flushes. Decoded events come in with their offsets;
//! each one updates the partial aggregate of its row and is kept whole for the raw-event tables. A batch
//! also remembers the offset range it covers — from the stored offset it continues (`expected_offset`,
//! checked by compare-and-swap at commit) to one past the last record it consumed (`end_offset`),
//! rejected records included, so that a poison record is passed over exactly once.
//!
//! A batch never mixes partitions: replaying a partition's offsets rebuilds batches whose union is the
//! same set of events, and the stored-offset check makes sure each range is applied once.

use std::collections::HashMap;

use sluice_schemas::{validate::crawl_domain, ClickEvent, CrawlEvent, Event, RankEvent};

use crate::dedup::{event_key, DedupWindow, EventKey};
use crate::model::{
    day_of, hour_of, ClickDailyKey, CrawlHourly, CrawlHourlyKey, RankDaily, RankDailyKey,
};
use crate::sinks::dead_letter::DeadLetter;

/// A crawl event with the domain derived once at ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlRecord {
    pub offset: i64,
    pub event: CrawlEvent,
    pub domain: String,
}

/// Events and partial aggregates of one partition, with the offset range they cover.
#[derive(Debug, Clone, Default)]
pub struct PartitionBatch {
    pub topic: String,
    pub partition: i32,
    /// The stored offset this batch continues from; `None` when the partition has none yet.
    pub expected_offset: Option<i64>,
    /// One past the last offset consumed into this batch; `None` while nothing was consumed.
    pub end_offset: Option<i64>,
    pub clicks: HashMap<ClickDailyKey, i64>,
    pub ranks: HashMap<RankDailyKey, RankDaily>,
    pub crawls: HashMap<CrawlHourlyKey, CrawlHourly>,
    pub rank_events: Vec<(i64, RankEvent)>,
    pub crawl_events: Vec<CrawlRecord>,
    pub click_events: Vec<(i64, ClickEvent)>,
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
    /// Rough heap bytes held, for the memory budget.
    pub approx_bytes: usize,
}

/// Fixed per-record overhead (struct, map entry, vector slot) added to the string bytes.
const RECORD_OVERHEAD_BYTES: usize = 256;

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
    pub fn successor(&self) -> PartitionBatch {
        let mut next = PartitionBatch::new(
            self.topic.clone(),
            self.partition,
            self.end_offset.or(self.expected_offset),
        );
        next.watermark_ms = self.watermark_ms;
        next
    }

    /// Counts a record that was rejected: it moves the offset, touches no aggregate, and is kept for the
    /// dead-letter topic when one is configured.
    pub fn reject(&mut self, offset: i64, dead_letter: Option<DeadLetter>) {
        self.advance(offset);
        if let Some(letter) = dead_letter {
            self.approx_bytes += letter.approx_bytes();
            self.dead_letters.push(letter);
        }
    }

    /// Offers a valid event read at `offset` with Kafka timestamp `record_ts_ms`. With a dedup window, a
    /// re-delivery of a key still in the window only moves the offset. Returns whether it was added.
    pub fn offer(
        &mut self,
        event: Event,
        offset: i64,
        record_ts_ms: i64,
        dedup: Option<&mut DedupWindow>,
    ) -> bool {
        if let Some(window) = dedup {
            let key = event_key(event.tenant_id(), event.event_id());
            let verdict = window.observe(key, record_ts_ms);
            self.watermark_ms = Some(window.watermark_ms());
            match verdict {
                Some(expiry) => self.dedup_entries.push((key, expiry)),
                None => {
                    self.advance(offset);
                    self.duplicates += 1;
                    return false;
                }
            }
        }
        self.add(event, offset);
        true
    }

    /// Adds one accepted event read at `offset`.
    pub fn add(&mut self, event: Event, offset: i64) {
        self.advance(offset);
        self.approx_bytes += RECORD_OVERHEAD_BYTES;
        match event {
            Event::Click(e) => {
                self.approx_bytes +=
                    e.event_id.len() + 2 * (e.tenant_id.len() + e.short_code.len());
                self.approx_bytes += [&e.referrer, &e.country, &e.user_agent, &e.visitor_id]
                    .iter()
                    .map(|s| s.as_ref().map_or(0, String::len))
                    .sum::<usize>();
                let key = ClickDailyKey {
                    tenant_id: e.tenant_id.clone(),
                    short_code: e.short_code.clone(),
                    day: day_of(e.occurred_at),
                };
                *self.clicks.entry(key).or_insert(0) += 1;
                self.click_events.push((offset, e));
            }
            Event::Rank(e) => {
                self.approx_bytes += e.event_id.len()
                    + 2 * (e.tenant_id.len() + e.campaign_id.len() + e.keyword.len())
                    + 2 * (e.geo.len() + e.engine.len() + e.device.len())
                    + e.url.as_ref().map_or(0, String::len);
                let key = RankDailyKey {
                    tenant_id: e.tenant_id.clone(),
                    campaign_id: e.campaign_id.clone(),
                    keyword: e.keyword.clone(),
                    geo: e.geo.clone(),
                    engine: e.engine.clone(),
                    device: e.device.clone(),
                    day: day_of(e.occurred_at),
                };
                // Validation bounds positions to 1..=100, so the narrowing cannot fail.
                let position = e.position.and_then(|p| i16::try_from(p).ok());
                self.ranks
                    .entry(key)
                    .and_modify(|row| row.add(position, e.occurred_at, &e.event_id))
                    .or_insert_with(|| RankDaily::single(position, e.occurred_at, &e.event_id));
                self.rank_events.push((offset, e));
            }
            Event::Crawl(e) => {
                // Validation guarantees an http(s) URL with a host; an empty domain cannot occur.
                let domain = crawl_domain(&e.url).unwrap_or_default();
                self.approx_bytes += e.event_id.len()
                    + 2 * (e.tenant_id.len() + e.campaign_id.len() + domain.len())
                    + e.url.len()
                    + e.content_hash.as_ref().map_or(0, String::len);
                let key = CrawlHourlyKey {
                    tenant_id: e.tenant_id.clone(),
                    campaign_id: e.campaign_id.clone(),
                    domain: domain.clone(),
                    hour: hour_of(e.occurred_at),
                };
                self.crawls
                    .entry(key)
                    .or_default()
                    .add(e.status_code, e.fetch_ms, e.bytes);
                self.crawl_events.push(CrawlRecord {
                    offset,
                    event: e,
                    domain,
                });
            }
        }
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
