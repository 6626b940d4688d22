//! The raw tables' row types and the encoders from a batch's events to them (borrowing the events'
//! strings). A value that does not fit its column is an error naming the column, never clamped.

use clickhouse::Row;
use serde::Serialize;
use sluice_aggregator::batch::{CrawlRecord, PartitionBatch};
use sluice_schemas::{ClickEvent, RankEvent};

use super::SINK;
use crate::error::{ErrorClass, Result, SinkError};

/// One row of `rank_events` (`clickhouse/migrations/0001_raw_events.sql`), borrowing the event's strings.
#[derive(Debug, Row, Serialize)]
pub struct RankRow<'a> {
    event_id: &'a str,
    tenant_id: &'a str,
    occurred_at: u32,
    occurred_at_micros: u32,
    campaign_id: &'a str,
    keyword: &'a str,
    geo: &'a str,
    engine: &'a str,
    device: &'a str,
    url: Option<&'a str>,
    position: Option<u8>,
    kafka_topic: &'a str,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// One row of `crawl_events` (`clickhouse/migrations/0001_raw_events.sql`), borrowing the event's strings.
#[derive(Debug, Row, Serialize)]
pub struct CrawlRow<'a> {
    event_id: &'a str,
    tenant_id: &'a str,
    occurred_at: u32,
    occurred_at_micros: u32,
    campaign_id: &'a str,
    url: &'a str,
    domain: &'a str,
    status_code: u16,
    fetch_ms: u32,
    bytes: u64,
    content_hash: Option<&'a str>,
    kafka_topic: &'a str,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// One row of `click_events` (`clickhouse/migrations/0001_raw_events.sql`), borrowing the event's strings.
#[derive(Debug, Row, Serialize)]
pub struct ClickRow<'a> {
    event_id: &'a str,
    tenant_id: &'a str,
    occurred_at: u32,
    occurred_at_micros: u32,
    short_code: &'a str,
    referrer: Option<&'a str>,
    country: Option<&'a str>,
    user_agent: Option<&'a str>,
    visitor_id: Option<&'a str>,
    kafka_topic: &'a str,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// Seconds and sub-second microseconds of an event time, as the raw tables store them (`DateTime` is a
/// `UInt32` of seconds: 1970-01-01 to 2106-02-07). Validation refuses event times outside that range.
pub(super) fn split_time(ts: chrono::DateTime<chrono::Utc>, event_id: &str) -> Result<(u32, u32)> {
    let micros = ts.timestamp_micros();
    let secs = fits(
        micros.div_euclid(1_000_000),
        "occurred_at (DateTime)",
        event_id,
    )?;
    let sub = fits(micros.rem_euclid(1_000_000), "occurred_at_micros", event_id)?;
    Ok((secs, sub))
}

/// A validated value converted to its column's type. Validation keeps every value in range
/// (docs/events.md, schemas/src/validate.rs), so this never fails; if it did, the row is refused with
/// the column named rather than clamped or wrapped into another value.
pub(super) fn fits<T, S>(value: S, column: &str, event_id: &str) -> Result<T>
where
    T: TryFrom<S>,
    S: Copy + std::fmt::Display,
{
    // A data error: the flush isolates the event and dead-letters it (`sink_refused`).
    T::try_from(value).map_err(|_| {
        SinkError::new(
            SINK,
            ErrorClass::Data,
            None,
            format!(
                "event {event_id:?}: {column}={value} does not fit its ClickHouse column (a validation gap)"
            ),
        )
    })
}

/// The rows one batch writes to the three raw tables, exactly as [`ClickHouseSink::write_all`](super::ClickHouseSink::write_all) hands
/// them to the `clickhouse` crate's RowBinary serializer, or the first value that does not fit its
/// column. Public for the fuzz target (`aggregator/fuzz`), which checks every value against the
/// columns' types.
pub fn raw_rows(batch: &PartitionBatch, ingested_at: u32) -> Result<RawRows<'_>> {
    Ok(RawRows {
        rank: rank_events(batch)
            .iter()
            .map(|e| rank_row(batch, e, ingested_at))
            .collect::<Result<_>>()?,
        crawl: crawl_events(batch)
            .iter()
            .map(|e| crawl_row(batch, e, ingested_at))
            .collect::<Result<_>>()?,
        click: click_events(batch)
            .iter()
            .map(|e| click_row(batch, e, ingested_at))
            .collect::<Result<_>>()?,
    })
}

