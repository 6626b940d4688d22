//! Raw-event inserts: per flush, each table's rows go in one `INSERT` (or a few concurrent ones of
//! whole batches when there are many: [`MIN_STREAM_ROWS`]), serialized as RowBinary by the `clickhouse`
//! crate. Idempotent: the raw tables collapse a row written again onto the one already there.

use std::time::{SystemTime, UNIX_EPOCH};

use clickhouse::Client;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sluice_aggregator::PartitionBatch;

use super::rows::{
    click_events, click_row, crawl_events, crawl_row, rank_events, rank_row, ClickRow, CrawlRow,
    RankRow,
};
use super::{classify, ClickHouseSink, SINK};
use crate::error::Result;

impl ClickHouseSink {
    /// Writes a batch's raw events to the three tables. Returns the number of rows written.
    pub async fn write(&self, batch: &PartitionBatch) -> Result<u64> {
        self.write_all(&[batch]).await
    }

    /// Writes the raw events of several partition batches: the three tables concurrently, and a table's
    /// rows in up to [`ClickHouseConfig::insert_streams`] concurrent `INSERT`s (whole partition batches
    /// each, at least [`MIN_STREAM_ROWS`] rows apiece). The server runs one insert — its parts and its
    /// materialized views — on one thread, so a single stream leaves the other cores to PostgreSQL and
    /// ingest at best; fewer, larger blocks still mean fewer parts to merge. Returns the rows written.
    ///
    /// With several replicas, a transient failure sends the same `INSERT`s again — same rows, same
    /// order, same `ingested_at`, same split — to the next replica (see `replicas`).
    ///
    /// [`ClickHouseConfig::insert_streams`]: super::ClickHouseConfig::insert_streams
    pub async fn write_all(&self, batches: &[&PartitionBatch]) -> Result<u64> {
        let ingested_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        self.write_all_at(batches, ingested_at).await
    }

    /// [`write_all`](Self::write_all) with the rows' `ingested_at` (seconds since the epoch) given: the
    /// same call twice sends identical blocks.
    pub async fn write_all_at(&self, batches: &[&PartitionBatch], ingested_at: u32) -> Result<u64> {
        self.on_replicas(|replica| self.write_to(&replica.client, batches, ingested_at))
            .await
    }

    async fn write_to(
        &self,
        client: &Client,
        batches: &[&PartitionBatch],
        ingested_at: u32,
    ) -> Result<u64> {
        let mut inserts = self.table_inserts::<RankRow<'static>, _>(
            client,
            "rank_events",
            batches,
            rank_events,
            rank_row,
            ingested_at,
        );
        inserts.extend(self.table_inserts::<CrawlRow<'static>, _>(
            client,
            "crawl_events",
            batches,
            crawl_events,
            crawl_row,
            ingested_at,
        ));
        inserts.extend(self.table_inserts::<ClickRow<'static>, _>(
            client,
            "click_events",
            batches,
            click_events,
            click_row,
            ingested_at,
        ));
        let written = futures_util::future::try_join_all(inserts).await?;
        Ok(written.into_iter().sum())
    }

    /// The inserts of one table: the batches with rows for it in [`streams`], one `INSERT` each.
    fn table_inserts<'s, T, E: Sync + 's>(
        &'s self,
        client: &'s Client,
        table: &'static str,
        batches: &[&'s PartitionBatch],
        events: fn(&PartitionBatch) -> &[E],
        row: for<'a> fn(&'a PartitionBatch, &'a E, u32) -> Result<T::Value<'a>>,
        ingested_at: u32,
    ) -> Vec<BoxFuture<'s, Result<u64>>>
    where
        T: clickhouse::RowWrite + Send + 's,
        for<'a> T::Value<'a>: Send,
    {
        streams(batches, self.insert_streams, |b| events(b).len())
            .into_iter()
            .map(|group| {
                insert_rows::<T, E>(client, table, group, events, row, ingested_at).boxed()
            })
            .collect()
    }
}

/// One `INSERT` into `table` of the rows `row` makes of each batch's `events`, in RowBinary;
/// returns (and counts) the rows written.
async fn insert_rows<T, E: Sync>(
    client: &Client,
    table: &'static str,
    batches: Vec<&PartitionBatch>,
    events: fn(&PartitionBatch) -> &[E],
    row: for<'a> fn(&'a PartitionBatch, &'a E, u32) -> Result<T::Value<'a>>,
    ingested_at: u32,
) -> Result<u64>
where
    T: clickhouse::RowWrite + Send,
{
    let mut insert = client.insert::<T>(table).await.map_err(classify)?;
    let mut written = 0_usize;
    for batch in batches {
        for event in events(batch) {
            insert
                .write(&row(batch, event, ingested_at)?)
                .await
                .map_err(classify)?;
            written += 1;
        }
    }
    insert.end().await.map_err(classify)?;
    count_rows(table, written);
    Ok(written as u64)
}

