//! Expected-versus-actual for the whole data path. [`Expected::from_events`] folds the published events
//! into the contract's aggregates — counting each `event_id` once, whatever the number of deliveries —
//! written independently of `sluice-aggregator` (plain ordered maps and explicit folds). [`Actual`] reads
//! the same shapes back from PostgreSQL and ClickHouse (`FINAL`, as analysts must), and [`diff`] lists
//! the first differences in readable form.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use clickhouse::Row;
use serde::Deserialize;
use sluice_schemas::Event;
use sqlx::PgPool;

pub type ClickKey = (String, String, NaiveDate);
pub type RankKey = (String, String, String, String, String, String, NaiveDate);
/// (last_position, best_position, worst_position, checks)
pub type RankValue = (Option<i16>, Option<i16>, Option<i16>, i64);
pub type CrawlKey = (String, String, String, DateTime<Utc>);
/// (pages, 2xx, 3xx, 4xx, 5xx, fetch_ms_sum, fetch_ms_max, bytes_sum)
pub type CrawlValue = (i64, i64, i64, i64, i64, i64, i64, i64);

/// One raw ClickHouse row, as analysts read it (Kafka coordinates and ingest time left out: they are
/// facts of the delivery, not of the event).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Row, Deserialize)]
pub struct RankRaw {
    pub event_id: String,
    pub tenant_id: String,
    pub occurred_at: u32,
    pub occurred_at_micros: u32,
    pub campaign_id: String,
    pub keyword: String,
    pub geo: String,
    pub engine: String,
    pub device: String,
    pub url: Option<String>,
    pub position: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Row, Deserialize)]
pub struct CrawlRaw {
    pub event_id: String,
    pub tenant_id: String,
    pub occurred_at: u32,
    pub occurred_at_micros: u32,
    pub campaign_id: String,
    pub url: String,
    pub domain: String,
    pub status_code: u16,
    pub fetch_ms: u32,
    pub bytes: u64,
    pub content_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Row, Deserialize)]
pub struct ClickRaw {
    pub event_id: String,
    pub tenant_id: String,
    pub occurred_at: u32,
    pub occurred_at_micros: u32,
    pub short_code: String,
    pub referrer: Option<String>,
    pub country: Option<String>,
    pub user_agent: Option<String>,
    pub visitor_id: Option<String>,
}

/// Everything the databases must hold, in comparable form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub click_daily: BTreeMap<ClickKey, i64>,
    pub rank_daily: BTreeMap<RankKey, RankValue>,
    pub crawl_hourly: BTreeMap<CrawlKey, CrawlValue>,
    pub rank_events: Vec<RankRaw>,
    pub crawl_events: Vec<CrawlRaw>,
    pub click_events: Vec<ClickRaw>,
}

/// The oracle.
#[derive(Debug)]
pub struct Expected;

fn seconds_and_micros(ts: DateTime<Utc>) -> (u32, u32) {
    (ts.timestamp() as u32, ts.timestamp_subsec_micros())
}