/// A batch's rows for `rank_events`, `crawl_events` and `click_events` (see [`raw_rows`]).
#[derive(Debug)]
pub struct RawRows<'a> {
    pub rank: Vec<RankRow<'a>>,
    pub crawl: Vec<CrawlRow<'a>>,
    pub click: Vec<ClickRow<'a>>,
}

pub(super) fn rank_events(batch: &PartitionBatch) -> &[(i64, RankEvent)] {
    &batch.rank_events
}

pub(super) fn crawl_events(batch: &PartitionBatch) -> &[CrawlRecord] {
    &batch.crawl_events
}

pub(super) fn click_events(batch: &PartitionBatch) -> &[(i64, ClickEvent)] {
    &batch.click_events
}

pub(super) fn rank_row<'a>(
    batch: &'a PartitionBatch,
    (offset, e): &'a (i64, RankEvent),
    ingested_at: u32,
) -> Result<RankRow<'a>> {
    let (secs, micros) = split_time(e.occurred_at, &e.event_id)?;
    Ok(RankRow {
        event_id: &e.event_id,
        tenant_id: &e.tenant_id,
        occurred_at: secs,
        occurred_at_micros: micros,
        campaign_id: &e.campaign_id,
        keyword: &e.keyword,
        geo: &e.geo,
        engine: &e.engine,
        device: &e.device,
        url: e.url.as_deref(),
        position: e
            .position
            .map(|p| fits(p, "position (UInt8)", &e.event_id))
            .transpose()?,
        kafka_topic: &batch.topic,
        kafka_partition: kafka_partition(batch)?,
        kafka_offset: fits(*offset, "kafka_offset (UInt64)", &e.event_id)?,
        ingested_at,
    })
}

pub(super) fn crawl_row<'a>(
    batch: &'a PartitionBatch,
    r: &'a CrawlRecord,
    ingested_at: u32,
) -> Result<CrawlRow<'a>> {
    let e = &r.event;
    let (secs, micros) = split_time(e.occurred_at, &e.event_id)?;
    Ok(CrawlRow {
        event_id: &e.event_id,
        tenant_id: &e.tenant_id,
        occurred_at: secs,
        occurred_at_micros: micros,
        campaign_id: &e.campaign_id,
        url: &e.url,
        domain: &r.domain,
        status_code: fits(e.status_code, "status_code (UInt16)", &e.event_id)?,
        fetch_ms: fits(e.fetch_ms, "fetch_ms (UInt32)", &e.event_id)?,
        bytes: fits(e.bytes, "bytes (UInt64)", &e.event_id)?,
        content_hash: e.content_hash.as_deref(),
        kafka_topic: &batch.topic,
        kafka_partition: kafka_partition(batch)?,
        kafka_offset: fits(r.offset, "kafka_offset (UInt64)", &e.event_id)?,
        ingested_at,
    })
}

pub(super) fn click_row<'a>(
    batch: &'a PartitionBatch,
    (offset, e): &'a (i64, ClickEvent),
    ingested_at: u32,
) -> Result<ClickRow<'a>> {
    let (secs, micros) = split_time(e.occurred_at, &e.event_id)?;
    Ok(ClickRow {
        event_id: &e.event_id,
        tenant_id: &e.tenant_id,
        occurred_at: secs,
        occurred_at_micros: micros,
        short_code: &e.short_code,
        referrer: e.referrer.as_deref(),
        country: e.country.as_deref(),
        user_agent: e.user_agent.as_deref(),
        visitor_id: e.visitor_id.as_deref(),
        kafka_topic: &batch.topic,
        kafka_partition: kafka_partition(batch)?,
        kafka_offset: fits(*offset, "kafka_offset (UInt64)", &e.event_id)?,
        ingested_at,
    })
}