/// A table's rows below this many are not split into another concurrent `INSERT`: each one is a part
/// for the server to merge later.
pub const MIN_STREAM_ROWS: usize = 50_000;

/// Splits the batches that have rows for a table (`rows` of each) into at most `max` groups of whole
/// batches with about equal rows, none below [`MIN_STREAM_ROWS`] unless there is only one. Empty when
/// no batch has rows.
fn streams<'a>(
    batches: &[&'a PartitionBatch],
    max: usize,
    rows: impl Fn(&PartitionBatch) -> usize,
) -> Vec<Vec<&'a PartitionBatch>> {
    let with_rows: Vec<&PartitionBatch> = batches.iter().copied().filter(|b| rows(b) > 0).collect();
    let total: usize = with_rows.iter().map(|b| rows(b)).sum();
    if total == 0 {
        return Vec::new();
    }
    let n = (total / MIN_STREAM_ROWS)
        .clamp(1, max.max(1))
        .min(with_rows.len());
    // Largest first, each to the group with the fewest rows so far (longest-processing-time order).
    let mut sorted = with_rows;
    sorted.sort_by_key(|b| std::cmp::Reverse(rows(b)));
    let mut groups: Vec<(usize, Vec<&PartitionBatch>)> = vec![(0, Vec::new()); n];
    for batch in sorted {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(sum, _)| *sum)
            .expect("n >= 1");
        lightest.0 += rows(batch);
        lightest.1.push(batch);
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

fn count_rows(table: &'static str, n: usize) {
    metrics::counter!(crate::metrics::SINK_ROWS, "sink" => SINK, "table" => table)
        .increment(n as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `partition` holding `n` click events (their contents do not matter here).
    fn clicks(partition: i32, n: usize) -> PartitionBatch {
        let event = sluice_schemas::ClickEvent {
            schema_version: 1,
            event_id: "e".into(),
            tenant_id: "t".into(),
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            short_code: "s".into(),
            referrer: None,
            country: None,
            user_agent: None,
            visitor_id: None,
        };
        let mut batch = PartitionBatch::new("click-events", partition, None);
        batch.click_events = vec![(0, event); n];
        batch
    }

    /// The partitions of each group, and each group's rows, sorted for comparison.
    fn shape(groups: &[Vec<&PartitionBatch>]) -> Vec<(usize, Vec<i32>)> {
        let mut shape: Vec<(usize, Vec<i32>)> = groups
            .iter()
            .map(|g| {
                let mut parts: Vec<i32> = g.iter().map(|b| b.partition).collect();
                parts.sort();
                (g.iter().map(|b| b.click_events.len()).sum(), parts)
            })
            .collect();
        shape.sort();
        shape
    }

    #[test]
    fn splits_a_table_into_balanced_streams_of_whole_batches() {
        let rows = |b: &PartitionBatch| b.click_events.len();
        let sizes = [90_000, 70_000, 60_000, 40_000, 30_000, 0];
        let batches: Vec<PartitionBatch> = (0..).zip(sizes).map(|(p, n)| clicks(p, n)).collect();
        let refs: Vec<&PartitionBatch> = batches.iter().collect();
        // 290,000 rows in two streams, largest first to the lighter group: 90k+40k+30k / 70k+60k.
        assert_eq!(
            shape(&streams(&refs, 2, rows)),
            vec![(130_000, vec![1, 2]), (160_000, vec![0, 3, 4])]
        );
        // Three streams: 90k / 70k+30k / 60k+40k; the empty batch is in none.
        assert_eq!(
            shape(&streams(&refs, 3, rows)),
            vec![
                (90_000, vec![0]),
                (100_000, vec![1, 4]),
                (100_000, vec![2, 3])
            ]
        );
        // 290,000 rows allow at most five streams of 50,000; one per batch with rows is the limit.
        assert_eq!(streams(&refs, 64, rows).len(), 5);
        // Below 2 × 50,000 rows: one stream, whatever the maximum.
        let small = [clicks(0, 60_000), clicks(1, 39_999)];
        let small: Vec<&PartitionBatch> = small.iter().collect();
        assert_eq!(shape(&streams(&small, 4, rows)), vec![(99_999, vec![0, 1])]);
        // No rows: no insert at all.
        assert!(streams(&refs[5..], 2, rows).is_empty());
    }
}
