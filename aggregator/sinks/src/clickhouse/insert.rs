//! Raw-event inserts: per flush, each table's rows go in one `INSERT` (or a few concurrent ones of
//! whole batches when there are many: [`MIN_STREAM_ROWS`]), serialized as RowBinary by the `clickhouse`
//! crate. Idempotent: the raw tables collapse a row written again onto the one already there.

use std::time::{SystemTime, UNIX_EPOCH};

use clickhouse::Client;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sluice_aggregator::PartitionBatch;

use super::rows::{
    click_events, click_key, click_row, crawl_events, crawl_key, crawl_row, rank_events, rank_key,
    rank_row, ClickRow, CrawlRow, RankRow, SortKey,
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
        let rank: RawTable<_, RankRow<'static>> = RawTable {
            name: "rank_events",
            events: rank_events,
            key: rank_key,
            row: rank_row,
        };
        let crawl: RawTable<_, CrawlRow<'static>> = RawTable {
            name: "crawl_events",
            events: crawl_events,
            key: crawl_key,
            row: crawl_row,
        };
        let click: RawTable<_, ClickRow<'static>> = RawTable {
            name: "click_events",
            events: click_events,
            key: click_key,
            row: click_row,
        };
        let mut inserts = self.table_inserts(client, rank, batches, ingested_at);
        inserts.extend(self.table_inserts(client, crawl, batches, ingested_at));
        inserts.extend(self.table_inserts(client, click, batches, ingested_at));
        let written = futures_util::future::try_join_all(inserts).await?;
        Ok(written.into_iter().sum())
    }

    /// The inserts of one table: the batches with rows for it in [`streams`], one `INSERT` each.
    fn table_inserts<'s, T, E: Sync + 's>(
        &'s self,
        client: &'s Client,
        table: RawTable<E, T>,
        batches: &[&'s PartitionBatch],
        ingested_at: u32,
    ) -> Vec<BoxFuture<'s, Result<u64>>>
    where
        T: clickhouse::RowWrite + Send + 's,
        for<'a> T::Value<'a>: Send,
    {
        streams(batches, self.insert_streams, |b| (table.events)(b).len())
            .into_iter()
            .map(|group| insert_rows::<T, E>(client, table, group, ingested_at).boxed())
            .collect()
    }
}

/// One raw table: its name, the batch's events for it, an event's place in the table's sorting key
/// (see `rows::SortKey`) and the row each event becomes.
struct RawTable<E, T: clickhouse::RowWrite> {
    name: &'static str,
    events: fn(&PartitionBatch) -> &[E],
    key: fn(&E) -> SortKey<'_>,
    row: for<'a> fn(&'a PartitionBatch, &'a E, u32) -> Result<T::Value<'a>>,
}

impl<E, T: clickhouse::RowWrite> Clone for RawTable<E, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E, T: clickhouse::RowWrite> Copy for RawTable<E, T> {}

/// One `INSERT` into `table` of the rows it makes of each batch's events, in RowBinary, sorted by the
/// table's sorting key so the server need not sort them; returns (and counts) the rows written. The
/// same batches always give the same rows in the same order (a stable sort of the batches' events in
/// their given order), which a retry on another replica relies on.
async fn insert_rows<T, E: Sync>(
    client: &Client,
    table: RawTable<E, T>,
    batches: Vec<&PartitionBatch>,
    ingested_at: u32,
) -> Result<u64>
where
    T: clickhouse::RowWrite + Send,
{
    let sorted = sorted_events(&batches, table.events, table.key);
    let mut insert = client.insert::<T>(table.name).await.map_err(classify)?;
    for (batch, event) in &sorted {
        insert
            .write(&(table.row)(batch, event, ingested_at)?)
            .await
            .map_err(classify)?;
    }
    insert.end().await.map_err(classify)?;
    count_rows(table.name, sorted.len());
    Ok(sorted.len() as u64)
}