impl Expected {
    /// Computes the expected snapshot from published events (duplicates by `event_id` count once).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Snapshot {
        let mut seen = BTreeSet::new();
        let mut snap = Snapshot::default();
        // All checks of a rank key, folded at the end.
        // (occurred_at, event_id, position) of every check of a key.
        type Check = (DateTime<Utc>, String, Option<i32>);
        let mut rank_checks: BTreeMap<RankKey, Vec<Check>> = BTreeMap::new();
        for event in events {
            if !seen.insert(event.event_id().to_owned()) {
                continue;
            }
            match event {
                Event::Click(e) => {
                    let key = e.click_daily_key();
                    *snap.click_daily.entry(key).or_default() += 1;
                    let (s, us) = seconds_and_micros(e.occurred_at);
                    snap.click_events.push(ClickRaw {
                        event_id: e.event_id.clone(),
                        tenant_id: e.tenant_id.clone(),
                        occurred_at: s,
                        occurred_at_micros: us,
                        short_code: e.short_code.clone(),
                        referrer: e.referrer.clone(),
                        country: e.country.clone(),
                        user_agent: e.user_agent.clone(),
                        visitor_id: e.visitor_id.clone(),
                    });
                }
                Event::Rank(e) => {
                    let check = (e.occurred_at, e.event_id.clone(), e.position);
                    rank_checks
                        .entry(e.rank_daily_key())
                        .or_default()
                        .push(check);
                    let (s, us) = seconds_and_micros(e.occurred_at);
                    snap.rank_events.push(RankRaw {
                        event_id: e.event_id.clone(),
                        tenant_id: e.tenant_id.clone(),
                        occurred_at: s,
                        occurred_at_micros: us,
                        campaign_id: e.campaign_id.clone(),
                        keyword: e.keyword.clone(),
                        geo: e.geo.clone(),
                        engine: e.engine.clone(),
                        device: e.device.clone(),
                        url: e.url.clone(),
                        position: e.position.map(|p| p as u8),
                    });
                }
                Event::Crawl(e) => {
                    let domain = url::Url::parse(&e.url)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_lowercase))
                        .unwrap_or_default();
                    let hour = e
                        .occurred_at
                        .with_nanosecond(0)
                        .and_then(|t| t.with_second(0))
                        .and_then(|t| t.with_minute(0))
                        .unwrap_or(e.occurred_at);
                    let key = (
                        e.tenant_id.clone(),
                        e.campaign_id.clone(),
                        domain.clone(),
                        hour,
                    );
                    let v = snap.crawl_hourly.entry(key).or_default();
                    v.0 += 1;
                    match e.status_code {
                        200..=299 => v.1 += 1,
                        300..=399 => v.2 += 1,
                        400..=499 => v.3 += 1,
                        500..=599 => v.4 += 1,
                        _ => {}
                    }
                    v.5 += e.fetch_ms;
                    v.6 = v.6.max(e.fetch_ms);
                    v.7 += e.bytes;
                    let (s, us) = seconds_and_micros(e.occurred_at);
                    snap.crawl_events.push(CrawlRaw {
                        event_id: e.event_id.clone(),
                        tenant_id: e.tenant_id.clone(),
                        occurred_at: s,
                        occurred_at_micros: us,
                        campaign_id: e.campaign_id.clone(),
                        url: e.url.clone(),
                        domain,
                        status_code: e.status_code as u16,
                        fetch_ms: e.fetch_ms as u32,
                        bytes: e.bytes as u64,
                        content_hash: e.content_hash.clone(),
                    });
                }
            }
        }
        for (key, mut checks) in rank_checks {
            // Newest (occurred_at, event_id) last.
            checks.sort();
            let positions: Vec<i16> = checks
                .iter()
                .filter_map(|c| c.2)
                .map(|p| p as i16)
                .collect();
            let last = checks.last().and_then(|c| c.2).map(|p| p as i16);
            let value = (
                last,
                positions.iter().min().copied(),
                positions.iter().max().copied(),
                checks.len() as i64,
            );
            snap.rank_daily.insert(key, value);
        }
        snap.rank_events.sort();
        snap.crawl_events.sort();
        snap.click_events.sort();
        snap
    }
}

/// Reads the databases.
#[derive(Debug)]
pub struct Actual;

