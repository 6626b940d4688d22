//! The raw tables' rows at flush: each stored row (`sluice_aggregator::raw`, encoded at ingest) gets
//! the four columns every raw table ends with — where it came from and when it was written — and
//! [`raw_rows`] reads a batch's rows back as values, for the fuzz target and tests. A value that does
//! not fit its column is an error naming the column, never clamped.

use serde::Serialize;
use sluice_aggregator::raw;
use sluice_aggregator::PartitionBatch;
use sluice_schemas::Event;

use super::SINK;
use crate::error::{ErrorClass, Result, SinkError};

/// One row of `rank_events` (`clickhouse/migrations/0001_raw_events.sql`), read back.
#[derive(Debug, Serialize)]
pub struct RankRow {
    event_id: String,
    tenant_id: String,
    occurred_at: u32,
    occurred_at_micros: u32,
    campaign_id: String,
    keyword: String,
    geo: String,
    engine: String,
    device: String,
    url: Option<String>,
    position: Option<u8>,
    kafka_topic: String,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// One row of `crawl_events` (`clickhouse/migrations/0001_raw_events.sql`), read back.
#[derive(Debug, Serialize)]
pub struct CrawlRow {
    event_id: String,
    tenant_id: String,
    occurred_at: u32,
    occurred_at_micros: u32,
    campaign_id: String,
    url: String,
    domain: String,
    status_code: u16,
    fetch_ms: u32,
    bytes: u64,
    content_hash: Option<String>,
    kafka_topic: String,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// One row of `click_events` (`clickhouse/migrations/0001_raw_events.sql`), read back.
#[derive(Debug, Serialize)]
pub struct ClickRow {
    event_id: String,
    tenant_id: String,
    occurred_at: u32,
    occurred_at_micros: u32,
    short_code: String,
    referrer: Option<String>,
    country: Option<String>,
    user_agent: Option<String>,
    visitor_id: Option<String>,
    kafka_topic: String,
    kafka_partition: u16,
    kafka_offset: u64,
    ingested_at: u32,
}

/// A batch's rows for `rank_events`, `crawl_events` and `click_events` (see [`raw_rows`]).
#[derive(Debug, Default)]
pub struct DecodedRows {
    pub rank: Vec<RankRow>,
    pub crawl: Vec<CrawlRow>,
    pub click: Vec<ClickRow>,
}

/// The rows one batch writes to the three raw tables, in arrival order, read back from the bytes the
/// flush sends (the stored row, then [`trailer`]): what ClickHouse receives, as values. Public for the
/// fuzz target (`aggregator/fuzz`), which checks every value against the event it came from.
pub fn raw_rows(batch: &PartitionBatch, ingested_at: u32) -> Result<DecodedRows> {
    let partition = kafka_partition(batch)?;
    let mut out = DecodedRows::default();
    for rows in batch.raw_tables() {
        for (offset, row) in rows.iter() {
            let mut tail = Vec::new();
            trailer(&batch.topic, partition, offset, ingested_at, &mut tail)?;
            let (topic, partition, kafka_offset, ingested_at) = read_trailer(&tail);
            let (event, domain) = raw::decode(rows.kind(), row)
                .map_err(|e| SinkError::permanent(SINK, format!("a stored row: {e}")))?;
            let at = event.occurred_at().timestamp_micros();
            let (secs, micros) = (
                fits(
                    at.div_euclid(1_000_000),
                    "occurred_at (DateTime)",
                    event.event_id(),
                )?,
                fits(
                    at.rem_euclid(1_000_000),
                    "occurred_at_micros",
                    event.event_id(),
                )?,
            );
            match event {
                Event::Rank(e) => out.rank.push(RankRow {
                    position: e
                        .position
                        .map(|p| fits(p, "position (UInt8)", &e.event_id))
                        .transpose()?,
                    event_id: e.event_id,
                    tenant_id: e.tenant_id,
                    occurred_at: secs,
                    occurred_at_micros: micros,
                    campaign_id: e.campaign_id,
                    keyword: e.keyword,
                    geo: e.geo,
                    engine: e.engine,
                    device: e.device,
                    url: e.url,
                    kafka_topic: topic,
                    kafka_partition: partition,
                    kafka_offset,
                    ingested_at,
                }),
                Event::Crawl(e) => out.crawl.push(CrawlRow {
                    status_code: fits(e.status_code, "status_code (UInt16)", &e.event_id)?,
                    fetch_ms: fits(e.fetch_ms, "fetch_ms (UInt32)", &e.event_id)?,
                    bytes: fits(e.bytes, "bytes (UInt64)", &e.event_id)?,
                    event_id: e.event_id,
                    tenant_id: e.tenant_id,
                    occurred_at: secs,
                    occurred_at_micros: micros,
                    campaign_id: e.campaign_id,
                    url: e.url,
                    domain,
                    content_hash: e.content_hash,
                    kafka_topic: topic,
                    kafka_partition: partition,
                    kafka_offset,
                    ingested_at,
                }),
                Event::Click(e) => out.click.push(ClickRow {
                    event_id: e.event_id,
                    tenant_id: e.tenant_id,
                    occurred_at: secs,
                    occurred_at_micros: micros,
                    short_code: e.short_code,
                    referrer: e.referrer,
                    country: e.country,
                    user_agent: e.user_agent,
                    visitor_id: e.visitor_id,
                    kafka_topic: topic,
                    kafka_partition: partition,
                    kafka_offset,
                    ingested_at,
                }),
            }
        }
    }
    Ok(out)
}

/// Appends the columns every raw table ends with to a stored row: `kafka_topic`, `kafka_partition`,
/// `kafka_offset` and `ingested_at`.
pub(super) fn trailer(
    topic: &str,
    partition: u16,
    offset: i64,
    ingested_at: u32,
    out: &mut Vec<u8>,
) -> Result<()> {
    let offset = fits(offset, "kafka_offset (UInt64)", "")?;
    raw::encode_trailer(topic, partition, offset, ingested_at, out);
    Ok(())
}

/// The four trailing columns read back (for [`raw_rows`]).
fn read_trailer(tail: &[u8]) -> (String, u16, u64, u32) {
    // LEB128 length of the topic, then the fixed-width columns.
    let (mut len, mut shift, mut i) = (0usize, 0, 0);
    loop {
        let b = tail[i];
        i += 1;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let topic = String::from_utf8_lossy(&tail[i..i + len]).into_owned();
    let rest = &tail[i + len..];
    (
        topic,
        u16::from_le_bytes(rest[..2].try_into().expect("2 bytes")),
        u64::from_le_bytes(rest[2..10].try_into().expect("8 bytes")),
        u32::from_le_bytes(rest[10..14].try_into().expect("4 bytes")),
    )
}

/// A value converted to its column's type, or an error naming the column (a data error: the flush
/// isolates the event and dead-letters it), never clamped or wrapped.
fn fits<T, S>(value: S, column: &str, event_id: &str) -> Result<T>
where
    T: TryFrom<S>,
    S: Copy + std::fmt::Display,
{
    T::try_from(value).map_err(|_| {
        SinkError::new(
            SINK,
            ErrorClass::Data,
            None,
            format!("event {event_id:?}: {column}={value} does not fit its ClickHouse column"),
        )
    })
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
    use sluice_schemas::ClickEvent;

    #[test]
    fn a_row_ends_with_where_it_came_from_and_when() {
        let mut tail = Vec::new();
        trailer("click-events", 7, 300, 1_767_323_045, &mut tail).unwrap();
        // Written out by hand: the topic as a RowBinary String, then UInt16, UInt64, UInt32 (LE).
        let mut expected = vec![12];
        expected.extend_from_slice(b"click-events");
        expected.extend_from_slice(&[7, 0]);
        expected.extend_from_slice(&[44, 1, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&1_767_323_045u32.to_le_bytes());
        assert_eq!(tail, expected);
        assert_eq!(
            read_trailer(&tail),
            ("click-events".into(), 7, 300, 1_767_323_045)
        );
        let err = trailer("t", 0, -1, 0, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("kafka_offset (UInt64)=-1"),
            "{err}"
        );
    }

    #[test]
    fn row_values_read_back_and_partitions_that_do_not_fit_are_errors() {
        let at = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let mut batch = PartitionBatch::new("t", 65_536, Some(0));
        batch
            .add(Event::Click(ClickEvent::new("e", "x", at, "s")), 4)
            .unwrap();
        assert!(kafka_partition(&batch)
            .unwrap_err()
            .to_string()
            .contains("t/65536"));
        assert!(raw_rows(&batch, 9).is_err());
        batch.partition = 65_535;
        let rows = raw_rows(&batch, 9).unwrap();
        let row = &rows.click[0];
        assert_eq!(
            (
                row.event_id.as_str(),
                row.occurred_at,
                row.occurred_at_micros
            ),
            ("e", 1_767_323_045, 123_456)
        );
        assert_eq!(
            (row.kafka_partition, row.kafka_offset, row.ingested_at),
            (65_535, 4, 9)
        );
        assert_eq!(
            fits::<u32, i64>(4_294_967_295, "fetch_ms", "e").unwrap(),
            u32::MAX
        );
        assert!(fits::<u32, i64>(4_294_967_296, "fetch_ms (UInt32)", "e").is_err());
    }
}
