//! Producers in other languages against the real stack (`make test-producers`; issue 17). The shared
//! vectors (`schemas/vectors/events.json`, dates shifted to recent days as its README says) go through
//! each language's example, `producers/examples/<lang>/run.sh send …`, into a fresh set of 6-partition
//! topics; then every one of them again through a *different* language's example — the retry, same
//! event ids. `sluice-ingest` runs until caught up, and PostgreSQL's aggregate rows and ClickHouse's
//! `FINAL` counts must equal the vectors' `expected` exactly: nothing counted twice. Every delivery
//! must land on the partition the vectors give (computed by Kafka's Java client).
//!
//! Ignored by default (it needs the toolchains of all four languages and installs their packages);
//! `make test-producers` runs it with `--ignored`. A missing toolchain fails the test, with the
//! example's own message; nothing is skipped. `SLUICE_PRODUCER_LANGUAGES=python,go,…` makes the listed
//! languages mandatory (a missing example directory then fails the test too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{NaiveDate, TimeDelta, Utc};
use serde_json::Value;
use sluice_consumers::routing::kafka_partition;
use sluice_schemas::EventKind;

use crate::support::TestStack;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `producers/examples/<lang>/` directories with a `run.sh`, sorted.
fn languages() -> anyhow::Result<Vec<String>> {
    let dir = repo().join("producers/examples");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.path().join("run.sh").is_file() {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    if let Ok(required) = std::env::var("SLUICE_PRODUCER_LANGUAGES") {
        for lang in required.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            ensure!(
                found.iter().any(|f| f == lang),
                "SLUICE_PRODUCER_LANGUAGES names {lang}, but producers/examples/{lang}/run.sh does not exist (found: {found:?})"
            );
        }
    }
    ensure!(
        found.len() >= 2,
        "need at least two producer examples (the retry goes through another language); found {found:?}"
    );
    Ok(found)
}

/// The vector days shifted to three and two days ago (schemas/vectors/README.md, "Dates").
fn shifted_vectors() -> anyhow::Result<Value> {
    let path = repo().join("schemas/vectors/events.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let base = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let days = (Utc::now().date_naive() - TimeDelta::days(3)) - base;
    let shift = |s: &mut Value| {
        let text = s.as_str().expect("a date string");
        let date = NaiveDate::parse_from_str(&text[..10], "%Y-%m-%d").expect("YYYY-MM-DD…");
        *s = Value::String(format!(
            "{}{}",
            (date + days).format("%Y-%m-%d"),
            &text[10..]
        ));
    };
    for vector in v["valid"].as_array_mut().unwrap() {
        shift(&mut vector["event"]["occurred_at"]);
    }
    for rows in v["expected"]["postgres"]
        .as_object_mut()
        .unwrap()
        .values_mut()
    {
        for row in rows.as_array_mut().unwrap() {
            for field in ["day", "hour", "last_occurred_at"] {
                if row.get(field).is_some() {
                    shift(&mut row[field]);
                }
            }
        }
    }
    Ok(v)
}

/// Runs `<lang>/run.sh send …`; returns the delivery lines, checked against the vectors: every valid
/// vector exactly once, on its kind's topic and on its partition.
fn send(stack: &TestStack, lang: &str, vectors_file: &Path, vectors: &Value) -> anyhow::Result<()> {
    let run = repo().join("producers/examples").join(lang).join("run.sh");
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&run)
        .arg("send")
        .args(["--brokers", &stack.brokers])
        .arg("--vectors")
        .arg(vectors_file)
        .args(["--topic-rank", stack.topic(EventKind::Rank)])
        .args(["--topic-crawl", stack.topic(EventKind::Crawl)])
        .args(["--topic-click", stack.topic(EventKind::Click)])
        .output()
        .with_context(|| format!("running {}", run.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{lang}: `run.sh send` exited with {}:\n{}\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!("{lang}: send took {:.1?}", started.elapsed());
    let mut delivered: BTreeMap<String, Value> = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let d: Value = serde_json::from_str(line)
            .with_context(|| format!("{lang}: not a JSON line: {line}"))?;
        let name = d["name"].as_str().context("no name")?.to_owned();
        ensure!(
            delivered.insert(name.clone(), d).is_none(),
            "{lang}: {name} reported twice"
        );
    }
    let valid = vectors["valid"].as_array().unwrap();
    ensure!(
        delivered.len() == valid.len(),
        "{lang}: {} deliveries for {} vectors:\n{stdout}",
        delivered.len(),
        valid.len()
    );
    for vector in valid {
        let name = vector["name"].as_str().unwrap();
        let d = delivered
            .get(name)
            .with_context(|| format!("{lang}: {name} not reported"))?;
        let kind: EventKind = vector["kind"].as_str().unwrap().parse().unwrap();
        ensure!(
            d["topic"] == stack.topic(kind),
            "{lang}: {name} went to {}",
            d["topic"]
        );
        ensure!(
            d["partition"] == vector["partition"],
            "{lang}: {name} (key {}) went to partition {}, the vectors say {}",
            vector["key"],
            d["partition"],
            vector["partition"]
        );
        ensure!(
            d["offset"].as_i64().is_some_and(|o| o >= 0),
            "{lang}: {name}: offset {}",
            d["offset"]
        );
    }
    Ok(())
}

/// PostgreSQL's aggregate rows as the vectors write them (dates as text, NULL as null), sorted.
async fn postgres_rows(stack: &TestStack, table: &str) -> anyhow::Result<Vec<Value>> {
    const TS: &str = r#"YYYY-MM-DD"T"HH24:MI:SS.US"Z""#;
    let select = match table {
        "rank_daily" => format!(
            "json_build_object('tenant_id', tenant_id, 'campaign_id', campaign_id, 'keyword', keyword,
               'geo', geo, 'engine', engine, 'device', device, 'day', to_char(day, 'YYYY-MM-DD'),
               'last_position', last_position,
               'last_occurred_at', to_char(last_occurred_at AT TIME ZONE 'UTC', '{TS}'),
               'last_event_id', last_event_id, 'best_position', best_position,
               'worst_position', worst_position, 'checks', checks)"
        ),
        "crawl_hourly" => r#"json_build_object('tenant_id', tenant_id, 'campaign_id', campaign_id,
               'domain', domain, 'hour', to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
               'pages', pages, 'status_2xx', status_2xx, 'status_3xx', status_3xx,
               'status_4xx', status_4xx, 'status_5xx', status_5xx, 'fetch_ms_sum', fetch_ms_sum,
               'fetch_ms_max', fetch_ms_max, 'bytes_sum', bytes_sum)"#
            .to_owned(),
        "click_daily" => "json_build_object('tenant_id', tenant_id, 'short_code', short_code,
               'day', to_char(day, 'YYYY-MM-DD'), 'clicks', clicks)"
            .to_owned(),
        other => bail!("unknown table {other}"),
    };
    let texts: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT ({select})::text FROM {table}"
    )))
    .fetch_all(&stack.pg)
    .await?;
    let mut rows = texts
        .into_iter()
        .map(|(t,)| serde_json::from_str(&t))
        .collect::<Result<Vec<Value>, _>>()?;
    rows.sort_by_key(|r| r.to_string());
    Ok(rows)
}