impl Actual {
    pub async fn read(pg: &PgPool, ch: &clickhouse::Client) -> anyhow::Result<Snapshot> {
        let mut snap = Snapshot::default();
        let clicks: Vec<(String, String, NaiveDate, i64)> =
            sqlx::query_as("SELECT tenant_id, short_code, day, clicks FROM click_daily")
                .fetch_all(pg)
                .await?;
        snap.click_daily = clicks
            .into_iter()
            .map(|(t, s, d, c)| ((t, s, d), c))
            .collect();
        #[allow(clippy::type_complexity)]
        let ranks: Vec<(String, String, String, String, String, String, NaiveDate, Option<i16>, Option<i16>, Option<i16>, i64)> =
            sqlx::query_as(
                "SELECT tenant_id, campaign_id, keyword, geo, engine, device, day, last_position, best_position,
                        worst_position, checks FROM rank_daily",
            )
            .fetch_all(pg)
            .await?;
        snap.rank_daily = ranks
            .into_iter()
            .map(|(t, c, k, g, e, d, day, last, best, worst, n)| {
                ((t, c, k, g, e, d, day), (last, best, worst, n))
            })
            .collect();
        #[allow(clippy::type_complexity)]
        let crawls: Vec<(String, String, String, DateTime<Utc>, i64, i64, i64, i64, i64, i64, i64, i64)> =
            sqlx::query_as(
                "SELECT tenant_id, campaign_id, domain, hour, pages, status_2xx, status_3xx, status_4xx, status_5xx,
                        fetch_ms_sum, fetch_ms_max, bytes_sum FROM crawl_hourly",
            )
            .fetch_all(pg)
            .await?;
        snap.crawl_hourly = crawls
            .into_iter()
            .map(|(t, c, d, h, p, s2, s3, s4, s5, fs, fm, b)| {
                ((t, c, d, h), (p, s2, s3, s4, s5, fs, fm, b))
            })
            .collect();
        snap.rank_events = ch
            .query(
                "SELECT event_id, tenant_id, occurred_at, occurred_at_micros, campaign_id, keyword, geo, engine, device,
                        url, position FROM rank_events FINAL ORDER BY event_id",
            )
            .fetch_all()
            .await
            .context("reading rank_events")?;
        snap.crawl_events = ch
            .query(
                "SELECT event_id, tenant_id, occurred_at, occurred_at_micros, campaign_id, url, domain, status_code,
                        fetch_ms, bytes, content_hash FROM crawl_events FINAL ORDER BY event_id",
            )
            .fetch_all()
            .await
            .context("reading crawl_events")?;
        snap.click_events = ch
            .query(
                "SELECT event_id, tenant_id, occurred_at, occurred_at_micros, short_code, referrer, country, user_agent,
                        visitor_id FROM click_events FINAL ORDER BY event_id",
            )
            .fetch_all()
            .await
            .context("reading click_events")?;
        snap.rank_events.sort();
        snap.crawl_events.sort();
        snap.click_events.sort();
        Ok(snap)
    }
}

/// Human-readable differences (at most `limit` per table); empty when the snapshots are equal.
pub fn diff(expected: &Snapshot, actual: &Snapshot, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    diff_maps(
        "click_daily",
        &expected.click_daily,
        &actual.click_daily,
        limit,
        &mut out,
    );
    diff_maps(
        "rank_daily",
        &expected.rank_daily,
        &actual.rank_daily,
        limit,
        &mut out,
    );
    diff_maps(
        "crawl_hourly",
        &expected.crawl_hourly,
        &actual.crawl_hourly,
        limit,
        &mut out,
    );
    diff_rows(
        "rank_events",
        &expected.rank_events,
        &actual.rank_events,
        limit,
        &mut out,
    );
    diff_rows(
        "crawl_events",
        &expected.crawl_events,
        &actual.crawl_events,
        limit,
        &mut out,
    );
    diff_rows(
        "click_events",
        &expected.click_events,
        &actual.click_events,
        limit,
        &mut out,
    );
    out
}

fn diff_maps<K: Ord + Debug, V: PartialEq + Debug>(
    table: &str,
    expected: &BTreeMap<K, V>,
    actual: &BTreeMap<K, V>,
    limit: usize,
    out: &mut Vec<String>,
) {
    let mut n = 0;
    for (k, v) in expected {
        match actual.get(k) {
            Some(a) if a == v => {}
            Some(a) => {
                n += 1;
                if n <= limit {
                    out.push(format!("{table}: {k:?}: expected {v:?}, found {a:?}"));
                }
            }
            None => {
                n += 1;
                if n <= limit {
                    out.push(format!("{table}: {k:?}: expected {v:?}, missing"));
                }
            }
        }
    }
    for (k, a) in actual {
        if !expected.contains_key(k) {
            n += 1;
            if n <= limit {
                out.push(format!("{table}: {k:?}: unexpected row {a:?}"));
            }
        }
    }
    if n > limit {
        out.push(format!("{table}: … {} more differences", n - limit));
    }
}

