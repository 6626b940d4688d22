//! Raw-event inserts: per flush, each table's rows go in one `INSERT` (or a few concurrent ones of
//! whole batches when there are many: [`MIN_STREAM_ROWS`]) in RowBinary — the bytes each batch stored
//! at ingest (`sluice_aggregator::raw`) with the Kafka columns appended — through the `clickhouse`
//! crate's formatted insert. Idempotent: the raw tables collapse a row written again onto the one
//! already there.

use std::time::{SystemTime, UNIX_EPOCH};

use clickhouse::Client;
use futures_util::FutureExt;
use sluice_aggregator::raw::{self, TRAILING_COLUMNS};
use sluice_aggregator::PartitionBatch;
use sluice_schemas::EventKind;

use super::rows::{kafka_partition, trailer};
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
        let inserts = EventKind::ALL.into_iter().flat_map(|kind| {
            streams(batches, self.insert_streams, |b| b.rows_of(kind).len())
                .into_iter()
                .map(move |group| insert_rows(client, kind, group, ingested_at).boxed())
        });
        let written = futures_util::future::try_join_all(inserts).await?;
        Ok(written.into_iter().sum())
    }
}

/// The raw table a kind's events go to.
fn table(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Rank => "rank_events",
        EventKind::Crawl => "crawl_events",
        EventKind::Click => "click_events",
    }
}

/// The statement of one raw table's inserts: every column by name, in the rows' order.
fn insert_sql(kind: EventKind) -> String {
    let columns: Vec<&str> = raw::leading_columns(kind)
        .iter()
        .chain(&TRAILING_COLUMNS)
        .copied()
        .collect();
    format!(
        "INSERT INTO {}({}) FORMAT RowBinary",
        table(kind),
        columns.join(",")
    )
}

/// What a buffered `INSERT` holds before it sends a chunk (the `clickhouse` crate's own `Insert` sends
/// at the same size).
const CHUNK_BYTES: usize = 256 * 1024 - 2048;

/// One `INSERT` into the raw table of `kind` of the batches' rows, in RowBinary, sorted by the table's
/// sorting key so the server need not sort them; returns (and counts) the rows written. Each row is its
/// stored bytes ([`raw`]) followed by the four trailing columns. The same batches always give the same
/// rows in the same order (a stable sort of the batches' rows in their given order), which a retry on
/// another replica relies on.
async fn insert_rows(
    client: &Client,
    kind: EventKind,
    batches: Vec<&PartitionBatch>,
    ingested_at: u32,
) -> Result<u64> {
    // The partitions are checked before anything is sent: one that the UInt16 column cannot hold
    // stops the insert rather than write a clamped value.
    let partitions = batches
        .iter()
        .map(|b| kafka_partition(b))
        .collect::<Result<Vec<u16>>>()?;
    let sorted = sorted_rows(&batches, kind);
    let mut insert = client
        .insert_formatted_with(insert_sql(kind))
        .buffered_with_capacity(CHUNK_BYTES + 2048);
    let mut tail = Vec::with_capacity(64);
    for &(b, offset, row) in &sorted {
        tail.clear();
        trailer(
            &batches[b].topic,
            partitions[b],
            offset,
            ingested_at,
            &mut tail,
        )?;
        insert.write_buffered(row);
        insert.write_buffered(&tail);
        if insert.buf_len() >= CHUNK_BYTES {
            insert.flush().await.map_err(classify)?;
        }
    }
    insert.end().await.map_err(classify)?;
    count_rows(table(kind), sorted.len());
    Ok(sorted.len() as u64)
}

