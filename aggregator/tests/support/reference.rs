//! The contract's aggregates (docs/events.md) computed the naive way — ordered maps, i128 sums, every
//! distinct event folded once — independently of `sluice-aggregator`'s batch code: the oracle of the
//! batch property test (`tests/batch_properties.rs`) and of the fuzz target (`fuzz/`, included by path).
//! [`merged`] reads batches' rows back in the same shapes.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sluice_aggregator::model::{CrawlHourly, RankDaily};
use sluice_aggregator::PartitionBatch;
use sluice_schemas::Event;

/// The lowercase host of a URL (`""` when it has none): `crawl_hourly.domain`.
pub(crate) fn host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_lowercase))
        .unwrap_or_default()
}

pub(crate) type RankKey = (String, String, String, String, String, String, NaiveDate);
pub(crate) type CrawlKey = (String, String, String, DateTime<Utc>);
/// (last_position, last_occurred_at, last_event_id, best, worst, checks)
pub(crate) type RankRow = (
    Option<i32>,
    DateTime<Utc>,
    String,
    Option<i32>,
    Option<i32>,
    i128,
);

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Totals {
    pub(crate) clicks: BTreeMap<(String, String, NaiveDate), i128>,
    pub(crate) ranks: BTreeMap<RankKey, RankRow>,
    /// pages, 2xx, 3xx, 4xx, 5xx, fetch_ms sum, fetch_ms max, bytes sum
    pub(crate) crawls: BTreeMap<CrawlKey, [i128; 8]>,
}

/// The naive fold over distinct events, independent of `sluice-aggregator`.
pub(crate) fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Totals {
    let mut t = Totals::default();
    // (occurred_at, event_id, position) of every check of a row.
    type Check = (DateTime<Utc>, String, Option<i32>);
    let mut checks: BTreeMap<RankKey, Vec<Check>> = BTreeMap::new();
    for event in events {
        match event {
            Event::Click(e) => {
                let key = e.click_daily_key();
                *t.clicks.entry(key).or_default() += 1;
            }
            Event::Rank(e) => {
                let check = (e.occurred_at, e.event_id.clone(), e.position);
                checks.entry(e.rank_daily_key()).or_default().push(check);
            }
            Event::Crawl(e) => {
                let host = host(&e.url);
                let secs = e.occurred_at.timestamp();
                let hour = DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0).expect("hour");
                let v = t
                    .crawls
                    .entry((e.tenant_id.clone(), e.campaign_id.clone(), host, hour))
                    .or_default();
                v[0] += 1;
                match e.status_code {
                    200..=299 => v[1] += 1,
                    300..=399 => v[2] += 1,
                    400..=499 => v[3] += 1,
                    500..=599 => v[4] += 1,
                    _ => {}
                }
                v[5] += i128::from(e.fetch_ms);
                v[6] = v[6].max(i128::from(e.fetch_ms));
                v[7] += i128::from(e.bytes);
            }
        }
    }
    for (key, mut list) in checks {
        list.sort();
        let positions: Vec<i32> = list.iter().filter_map(|c| c.2).collect();
        let (at, id, last) = list.last().cloned().expect("one check at least");
        let row = (
            last,
            at,
            id,
            positions.iter().min().copied(),
            positions.iter().max().copied(),
            list.len() as i128,
        );
        t.ranks.insert(key, row);
    }
    t
}

/// The rows of consecutive batches of one partition, merged as PostgreSQL's upserts merge them (with
/// the model's merge rules), in the fold's shapes.
pub(crate) fn merged(batches: &[&PartitionBatch]) -> Totals {
    let mut clicks = BTreeMap::new();
    let mut ranks: BTreeMap<RankKey, RankDaily> = BTreeMap::new();
    let mut crawls: BTreeMap<CrawlKey, CrawlHourly> = BTreeMap::new();
    for batch in batches {
        for (k, v) in &batch.clicks {
            *clicks
                .entry((k.tenant_id.clone(), k.short_code.clone(), k.day))
                .or_default() += i128::from(*v);
        }
        for (k, v) in &batch.ranks {
            let text = [&k.tenant_id, &k.campaign_id, &k.keyword, &k.geo, &k.engine];
            let [tenant, campaign, keyword, geo, engine] = text.map(String::clone);
            let key = (
                tenant,
                campaign,
                keyword,
                geo,
                engine,
                k.device.clone(),
                k.day,
            );
            match ranks.get_mut(&key) {
                Some(row) => row.merge(v),
                None => {
                    ranks.insert(key, v.clone());
                }
            }
        }
        for (k, v) in &batch.crawls {
            let key = (
                k.tenant_id.clone(),
                k.campaign_id.clone(),
                k.domain.clone(),
                k.hour,
            );
            crawls.entry(key).or_default().merge(v);
        }
    }
    Totals {
        clicks,
        ranks: ranks
            .into_iter()
            .map(|(k, v)| {
                let row = (
                    v.last_position.map(i32::from),
                    v.last_occurred_at,
                    v.last_event_id,
                    v.best_position.map(i32::from),
                    v.worst_position.map(i32::from),
                    i128::from(v.checks),
                );
                (k, row)
            })
            .collect(),
        crawls: crawls
            .into_iter()
            .map(|(k, v)| (k, v.columns().map(i128::from)))
            .collect(),
    }
}