fn diff_rows<R: Ord + Debug>(
    table: &str,
    expected: &[R],
    actual: &[R],
    limit: usize,
    out: &mut Vec<String>,
) {
    if expected.len() != actual.len() {
        out.push(format!(
            "{table}: expected {} rows, found {}",
            expected.len(),
            actual.len()
        ));
    }
    let e: BTreeSet<&R> = expected.iter().collect();
    let a: BTreeSet<&R> = actual.iter().collect();
    for (i, r) in e.difference(&a).enumerate().take(limit) {
        out.push(format!("{table}: missing #{i}: {r:?}"));
    }
    for (i, r) in a.difference(&e).enumerate().take(limit) {
        out.push(format!("{table}: unexpected #{i}: {r:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_schemas::{ClickEvent, CrawlEvent, RankEvent};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn rank(id: &str, at: &str, position: Option<i32>) -> Event {
        Event::Rank(RankEvent {
            schema_version: 1,
            event_id: id.into(),
            tenant_id: "t".into(),
            occurred_at: t(at),
            campaign_id: "c".into(),
            keyword: "k".into(),
            geo: "us".into(),
            engine: "google".into(),
            device: "mobile".into(),
            url: None,
            position,
        })
    }

    #[test]
    fn oracle_folds_by_hand_computed_values() {
        let events = vec![
            rank("r1", "2026-01-01T10:00:00Z", Some(8)),
            rank("r2", "2026-01-01T12:00:00Z", None),
            rank("r3", "2026-01-01T11:00:00Z", Some(3)),
            rank("r2", "2026-01-01T12:00:00Z", None), // duplicate delivery
            rank("r4", "2026-01-02T00:00:00Z", Some(50)),
            Event::Crawl(CrawlEvent {
                schema_version: 1,
                event_id: "c1".into(),
                tenant_id: "t".into(),
                occurred_at: t("2026-01-01T10:59:59.5Z"),
                campaign_id: "c".into(),
                url: "https://WWW.Example.COM/a".into(),
                status_code: 503,
                fetch_ms: 40,
                bytes: 7,
                content_hash: None,
            }),
            Event::Click(ClickEvent {
                schema_version: 1,
                event_id: "k1".into(),
                tenant_id: "t".into(),
                occurred_at: t("2026-01-01T23:59:59.999999Z"),
                short_code: "s".into(),
                referrer: None,
                country: Some("de".into()),
                user_agent: None,
                visitor_id: None,
            }),
        ];
        let snap = Expected::from_events(&events);
        let day1 = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let key = |d| {
            (
                "t".to_string(),
                "c".to_string(),
                "k".to_string(),
                "us".to_string(),
                "google".to_string(),
                "mobile".to_string(),
                d,
            )
        };
        assert_eq!(
            snap.rank_daily.get(&key(day1)),
            Some(&(None, Some(3), Some(8), 3))
        );
        assert_eq!(
            snap.rank_daily
                .get(&key(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap())),
            Some(&(Some(50), Some(50), Some(50), 1))
        );
        assert_eq!(snap.rank_events.len(), 4);
        let crawl_key = (
            "t".to_string(),
            "c".to_string(),
            "www.example.com".to_string(),
            t("2026-01-01T10:00:00Z"),
        );
        assert_eq!(
            snap.crawl_hourly.get(&crawl_key),
            Some(&(1, 0, 0, 0, 1, 40, 40, 7))
        );
        assert_eq!(
            snap.click_daily.get(&("t".into(), "s".into(), day1)),
            Some(&1)
        );
        assert_eq!(snap.click_events[0].occurred_at_micros, 999_999);
        assert!(diff(&snap, &snap, 5).is_empty());
        let mut other = snap.clone();
        other.click_daily.insert(("t".into(), "s".into(), day1), 2);
        assert_eq!(diff(&snap, &other, 5).len(), 1);
    }
}