/// Every row of `kind` in `batches` as (batch index, offset, bytes), in the table's sorting key order;
/// rows with equal keys keep their batch, then arrival order, as a stable sort would leave them.
///
/// The rows are first bucketed by tenant (a counting sort over the few distinct tenants, ranked as
/// strings), then each tenant's rows are sorted by the rest of the key. A sort of all rows by the whole
/// key compares tenant strings at every step; ranking every distinct (tenant, link) or (tenant, campaign,
/// keyword) prefix in a hash map, as before session 17, spent most of its time in that map (hundreds of
/// thousands of prefixes in a sustained run's flush, `raw_sort` in `benches/encode.rs`). Within a
/// tenant the comparisons are short and the buckets small. The keys are read from the stored rows in one
/// pass in arrival order. Public for the sort benchmark.
pub fn sorted_rows<'a>(
    batches: &[&'a PartitionBatch],
    kind: EventKind,
) -> Vec<(usize, i64, &'a [u8])> {
    let all: Vec<(usize, i64, &[u8])> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| batch.rows_of(kind).iter().map(move |(o, row)| (b, o, row)))
        .collect();
    let keys: Vec<raw::SortKey<'_>> = all
        .iter()
        .map(|&(.., row)| raw::sort_key(kind, row))
        .collect();
    // Each row's tenant slot, then the slots ranked as strings.
    let mut tenants: Vec<&[u8]> = Vec::new();
    let mut slot_of: hashbrown::HashMap<&[u8], u32> = hashbrown::HashMap::new();
    let slots: Vec<u32> = keys
        .iter()
        .map(|k| {
            *slot_of.entry(k.prefix[0]).or_insert_with(|| {
                tenants.push(k.prefix[0]);
                u32::try_from(tenants.len() - 1).expect("fewer than 2^32 distinct tenants")
            })
        })
        .collect();
    drop(slot_of);
    let mut by_name: Vec<u32> = (0..).take(tenants.len()).collect();
    by_name.sort_unstable_by_key(|&slot| tenants[slot as usize]);
    let mut rank = vec![0u32; tenants.len()];
    for (r, &slot) in (0..).zip(&by_name) {
        rank[slot as usize] = r;
    }
    // Counting sort by tenant rank: `start[r]..start[r + 1]` is tenant r's bucket, in arrival order.
    let mut start = vec![0usize; tenants.len() + 1];
    for &slot in &slots {
        start[rank[slot as usize] as usize + 1] += 1;
    }
    for r in 0..tenants.len() {
        start[r + 1] += start[r];
    }
    let mut next = start.clone();
    let mut order = vec![Entry::default(); all.len()];
    for (i, (&slot, key)) in slots.iter().zip(&keys).enumerate() {
        let r = rank[slot as usize] as usize;
        order[next[r]] = Entry::of(key, u32::try_from(i).expect("fewer than 2^32 rows"));
        next[r] += 1;
    }
    // Within a tenant: the other prefix columns, the second, the event id; then the position, so no
    // two rows compare equal and an unstable sort is exact.
    for bucket in start.windows(2) {
        order[bucket[0]..bucket[1]].sort_unstable_by(|a, b| a.cmp(b, &keys));
    }
    order.into_iter().map(|e| all[e.pos as usize]).collect()
}

/// A row's place within its tenant's bucket: the first 8 bytes of the second and third prefix columns
/// (zero-padded, big-endian: where they differ they order as the whole strings do) and their lengths,
/// so that most comparisons read no row bytes; the stored key decides only where those are equal.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    head: [u64; 2],
    len: [u32; 2],
    secs: u32,
    pos: u32,
}

impl Entry {
    fn of(key: &raw::SortKey<'_>, pos: u32) -> Entry {
        let head = |s: &[u8]| {
            let mut bytes = [0u8; 8];
            let n = s.len().min(8);
            bytes[..n].copy_from_slice(&s[..n]);
            u64::from_be_bytes(bytes)
        };
        let len = |s: &[u8]| u32::try_from(s.len()).unwrap_or(u32::MAX);
        Entry {
            head: [head(key.prefix[1]), head(key.prefix[2])],
            len: [len(key.prefix[1]), len(key.prefix[2])],
            secs: key.secs,
            pos,
        }
    }