/// An event's place in its raw table's sorting key (`ORDER BY` in
/// `clickhouse/migrations/0001_raw_events.sql`), in the parts the server compares: the leading string
/// columns (`prefix`, unused places empty), `occurred_at` in whole seconds (the `DateTime` column), then
/// `event_id`. Strings compare byte by byte, as the server compares them. An `INSERT` whose rows already
/// come in this order is not sorted again by the server (it checks, and counts
/// `MergeTreeDataWriterBlocksAlreadySorted`): in a profile of a drain, sorting and permuting the inserted
/// blocks was about a third of ClickHouse's CPU, half of it the raw tables'.
#[derive(Debug, Clone, Copy)]
pub(super) struct SortKey<'a> {
    pub prefix: [&'a str; 3],
    pub secs: i64,
    pub event_id: &'a str,
}

/// `rank_events`: (tenant_id, campaign_id, keyword, occurred_at, event_id).
pub(super) fn rank_key((_, e): &(i64, RankEvent)) -> SortKey<'_> {
    SortKey {
        prefix: [&e.tenant_id, &e.campaign_id, &e.keyword],
        secs: e.occurred_at.timestamp(),
        event_id: &e.event_id,
    }
}

/// `crawl_events`: (tenant_id, campaign_id, domain, occurred_at, event_id).
pub(super) fn crawl_key(r: &CrawlRecord) -> SortKey<'_> {
    let e = &r.event;
    SortKey {
        prefix: [&e.tenant_id, &e.campaign_id, &r.domain],
        secs: e.occurred_at.timestamp(),
        event_id: &e.event_id,
    }
}

/// `click_events`: (tenant_id, short_code, occurred_at, event_id).
pub(super) fn click_key((_, e): &(i64, ClickEvent)) -> SortKey<'_> {
    SortKey {
        prefix: [&e.tenant_id, &e.short_code, ""],
        secs: e.occurred_at.timestamp(),
        event_id: &e.event_id,
    }
}

/// The partition number for the `UInt16` column: a topic with more than 65,536 partitions is a
/// configuration the raw tables cannot record, refused rather than clamped onto partition 65535.
pub(super) fn kafka_partition(batch: &PartitionBatch) -> Result<u16> {
    u16::try_from(batch.partition).map_err(|_| {
        SinkError::permanent(
            SINK,
            format!(
                "{}/{}: kafka_partition does not fit the raw tables' UInt16 column (0..=65535)",
                batch.topic, batch.partition
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_time_into_seconds_and_micros() {
        let ts = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z")
            .unwrap()
            .to_utc();
        assert_eq!(split_time(ts, "e").unwrap(), (1_767_323_045, 123_456));
        // Before 1970 or after 2106 the DateTime column cannot hold it: an error naming the column,
        // never 0 or a wrapped value.
        let early = chrono::DateTime::parse_from_rfc3339("1969-12-31T23:59:59.5Z")
            .unwrap()
            .to_utc();
        let err = split_time(early, "e").unwrap_err().to_string();
        assert!(err.contains("occurred_at (DateTime)=-1"), "{err}");
        let last = chrono::DateTime::from_timestamp(i64::from(u32::MAX), 999_999_000).unwrap();
        assert_eq!(split_time(last, "e").unwrap(), (u32::MAX, 999_999));
        assert!(split_time(last + chrono::TimeDelta::seconds(1), "e").is_err());
    }

    #[test]
    fn row_values_that_do_not_fit_are_errors_not_clamped() {
        let mut batch = PartitionBatch::new("t", 65_536, Some(0));
        assert!(kafka_partition(&batch)
            .unwrap_err()
            .to_string()
            .contains("t/65536"));
        batch.partition = 65_535;
        assert_eq!(kafka_partition(&batch).unwrap(), 65_535);
        assert_eq!(
            fits::<u32, i64>(4_294_967_295, "fetch_ms", "e").unwrap(),
            u32::MAX
        );
        let err = fits::<u32, i64>(4_294_967_296, "fetch_ms (UInt32)", "e").unwrap_err();
        assert!(
            err.to_string().contains("fetch_ms (UInt32)=4294967296"),
            "{err}"
        );
        assert!(fits::<u64, i64>(-1, "bytes (UInt64)", "e").is_err());
        assert!(fits::<u16, i32>(65_536, "status_code (UInt16)", "e").is_err());
    }
}
