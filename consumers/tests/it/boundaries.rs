//! Events at the extreme accepted values (issue 13, point 2) through the real broker into
//! `sluice-ingest`: `bytes` and `fetch_ms` of 4294967295, positions 1 and 100, status codes 100 and
//! 599, every string at its length limit (random, so PostgreSQL cannot compress the keys), event times
//! at both edges of the accepted window. PostgreSQL and ClickHouse must hold exactly the sums computed
//! here in `i128`, and the verifier's whole snapshot. Last, PostgreSQL itself shows that a key of
//! `PG_KEY_TEXT_BYTES` random bytes fits the `rank_daily` primary key and a larger one can fail.

use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use sluice_loadtest::verify::Expected;
use sluice_schemas::validate::PG_KEY_TEXT_BYTES;
use sluice_schemas::{ClickEvent, CrawlEvent, Encoding, Event, Limits, RankEvent};

use crate::support::TestStack;

#[tokio::test]
async fn extreme_accepted_values_sum_exactly_in_both_databases() -> anyhow::Result<()> {
    let stack = TestStack::new("bounds", 1).await?;
    let limits = Limits::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut text = |len: usize| -> String {
        (0..len)
            .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
            .collect()
    };
    let now = Utc::now().duration_trunc(TimeDelta::seconds(1))?;
    // The window's edges, with room for the seconds between here and decoding.
    let oldest = now - limits.max_past + TimeDelta::minutes(10);
    let newest = now + limits.max_future - TimeDelta::seconds(10);
    let hour = now.duration_trunc(TimeDelta::hours(1))? - TimeDelta::hours(1);

    let tenant = text(limits.max_id_len);
    let campaign = text(limits.max_id_len);
    let max = 4_294_967_295_i64;
    // A URL of exactly max_text_len bytes whose host (the crawl key's domain) is ~1900 bytes.
    let host: String = (0..30).map(|_| text(63)).collect::<Vec<_>>().join(".");
    let mut url = format!("https://{host}/");
    let path = text(limits.max_text_len - url.len());
    url.push_str(&path);
    assert_eq!(url.len(), limits.max_text_len);
    let crawl = |id: &str, status_code: i32, fetch_ms: i64, bytes: i64, at| {
        Event::Crawl(CrawlEvent {
            schema_version: 1,
            event_id: id.into(),
            tenant_id: tenant.clone(),
            occurred_at: at,
            campaign_id: campaign.clone(),
            url: url.clone(),
            status_code,
            fetch_ms,
            bytes,
            content_hash: Some("h".repeat(limits.max_text_len)),
        })
    };
    let crawls = [
        crawl("c1", 100, max, max, hour),
        crawl("c2", 599, max, max, hour + TimeDelta::minutes(59)),
        crawl("c3", 200, 0, 0, hour + TimeDelta::seconds(1)),
        crawl("c4", 301, max, 0, hour + TimeDelta::minutes(30)),
        crawl(
            "c5",
            404,
            0,
            max,
            hour + TimeDelta::microseconds(3_599_999_999),
        ),
        crawl("c6", 599, max, max, hour + TimeDelta::minutes(1)),
    ];
    let (keyword, geo, engine, device) = (
        text(limits.max_text_len),
        text(limits.max_label_len),
        text(limits.max_label_len),
        text(limits.max_label_len),
    );
    let rank = |id: &str, position: Option<i32>, at| {
        Event::Rank(RankEvent {
            schema_version: 1,
            event_id: id.into(),
            tenant_id: tenant.clone(),
            occurred_at: at,
            campaign_id: campaign.clone(),
            keyword: keyword.clone(),
            geo: geo.clone(),
            engine: engine.clone(),
            device: device.clone(),
            url: Some(url.clone()),
            position,
        })
    };
    let ranks = [
        rank("r1", Some(1), hour),
        rank("r2", Some(100), hour + TimeDelta::minutes(1)),
        rank("r3", None, hour + TimeDelta::minutes(2)),
    ];
    let click = |id: &str, at| {
        Event::Click(ClickEvent {
            schema_version: 1,
            event_id: id.into(),
            tenant_id: tenant.clone(),
            occurred_at: at,
            short_code: campaign.clone(),
            referrer: Some(url.clone()),
            country: Some(geo.clone()),
            user_agent: Some(keyword.clone()),
            visitor_id: Some(tenant.clone()),
        })
    };
    let mut edges = vec![
        click("k-oldest", oldest),
        click("k-newest", newest),
        crawl("c-oldest", 599, max, max, oldest),
        crawl("c-newest", 100, max, max, newest),
        rank("r-oldest", Some(100), oldest),
        rank("r-newest", Some(1), newest),
    ];
    // The edges' checks in a rank key of their own (the newest may fall on the hour's day).
    for event in &mut edges {
        if let Event::Rank(r) = event {
            r.device = "edge".into();
        }
    }
    let mut events: Vec<Event> = crawls.iter().chain(&ranks).chain(&edges).cloned().collect();
    events.push(click("k-mid", hour));

    let json = stack.producer(Encoding::Json)?;
    let bincode = stack.producer(Encoding::Bincode)?;
    for (i, event) in events.iter().enumerate() {
        if i % 2 == 0 {
            json.send(event).await?;
        } else {
            bincode.send(event).await?;
        }
    }
    let ingest = stack.spawn_ingest("bounds", &[])?;
    stack.wait_caught_up(Duration::from_secs(60)).await?;
    let status = ingest.terminate(Duration::from_secs(30))?;
    assert!(status.success(), "ingest exit status {status}");

    // The hour's sums, computed here in i128 from the six events.
    let six = [
        (100, max, max),
        (599, max, max),
        (200, 0, 0),
        (301, max, 0),
        (404, 0, max),
        (599, max, max),
    ];
    let fetch_sum: i128 = six.iter().map(|e| i128::from(e.1)).sum();
    let bytes_sum: i128 = six.iter().map(|e| i128::from(e.2)).sum();
    assert_eq!(
        (fetch_sum, bytes_sum),
        (4 * 4_294_967_295, 4 * 4_294_967_295)
    );
    let (pages, s2, s3, s4, s5, fetch_pg, fetch_max, bytes_pg): (i64, i64, i64, i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT pages, status_2xx, status_3xx, status_4xx, status_5xx, fetch_ms_sum, fetch_ms_max, bytes_sum
             FROM crawl_hourly WHERE hour = $1",
        )
        .bind(hour)
        .fetch_one(&stack.pg)
        .await?;
    assert_eq!((pages, s2, s3, s4, s5), (6, 1, 1, 1, 2));
    assert_eq!(
        (i128::from(fetch_pg), i128::from(bytes_pg)),
        (fetch_sum, bytes_sum)
    );
    assert_eq!(fetch_max, max);
    let (best, worst, checks): (Option<i16>, Option<i16>, i64) = sqlx::query_as(
        "SELECT best_position, worst_position, checks FROM rank_daily WHERE day = $1 AND device <> 'edge'",
    )
    .bind(hour.date_naive())
    .fetch_one(&stack.pg)
    .await?;
    assert_eq!((best, worst, checks), (Some(1), Some(100), 3));
    let db = &stack.ch_database;
    let ch_sums: String = stack
        .ch
        .query(&format!(
            "SELECT concat(toString(sum(fetch_ms)), ' ', toString(sum(bytes)), ' ', toString(max(fetch_ms)))
             FROM {db}.crawl_events FINAL WHERE occurred_at >= toDateTime({h}) AND occurred_at < toDateTime({h} + 3600)",
            h = hour.timestamp()
        ))
        .fetch_one()
        .await?;
    assert_eq!(ch_sums, format!("{fetch_sum} {bytes_sum} {max}"));
    // Everything, byte for byte, including the maximum-length keys and the window's edges.
    stack
        .assert_matches(&Expected::from_events(&events))
        .await?;

    // PostgreSQL's own verdict on the key budget: six random texts of PG_KEY_TEXT_BYTES bytes in all,
    // each long enough for a 4-byte length header and most ending 1 byte past a 4-byte boundary (3 bytes
    // of alignment after each), fit the
    // rank_daily primary key; 80 bytes more do not.
    let insert = |lens: [usize; 6], text: &mut dyn FnMut(usize) -> String| {
        let t: Vec<String> = lens.iter().map(|&l| text(l)).collect();
        sqlx::query(
            "INSERT INTO rank_daily (tenant_id, campaign_id, keyword, geo, engine, device, day,
                                     last_position, last_occurred_at, last_event_id, best_position,
                                     worst_position, checks)
             VALUES ($1, $2, $3, $4, $5, $6, '2026-01-01', NULL, now(), 'x', NULL, NULL, 1)",
        )
        .bind(t[0].clone())
        .bind(t[1].clone())
        .bind(t[2].clone())
        .bind(t[3].clone())
        .bind(t[4].clone())
        .bind(t[5].clone())
    };
    let fit = [129, 129, 129, 129, 129, 1995];
    assert_eq!(fit.iter().sum::<usize>(), PG_KEY_TEXT_BYTES);
    insert(fit, &mut text).execute(&stack.pg).await?;
    let too_big = [129, 129, 129, 129, 129, 2075];
    let err = insert(too_big, &mut text)
        .execute(&stack.pg)
        .await
        .expect_err("a key past the B-tree limit");
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("54000"), "{err}");
    stack.cleanup().await
}