/// One language's round: publish through `lang`, retry through `retry_lang`, ingest, compare.
async fn round(lang: &str, retry_lang: &str, vectors: &Value) -> anyhow::Result<()> {
    let stack = TestStack::new(
        &format!("producers_{lang}"),
        vectors["partitions"].as_i64().unwrap() as i32,
    )
    .await?;
    let vectors_file = stack.log_dir.join("events.json");
    std::fs::write(&vectors_file, serde_json::to_vec_pretty(vectors)?)?;

    send(&stack, lang, &vectors_file, vectors)?;
    send(&stack, retry_lang, &vectors_file, vectors)?;

    let ingest = stack.spawn_ingest("main", &[])?;
    stack.wait_caught_up(Duration::from_secs(60)).await?;
    let status = ingest.terminate(Duration::from_secs(30))?;
    ensure!(status.success(), "ingest exit status {status}");

    let expected = &vectors["expected"];
    for table in ["rank_daily", "crawl_hourly", "click_daily"] {
        let mut want = expected["postgres"][table].as_array().unwrap().clone();
        want.sort_by_key(|r| r.to_string());
        let got = postgres_rows(&stack, table).await?;
        ensure!(
            got == want,
            "{lang} then {retry_lang}: PostgreSQL {table} differs:\n got: {}\nwant: {}",
            serde_json::to_string_pretty(&got)?,
            serde_json::to_string_pretty(&want)?
        );
    }
    for (table, want) in expected["clickhouse"].as_object().unwrap() {
        let got: u64 = stack
            .ch
            .query(&format!("SELECT count() FROM {table} FINAL"))
            .fetch_one()
            .await?;
        ensure!(
            Some(got) == want.as_u64(),
            "{lang} then {retry_lang}: ClickHouse {table} has {got} rows, want {want}"
        );
    }
    stack.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the producer examples' toolchains and packages: run by `make test-producers`"]
async fn every_language_publishes_the_vectors_and_a_retry_through_another_counts_once(
) -> anyhow::Result<()> {
    let vectors = shifted_vectors()?;
    // The Rust side agrees with the vectors' partitions too (schemas/tests/vectors.rs checks the rest).
    let partitions = vectors["partitions"].as_i64().unwrap() as i32;
    for vector in vectors["valid"].as_array().unwrap() {
        let key = vector["key"].as_str().unwrap();
        assert_eq!(
            i64::from(kafka_partition(key.as_bytes(), partitions)),
            vector["partition"].as_i64().unwrap(),
            "routing::kafka_partition({key:?})"
        );
    }
    let langs = languages()?;
    eprintln!("producer languages: {langs:?}");
    for (i, lang) in langs.iter().enumerate() {
        let retry = &langs[(i + 1) % langs.len()];
        let started = Instant::now();
        round(lang, retry, &vectors).await?;
        eprintln!(
            "{lang} (retry through {retry}): passed in {:.1?}",
            started.elapsed()
        );
    }
    Ok(())
}