    fn cmp(&self, other: &Entry, keys: &[raw::SortKey<'_>]) -> std::cmp::Ordering {
        let column = |c: usize| {
            self.head[c].cmp(&other.head[c]).then_with(|| {
                if self.len[c] == other.len[c] && self.len[c] <= 8 {
                    std::cmp::Ordering::Equal
                } else {
                    keys[self.pos as usize].prefix[c + 1]
                        .cmp(keys[other.pos as usize].prefix[c + 1])
                }
            })
        };
        column(0)
            .then_with(|| column(1))
            .then(self.secs.cmp(&other.secs))
            .then_with(|| {
                keys[self.pos as usize]
                    .event_id
                    .cmp(keys[other.pos as usize].event_id)
            })
            .then(self.pos.cmp(&other.pos))
    }
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
    use sluice_schemas::{ClickEvent, Event};

    /// A batch of `partition` holding `n` click events (their contents do not matter here).
    fn clicks(partition: i32, n: usize) -> PartitionBatch {
        let mut batch = PartitionBatch::new("click-events", partition, None);
        for offset in 0..n as i64 {
            let event = ClickEvent::new("e", "t", chrono::DateTime::UNIX_EPOCH, "s");
            batch.add(Event::Click(event), offset).unwrap();
        }
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
    fn click(id: &str, tenant: &str, short_code: &str, secs: i64, micros: i64) -> ClickEvent {
        let at = chrono::DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
            + chrono::TimeDelta::microseconds(micros);
        ClickEvent::new(id, tenant, at, short_code)
    }

    /// A batch of `partition` holding `events` at offsets 0, 1, 2, …
    fn batch_of(partition: i32, events: Vec<ClickEvent>) -> PartitionBatch {
        let mut batch = PartitionBatch::new("click-events", partition, None);
        for (offset, e) in (0..).zip(events) {
            batch.add(Event::Click(e), offset).unwrap();
        }
        batch
    }

    /// (partition, event id) of each sorted row.
    fn ids(batches: &[&PartitionBatch]) -> Vec<(i32, String)> {
        sorted_rows(batches, EventKind::Click)
            .into_iter()
            .map(
                |(b, _, row)| match raw::decode(EventKind::Click, row).unwrap().0 {
                    Event::Click(e) => (batches[b].partition, e.event_id),
                    other => panic!("{other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn rows_go_out_in_the_tables_sorting_key_order() {
        let first = batch_of(
            0,
            vec![
                click("e5", "t2", "a", 0, 0),
                click("e4", "t1", "b", 0, 0),
                // Same tenant, link and second: event_id decides, not the microseconds.
                click("e3", "t1", "a", 7, 900_000),
                click("e2", "t1", "a", 7, 100_000),
                click("e1", "t1", "a", 3, 0),
            ],
        );
        let second = batch_of(
            1,
            vec![
                // A re-send of e2 (same key): after the first batch's copy, as given.
                click("e2", "t1", "a", 7, 100_000),
                click("e0", "t10", "a", 0, 0),
            ],
        );
        let got = ids(&[&first, &second]);
        let want = [
            (0, "e1"),
            (0, "e2"),
            (1, "e2"),
            (0, "e3"),
            (0, "e4"),
            (1, "e0"),
            (0, "e5"),
        ];
        let want: Vec<(i32, String)> = want.iter().map(|(p, e)| (*p, e.to_string())).collect();
        assert_eq!(got, want);
    }

    /// The sort against a plain stable sort by the whole key, on random clicks drawn from few
    /// values so that prefixes, seconds and whole keys tie often, within and across batches. Tenants
    /// "t1"/"t10" with links "0a"/"a" would collide if the prefix were compared as one joined string.
    #[test]
    fn clicks_sort_exactly_as_a_stable_sort_by_the_key() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(16);
        let tenants = ["t1", "t10", "t2", ""];
        let links = ["a", "0a", "ab", "b", ""];
        for round in 0..20 {
            let generated: Vec<Vec<ClickEvent>> = (0..3)
                .map(|_| {
                    let n = rng.random_range(0..(1 + round * 100));
                    (0..n)
                        .map(|_| {
                            let id = format!("e{}", rng.random_range(0..30));
                            let tenant = tenants[rng.random_range(0..tenants.len())];
                            let link = links[rng.random_range(0..links.len())];
                            let secs = rng.random_range(-2..4);
                            let micros = rng.random_range(0..1_000_000);
                            click(&id, tenant, link, secs, micros)
                        })
                        .collect()
                })
                .collect();
            // The expected order from the events themselves: a stable sort by the whole key.
            let mut expected: Vec<(i32, i64, &ClickEvent)> = (0..)
                .zip(&generated)
                .flat_map(|(p, events)| (0..).zip(events).map(move |(o, e)| (p, o, e)))
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
                key(a.2).cmp(&key(b.2))
            });
            let want: Vec<(i32, i64)> = expected.iter().map(|(p, o, _)| (*p, *o)).collect();
            let batches: Vec<PartitionBatch> = (0..)
                .zip(generated.clone())
                .map(|(p, events)| batch_of(p, events))
                .collect();
            let refs: Vec<&PartitionBatch> = batches.iter().collect();
            let got: Vec<(i32, i64)> = sorted_rows(&refs, EventKind::Click)
                .iter()
                .map(|(b, offset, _)| (refs[*b].partition, *offset))
                .collect();
            assert_eq!(got, want, "round {round}");
        }
    }

    /// The bucketed sort of every kind against a plain stable sort by the whole key, on random events
    /// whose key strings share their first 8 bytes and differ after them or in length only, so that
    /// the 8-byte heads tie and the stored keys must decide ("best sho" < "best shoe" < "best shoes"),
    /// and tenants, seconds and event ids tie often.
    #[test]
    fn the_bucketed_sort_orders_every_kind_as_a_stable_sort_by_the_key() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        use sluice_schemas::{CrawlEvent, RankEvent, SCHEMA_VERSION};
        let mut rng = SmallRng::seed_from_u64(17);
        let tenants = ["t1", "t10", "tenant-00", "tenant-001", ""];
        let firsts = [
            "campaign",
            "campaign1",
            "campaign10",
            "campaigo",
            "campaig",
            "c",
            "",
        ];
        let seconds = [
            "best shoes",
            "best shoe",
            "best shoesz",
            "best sho",
            "best sh",
            "a",
            "",
        ];
        let hosts = [
            "example.com",
            "example.co",
            "examples.com",
            "example.org",
            "a.io",
        ];
        // (tenant, second and third key columns, second, event id): the table's sorting key.
        type Key = (String, String, String, i64, String);
        let pick = |rng: &mut SmallRng, values: &[&str]| {
            values[rng.random_range(0..values.len())].to_owned()
        };
        for kind in EventKind::ALL {
            for round in 0..10 {
                // (event, its key) per batch.
                let generated: Vec<Vec<(Event, Key)>> = (0..3)
                    .map(|_| {
                        (0..rng.random_range(0..(1 + round * 150)))
                            .map(|_| {
                                let id = format!("e{}", rng.random_range(0..20));
                                let tenant = pick(&mut rng, &tenants);
                                let secs = rng.random_range(-2..3);
                                let at = chrono::DateTime::from_timestamp(1_767_225_600 + secs, 0)
                                    .unwrap()
                                    + chrono::TimeDelta::microseconds(
                                        rng.random_range(0..1_000_000),
                                    );
                                let first = pick(&mut rng, &firsts);
                                let (event, a, b) = match kind {
                                    EventKind::Click => {
                                        let code = pick(&mut rng, &seconds);
                                        let e = ClickEvent::new(&id, &tenant, at, &code);
                                        (Event::Click(e), code, String::new())
                                    }
                                    EventKind::Rank => {
                                        let keyword = pick(&mut rng, &seconds);
                                        let e = RankEvent {
                                            schema_version: SCHEMA_VERSION,
                                            event_id: id.clone(),
                                            tenant_id: tenant.clone(),
                                            occurred_at: at,
                                            campaign_id: first.clone(),
                                            keyword: keyword.clone(),
                                            geo: "us".into(),
                                            engine: "google".into(),
                                            device: "desktop".into(),
                                            url: None,
                                            position: Some(3),
                                        };
                                        (Event::Rank(e), first, keyword)
                                    }
                                    EventKind::Crawl => {
                                        let host = pick(&mut rng, &hosts);
                                        let e = CrawlEvent {
                                            schema_version: SCHEMA_VERSION,
                                            event_id: id.clone(),
                                            tenant_id: tenant.clone(),
                                            occurred_at: at,
                                            campaign_id: first.clone(),
                                            url: format!("https://{host}/page"),
                                            status_code: 200,
                                            fetch_ms: 5,
                                            bytes: 100,
                                            content_hash: None,
                                        };
                                        (Event::Crawl(e), first, host)
                                    }
                                };
                                (event, (tenant, a, b, secs, id))
                            })
                            .collect()
                    })
                    .collect();
                let mut expected: Vec<(i32, i64, &Key)> = (0..)
                    .zip(&generated)
                    .flat_map(|(p, events)| (0..).zip(events).map(move |(o, (_, key))| (p, o, key)))
                    .collect();
                expected.sort_by(|x, y| x.2.cmp(y.2));
                let want: Vec<(i32, i64)> = expected.iter().map(|(p, o, _)| (*p, *o)).collect();
                let batches: Vec<PartitionBatch> = (0..)
                    .zip(&generated)
                    .map(|(p, events)| {
                        let mut batch = PartitionBatch::new("events", p, None);
                        for (offset, (e, _)) in (0..).zip(events) {
                            batch.add(e.clone(), offset).unwrap();
                        }
                        batch
                    })
                    .collect();
                let refs: Vec<&PartitionBatch> = batches.iter().collect();
                let got: Vec<(i32, i64)> = sorted_rows(&refs, kind)
                    .iter()
                    .map(|(b, offset, _)| (refs[*b].partition, *offset))
                    .collect();
                assert_eq!(got, want, "{kind}, round {round}");
            }
        }
    }

    #[test]
    fn the_insert_names_every_column_in_the_rows_order() {
        assert_eq!(
            insert_sql(EventKind::Click),
            "INSERT INTO click_events(event_id,tenant_id,occurred_at,occurred_at_micros,short_code,\
             referrer,country,user_agent,visitor_id,kafka_topic,kafka_partition,kafka_offset,\
             ingested_at) FORMAT RowBinary"
        );
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