/// Every event of `batches` with its batch, in the order of `key`; events with equal keys keep their
/// batch, then event order, as a stable sort would leave them.
///
/// A plain sort by the keys compares their strings at every step, chasing each event's pointers: in a
/// profile of a mixed drain that was about a fifth of ingest's CPU. Here only the distinct string
/// prefixes (tenant, link; or tenant, campaign, keyword or domain) are sorted as strings: a hash map
/// gives each event its prefix's slot, and the events are sorted by (prefix rank, second) as integers.
/// `event_id`s are compared only between events of the same prefix and second.
fn sorted_events<'a, E>(
    batches: &[&'a PartitionBatch],
    events: fn(&PartitionBatch) -> &[E],
    key: fn(&E) -> SortKey<'_>,
) -> Vec<(&'a PartitionBatch, &'a E)> {
    let all: Vec<(&PartitionBatch, &E)> = batches
        .iter()
        .flat_map(|b| events(b).iter().map(move |e| (*b, e)))
        .collect();
    // (prefix slot, then its rank; second; event id; position in `all`) per event: once the slots are
    // ranks, the tuples' own order is the table's, with the position keeping equal keys as given.
    let mut order: Vec<(u32, i64, &str, usize)> = Vec::with_capacity(all.len());
    let mut prefixes: Vec<[&str; 3]> = Vec::new();
    let mut slots: hashbrown::HashMap<[&str; 3], u32> = hashbrown::HashMap::new();
    for (i, (_, e)) in all.iter().enumerate() {
        let k = key(e);
        let slot = *slots.entry(k.prefix).or_insert_with(|| {
            prefixes.push(k.prefix);
            u32::try_from(prefixes.len() - 1).expect("fewer than 2^32 distinct prefixes")
        });
        order.push((slot, k.secs, k.event_id, i));
    }
    drop(slots);
    let mut by_prefix: Vec<u32> = (0..).take(prefixes.len()).collect();
    by_prefix.sort_unstable_by_key(|&slot| prefixes[slot as usize]);
    let mut rank = vec![0u32; prefixes.len()];
    for (r, &slot) in (0..).zip(&by_prefix) {
        rank[slot as usize] = r;
    }
    for entry in &mut order {
        entry.0 = rank[entry.0 as usize];
    }
    // Positions are distinct, so no two tuples are equal and an unstable sort is exact.
    order.sort_unstable();
    order.into_iter().map(|(.., i)| all[i]).collect()
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
    use sluice_schemas::ClickEvent;

    /// A batch of `partition` holding `n` click events (their contents do not matter here).
    fn clicks(partition: i32, n: usize) -> PartitionBatch {
        let event = ClickEvent::new("e", "t", chrono::DateTime::UNIX_EPOCH, "s");
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

    /// A click of `tenant`/`short_code` at `secs` + `micros` µs after 2026-01-01T00:00:00Z.
    fn click(
        id: &str,
        tenant: &str,
        short_code: &str,
        secs: i64,
        micros: i64,
    ) -> (i64, ClickEvent) {
        let at = chrono::DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
            + chrono::TimeDelta::microseconds(micros);
        (0, ClickEvent::new(id, tenant, at, short_code))
    }

    #[test]
    fn rows_go_out_in_the_tables_sorting_key_order() {
        let mut first = PartitionBatch::new("click-events", 0, None);
        first.click_events = vec![
            click("e5", "t2", "a", 0, 0),
            click("e4", "t1", "b", 0, 0),
            // Same tenant, link and second: event_id decides, not the microseconds.
            click("e3", "t1", "a", 7, 900_000),
            click("e2", "t1", "a", 7, 100_000),
            click("e1", "t1", "a", 3, 0),
        ];
        let mut second = PartitionBatch::new("click-events", 1, None);
        second.click_events = vec![
            // A re-send of e2 (same key): after the first batch's copy, as given.
            click("e2", "t1", "a", 7, 100_000),
            click("e0", "t10", "a", 0, 0),
        ];
        let sorted = sorted_events(&[&first, &second], click_events, click_key);
        let got: Vec<(i32, &str)> = sorted
            .iter()
            .map(|(b, (_, e))| (b.partition, e.event_id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "e1"),
                (0, "e2"),
                (1, "e2"),
                (0, "e3"),
                (0, "e4"),
                (1, "e0"),
                (0, "e5")
            ]
        );
    }

    /// The ranked sort against a plain stable sort by the whole key, on random clicks drawn from few
    /// values so that prefixes, seconds and whole keys tie often, within and across batches. Tenants
    /// "t1"/"t10" with links "0a"/"a" would collide if the prefix were compared as one joined string.
    #[test]
    fn the_ranked_sort_orders_exactly_as_a_stable_sort_by_the_key() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(16);
        let tenants = ["t1", "t10", "t2", ""];
        let links = ["a", "0a", "ab", "b", ""];
        for round in 0..20 {
            let batches: Vec<PartitionBatch> = (0..3)
                .map(|p| {
                    let mut batch = PartitionBatch::new("click-events", p, None);
                    let n = rng.random_range(0..(1 + round * 100));
                    batch.click_events = (0..n)
                        .map(|i| {
                            let id = format!("e{}", rng.random_range(0..30));
                            let tenant = tenants[rng.random_range(0..tenants.len())];
                            let link = links[rng.random_range(0..links.len())];
                            let secs = rng.random_range(-2..4);
                            let micros = rng.random_range(0..1_000_000);
                            let (_, e) = click(&id, tenant, link, secs, micros);
                            (i as i64, e)
                        })
                        .collect();
                    batch
                })
                .collect();
            let refs: Vec<&PartitionBatch> = batches.iter().collect();
            let mut expected: Vec<(&PartitionBatch, &(i64, ClickEvent))> = refs
                .iter()
                .flat_map(|b| b.click_events.iter().map(move |e| (*b, e)))
                .collect();
            expected.sort_by(|a, b| {
                let key = |e: &ClickEvent| {
                    (
                        e.tenant_id.clone(),
                        e.short_code.clone(),
                        e.occurred_at.timestamp(),
                        e.event_id.clone(),
                    )
                };
                key(&a.1 .1).cmp(&key(&b.1 .1))
            });
            let place =
                |(b, (offset, _)): &(&PartitionBatch, &(i64, ClickEvent))| (b.partition, *offset);
            let got: Vec<(i32, i64)> = sorted_events(&refs, click_events, click_key)
                .iter()
                .map(place)
                .collect();
            let want: Vec<(i32, i64)> = expected.iter().map(place).collect();
            assert_eq!(got, want, "round {round}");
        }
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
