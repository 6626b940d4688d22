//! The poll loop. One thread owns the rdkafka `BaseConsumer` and does all per-record work: decode,
//! validate, fold into the partition's batch. Everything slow happens elsewhere: flushes run on the
//! Tokio runtime while the loop keeps consuming into fresh batches (at most one flush in flight, so
//! flushes never overlap); the loop only checks for their outcomes between polls. When buffered bytes
//! pass the budget the loop flushes early, and while a flush is still running it pauses fetching but
//! keeps polling, so the group never ejects it. On shutdown it stops fetching, flushes what it holds,
//! and returns within the configured deadline; anything not flushed by then was never committed and is
//! replayed by whoever owns the partition next.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use sluice_aggregator::controller::{ControllerConfig, FlushController};
use sluice_aggregator::flush::RetryPolicy;
use sluice_aggregator::sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use sluice_aggregator::sinks::dead_letter::{DeadLetter, DeadLetterSink};
use sluice_aggregator::sinks::postgres::{PostgresSink, PARTITION_MONTHS_AHEAD};
use sluice_aggregator::{Flusher, Offered, SinkSet};
use sluice_schemas::{decode, Encoding, EventKind, Limits, RejectReason, ENCODING_HEADER};

use crate::config::{is_secret_key, Config, StartFrom};
use crate::metrics::{
    BUFFERED_BYTES, BUFFERED_EVENTS, BUFFERED_KEYS, DEDUP_KEYS, DUPLICATES, EVENTS_AGGREGATED,
    FLUSH_INTERVAL_SECONDS, OLDEST_UNCOMMITTED_AGE, PAUSED, READY, RECORDS_CONSUMED,
    RECORDS_REJECTED, RECORDS_REPLAYED,
};
use crate::partitions::{IngestContext, Partitions, Topics};
use crate::routing::{self, MisroutedCounts};
use crate::telemetry::{self, Health};

/// Records handled per loop turn before housekeeping (flush checks, metrics) runs.
const RECORDS_PER_TURN: usize = 2048;
/// Rejections logged per second; the rest are counted and summarized.
const REJECT_LOGS_PER_SECOND: u32 = 20;
/// Misrouted records logged per second (they are not refused, so they can be the whole stream).
const MISROUTED_LOGS_PER_SECOND: u32 = 2;

/// Builds the sinks from the config.
pub fn sinks(config: &Config) -> anyhow::Result<SinkSet> {
    let mut postgres = PostgresSink::connect(
        &config.postgres_url,
        config.postgres_password()?.as_deref(),
        &config.group_id,
        config.postgres_max_connections,
    )?;
    if !config.postgres_aggregates_enabled {
        postgres = postgres.without_aggregates();
    }
    let clickhouse = config
        .clickhouse_enabled
        .then(|| -> anyhow::Result<ClickHouseSink> {
            Ok(ClickHouseSink::new(&ClickHouseConfig {
                url: config.clickhouse_url.clone(),
                database: config.clickhouse_database.clone(),
                user: config.clickhouse_user.clone(),
                password: config.clickhouse_password()?,
                insert_streams: config.clickhouse_insert_streams,
            }))
        });
    let dead_letters = if config.dead_letter_topic.is_empty() {
        None
    } else {
        let props: Vec<(String, String)> = config.kafka_properties.clone().into_iter().collect();
        Some(DeadLetterSink::new(
            &config.kafka_brokers,
            &config.dead_letter_topic,
            &props,
        )?)
    };
    Ok(SinkSet {
        postgres,
        clickhouse: clickhouse.transpose()?,
        dead_letters,
    })
}

/// Applies both sinks' migrations, waiting (up to `patience`) for databases that are still starting.
pub async fn migrate(sinks: &SinkSet, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let result = async {
            sinks.postgres.migrate().await?;
            sinks
                .postgres
                .ensure_partitions(PARTITION_MONTHS_AHEAD)
                .await?;
            if let Some(ch) = &sinks.clickhouse {
                ch.migrate().await?;
            }
            Ok::<_, sluice_aggregator::sinks::SinkError>(())
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "migrations waiting for the database");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("migrations failed"),
        }
    }
}

/// For a process that does not migrate (`migrate_on_start = false`, e.g. logged in as a member of
/// `sluice_writer`): waits up to `patience` for PostgreSQL, then fails with a clear message when the
/// schema lacks a migration this build needs, instead of failing later at the first commit.
pub async fn check_schema(postgres: &PostgresSink, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        match postgres.missing_migrations().await {
            Ok(missing) if missing.is_empty() => return Ok(()),
            Ok(missing) => anyhow::bail!(
                "the PostgreSQL schema lacks migrations {missing:?} that this build needs and \
                 migrate_on_start is false: run `sluice-ingest migrate` as the tables' owner first"
            ),
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "schema check waiting for the database");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("cannot check the PostgreSQL schema version"),
        }
    }
}

/// Every hour, creates the monthly PostgreSQL partitions ahead of need (a failure only warns: the
/// default partition catches rows until the next try). `now`: also once right away (when start-up did
/// not migrate, which does it too).
fn spawn_partition_maintenance(postgres: PostgresSink, now: bool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        if !now {
            tick.tick().await;
        }
        loop {
            tick.tick().await;
            match postgres.ensure_partitions(PARTITION_MONTHS_AHEAD).await {
                Ok(done) => tracing::info!(
                    created = done.created,
                    moved_rows = done.moved_rows,
                    "partition maintenance"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "partition maintenance failed; retrying in an hour")
                }
            }
        }
    });
}

/// Every 5 s, checks that PostgreSQL (and ClickHouse when enabled) answer, for readiness.
fn spawn_sink_checks(sinks: SinkSet, health: Arc<Health>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let pg = sinks.postgres.ping().await;
            let ch = match &sinks.clickhouse {
                Some(ch) => ch.ping().await,
                None => Ok(()),
            };
            let ok = pg.is_ok() && ch.is_ok();
            health.postgres_down.store(pg.is_err(), Ordering::Relaxed);
            health.clickhouse_down.store(ch.is_err(), Ordering::Relaxed);
            if let Err(e) = pg.and(ch) {
                tracing::debug!(error = %e, "sink check failed");
            }
            health.sinks_ok.store(ok, Ordering::Relaxed);
            metrics::gauge!(READY).set(if health.ready() { 1.0 } else { 0.0 });
        }
    });
}

fn consumer_config(config: &Config) -> ClientConfig {
    let auto_offset_reset = match config.start_from {
        StartFrom::Earliest => "earliest",
        StartFrom::Latest => "latest",
    };
    let mut settings: Vec<(&str, &str)> = vec![
        ("group.id", config.group_id.as_str()),
        ("client.id", "sluice-ingest"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "false"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("statistics.interval.ms", "1000"),
        // librdkafka waits 1 s (its default) before fetching again once its local queue is full; at
        // 100k+ events/s that leaves the consumer idle half the time. Measured on a 1M-event backlog:
        // 158k events/s with the default, 320k with 20 ms (docs/BENCHMARKS.md).
        ("fetch.queue.backoff.ms", "20"),
        ("auto.offset.reset", auto_offset_reset),
    ];
    // Static membership (docs/operations.md, "Static membership"): a restart with the same id gets the
    // same partitions back without waiting for the old session to time out.
    if let Some(id) = config.instance_id() {
        settings.push(("group.instance.id", id));
    }
    config.kafka_client_config(&settings)
}

/// Runs ingest until `shutdown` resolves (then drains and returns) or a permanent error stops it.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let props: Vec<String> = config
        .kafka_properties
        .keys()
        .map(|k| {
            if is_secret_key(k) {
                format!("{k}=***")
            } else {
                k.clone()
            }
        })
        .collect();
    tracing::info!(brokers = %config.kafka_brokers, group = %config.group_id, instance = ?config.instance_id(), ?props, "starting ingest");
    let sinks = sinks(&config)?;
    if config.sinks_enabled {
        if config.migrate_on_start {
            migrate(&sinks, Duration::from_secs(60)).await?;
        } else {
            check_schema(&sinks.postgres, Duration::from_secs(60)).await?;
        }
    }
    let mut flusher = Flusher::new(sinks, RetryPolicy::default(), config.flush_concurrency);
    if !config.sinks_enabled {
        tracing::warn!("sinks disabled (sinks_enabled=false): nothing will be stored");
        flusher = flusher.without_sinks();
    }
    let topics = Topics::new(
        config
            .event_kinds()?
            .iter()
            .map(|&k| (config.topic_of(k).to_owned(), k))
            .collect(),
    );
    let dead_letters = flusher.sinks().dead_letters.is_some();
    let partitions = Arc::new(Partitions::new(
        topics.clone(),
        flusher,
        tokio::runtime::Handle::current(),
        config.start_from,
        config.shutdown_timeout(),
        config.dedup_window_ms(),
    ));
    partitions.health.stall_timeout_ms.store(
        config.ready_stall_timeout().as_millis() as u64,
        Ordering::Relaxed,
    );
    if !config.metrics_addr.is_empty() {
        let prometheus = telemetry::init_metrics()?;
        crate::metrics::register(
            &config.event_kinds()?,
            partitions.flusher().sinks().clickhouse.is_some(),
            dead_letters,
        );
        telemetry::serve(&config.metrics_addr, prometheus, partitions.health.clone()).await?;
    }
    spawn_sink_checks(
        partitions.flusher().sinks().clone(),
        partitions.health.clone(),
    );
    spawn_partition_maintenance(
        partitions.flusher().sinks().postgres.clone(),
        config.sinks_enabled && !config.migrate_on_start,
    );
    let consumer: BaseConsumer<IngestContext> = consumer_config(&config)
        .create_with_context(IngestContext {
            partitions: partitions.clone(),
        })
        .context("cannot create the kafka consumer")?;
    consumer
        .subscribe(&topics.names())
        .context("cannot subscribe")?;

    let stop = Arc::new(AtomicBool::new(false));
    let poll_loop = PollLoop {
        consumer,
        partitions,
        dead_letters,
        limits: config.limits(),
        controller: config.flush_controller(),
        max_buffered_keys: config.max_buffered_keys,
        max_buffered_bytes: config.max_buffered_bytes,
        shutdown_timeout: config.shutdown_timeout(),
        stop: stop.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("sluice-poll".into())
        .spawn(move || poll_loop.run())
        .context("cannot start the poll thread")?;
    let mut joined = tokio::task::spawn_blocking(move || thread.join());
    tokio::select! {
        result = &mut joined => return flatten(result),
        () = shutdown => {
            tracing::info!("shutdown requested: stop fetching, flush, commit");
            stop.store(true, Ordering::SeqCst);
        }
    }
    flatten(joined.await)
}

fn flatten(
    joined: Result<std::thread::Result<anyhow::Result<()>>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match joined {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => anyhow::bail!("the poll thread panicked"),
        Err(e) => anyhow::bail!("the poll thread could not be joined: {e}"),
    }
}

struct PollLoop {
    consumer: BaseConsumer<IngestContext>,
    partitions: Arc<Partitions>,
    /// Keep refused records for the dead-letter topic.
    dead_letters: bool,
    limits: Limits,
    controller: ControllerConfig,
    max_buffered_bytes: usize,
    max_buffered_keys: usize,
    shutdown_timeout: Duration,
    stop: Arc<AtomicBool>,
}

/// Counts accumulated on the hot path and published once per turn.
#[derive(Default)]
struct Counts {
    consumed: [u64; 3],
    aggregated: [u64; 3],
    duplicates: [u64; 3],
    replayed: [u64; 3],
    rejected: HashMap<(EventKind, RejectReason), u64>,
    reject_logs: LogBudget,
    misrouted: MisroutedCounts,
    misrouted_logs: LogBudget,
}

/// At most `per_second` log lines of one kind a second; the rest are counted and summarized.
#[derive(Default)]
struct LogBudget {
    per_second: u32,
    left: u32,
    suppressed: u64,
}

impl LogBudget {
    fn new(per_second: u32) -> Self {
        LogBudget {
            per_second,
            left: per_second,
            suppressed: 0,
        }
    }

    /// Whether one more line may be logged this second (if not, it is counted).
    fn allow(&mut self) -> bool {
        if self.left > 0 {
            self.left -= 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Summarizes what this second suppressed (`what`: "records rejected", …) and refills the budget.
    fn next_second(&mut self, what: &str) {
        if self.suppressed > 0 {
            tracing::warn!(suppressed = self.suppressed, "more {what} than logged");
            self.suppressed = 0;
        }
        self.left = self.per_second;
    }
}

fn kind_slot(kind: EventKind) -> usize {
    match kind {
        EventKind::Rank => 0,
        EventKind::Crawl => 1,
        EventKind::Click => 2,
    }
}

impl Counts {
    fn publish(&mut self) {
        for kind in EventKind::ALL {
            let i = kind_slot(kind);
            if self.consumed[i] > 0 {
                metrics::counter!(RECORDS_CONSUMED, "kind" => kind.as_str())
                    .increment(self.consumed[i]);
            }
            if self.aggregated[i] > 0 {
                metrics::counter!(EVENTS_AGGREGATED, "kind" => kind.as_str())
                    .increment(self.aggregated[i]);
            }
            if self.duplicates[i] > 0 {
                metrics::counter!(DUPLICATES, "kind" => kind.as_str())
                    .increment(self.duplicates[i]);
            }
            if self.replayed[i] > 0 {
                metrics::counter!(RECORDS_REPLAYED, "kind" => kind.as_str())
                    .increment(self.replayed[i]);
            }
        }
        self.misrouted.publish(|slot| EventKind::ALL[slot]);
        for ((kind, reason), n) in self.rejected.drain() {
            metrics::counter!(RECORDS_REJECTED, "kind" => kind.as_str(), "reason" => reason.as_str()).increment(n);
        }
        self.consumed = [0; 3];
        self.aggregated = [0; 3];
        self.duplicates = [0; 3];
        self.replayed = [0; 3];
    }
}

impl PollLoop {
    fn run(self) -> anyhow::Result<()> {
        let mut counts = Counts {
            reject_logs: LogBudget::new(REJECT_LOGS_PER_SECOND),
            misrouted_logs: LogBudget::new(MISROUTED_LOGS_PER_SECOND),
            ..Counts::default()
        };
        let mut controller = FlushController::new(self.controller);
        let mut last_flush_started = Instant::now();
        let mut next_second = Instant::now() + Duration::from_secs(1);
        let mut paused = false;
        metrics::gauge!(FLUSH_INTERVAL_SECONDS).set(controller.interval().as_secs_f64());
        while !self.stop.load(Ordering::Relaxed) {
            self.partitions.health.beat();
            let mut timeout = Duration::from_millis(100);
            let mut idle = false;
            // One clock read per turn for the timestamp-window check (at most ~100 ms stale against
            // a window of an hour ahead and a year back), not one per record.
            let now = chrono::Utc::now();
            // The same clock caps the dedup time of this turn's records (DedupWindow::set_clock).
            self.partitions
                .lock()
                .set_dedup_clock(now.timestamp_millis());
            for _ in 0..RECORDS_PER_TURN {
                match self.consumer.poll(timeout) {
                    None => {
                        idle = true;
                        break;
                    }
                    Some(Ok(message)) => self.handle(&message, now, &mut counts),
                    Some(Err(e)) => tracing::warn!(error = %e, "kafka consume error"),
                }
                timeout = Duration::ZERO;
            }

            let now = Instant::now();
            let mut state = self.partitions.lock();
            state.mark_unflushed(now);
            self.partitions
                .poll_flush(&self.consumer, &mut state, Duration::ZERO)?;
            let buffered = state.buffered_bytes();
            let keys = state.buffered_keys();
            // Sampled before a flush may empty the batches, like bytes and keys.
            let over_budget = buffered >= self.max_buffered_bytes || keys >= self.max_buffered_keys;
            // Due by the controller's interval; or early, when over budget; or when there is nothing
            // left to read (idle) and the minimum interval has passed: a drained buffer waits no longer.
            let since_last = now.duration_since(last_flush_started);
            let due =
                since_last >= controller.interval() || (idle && since_last >= self.controller.min);
            if due || over_budget {
                // Starts only when no flush is in flight: flushes never overlap.
                let started = self.partitions.start_flush(&mut state);
                if !started && state.inflight.is_none() {
                    // Nothing to flush: the last flush's cost no longer says anything about the next.
                    self.partitions
                        .last_flush_micros
                        .store(0, Ordering::Relaxed);
                }
                if started || state.inflight.is_none() {
                    last_flush_started = now;
                }
            }
            let should_pause = over_budget && state.inflight.is_some();
            let (events, dedup_keys) = (state.buffered_events(), state.dedup_keys());
            let ages = (now >= next_second).then(|| state.oldest_uncommitted(now));
            drop(state);
            if should_pause != paused {
                self.set_paused(should_pause);
                paused = should_pause;
            }
            if now >= next_second {
                let lag = self.partitions.fetch_lag.load(Ordering::Relaxed);
                let last_flush = Duration::from_micros(
                    self.partitions.last_flush_micros.load(Ordering::Relaxed),
                );
                let before = controller.interval();
                let interval = controller.observe(lag, last_flush);
                if interval != before {
                    tracing::debug!(
                        lag,
                        interval_ms = interval.as_millis() as u64,
                        "flush interval changed"
                    );
                }
                metrics::gauge!(FLUSH_INTERVAL_SECONDS).set(interval.as_secs_f64());
                counts.publish();
                counts.reject_logs.next_second("records rejected");
                counts.misrouted_logs.next_second("misrouted records");
                for ((topic, partition), age) in ages.unwrap_or_default() {
                    let labels = [
                        ("topic", self.partitions.topics.name(topic).to_owned()),
                        ("partition", partition.to_string()),
                    ];
                    metrics::gauge!(OLDEST_UNCOMMITTED_AGE, &labels).set(age.as_secs_f64());
                }
                metrics::gauge!(BUFFERED_BYTES).set(buffered as f64);
                metrics::gauge!(BUFFERED_EVENTS).set(events as f64);
                metrics::gauge!(BUFFERED_KEYS).set(keys as f64);
                metrics::gauge!(DEDUP_KEYS).set(dedup_keys as f64);
                next_second = now + Duration::from_secs(1);
            }
        }
        counts.publish();
        self.shutdown()
    }

    fn handle(
        &self,
        message: &BorrowedMessage<'_>,
        now: chrono::DateTime<chrono::Utc>,
        counts: &mut Counts,
    ) {
        let Some(topic) = self.partitions.topics.index(message.topic()) else {
            return;
        };
        let kind = self.partitions.topics.kind(topic);
        let header = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == ENCODING_HEADER)
                .map(|h| h.value.unwrap_or_default())
        });
        let payload = message.payload().unwrap_or_default();
        let decoded = Encoding::from_header(header)
            .and_then(|encoding| decode(kind, encoding, payload, &self.limits, now));
        let offset = message.offset();
        counts.consumed[kind_slot(kind)] += 1;
        let mut guard = self.partitions.lock();
        let state = &mut *guard;
        let key = (topic, message.partition());
        // A record of a partition no longer assigned (revoked between fetch and poll) is not ours.
        let Some(batch) = state.batches.get_mut(&key) else {
            return;
        };
        match decoded {
            Ok(event) => {
                // The Kafka timestamp is part of the log, so replays decide duplicates identically.
                let ts = message
                    .timestamp()
                    .to_millis()
                    .unwrap_or_else(|| event.occurred_at().timestamp_millis());
                let slot = kind_slot(kind);
                if !batch.replaying(offset) {
                    let placed = routing::check(
                        message.key(),
                        event.tenant_id(),
                        event.entity(),
                        message.partition(),
                        state.partition_counts.get(&topic).copied(),
                    );
                    if let Some(reason) = placed {
                        counts.misrouted.add(slot, reason);
                        if counts.misrouted_logs.allow() {
                            tracing::warn!(
                                topic = %message.topic(),
                                partition = message.partition(),
                                offset,
                                reason = reason.as_str(),
                                "record is not on the partition Kafka's murmur2 assigns to its key \
                                 {{tenant_id}}/{{entity}}: a copy of it on another partition would be \
                                 counted again (docs/guarantees.md)"
                            );
                        }
                    }
                }
                match batch.offer(event, offset, ts, state.dedup.get_mut(&key)) {
                    Offered::Added => counts.aggregated[slot] += 1,
                    Offered::Duplicate => counts.duplicates[slot] += 1,
                    Offered::Replayed => counts.replayed[slot] += 1,
                }
            }
            // Below a replay fence: rejected, counted, logged and dead-lettered the first time.
            Err(_) if batch.replaying(offset) => {
                batch.reject(offset, None);
                counts.replayed[kind_slot(kind)] += 1;
            }
            Err(rejection) => {
                let letter = self.dead_letters.then(|| DeadLetter {
                    offset,
                    key: message.key().map(<[u8]>::to_vec),
                    value: payload.to_vec(),
                    headers: message
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp_ms: message.timestamp().to_millis(),
                    reason: rejection.reason.as_str(),
                    detail: rejection.detail.clone(),
                });
                batch.reject(offset, letter);
                *counts.rejected.entry((kind, rejection.reason)).or_insert(0) += 1;
                if counts.reject_logs.allow() {
                    tracing::warn!(
                        topic = %message.topic(),
                        partition = message.partition(),
                        offset,
                        reason = %rejection.reason,
                        detail = %rejection.detail,
                        "record rejected"
                    );
                }
            }
        }
    }

    fn set_paused(&self, pause: bool) {
        let result = self.consumer.assignment().and_then(|assignment| {
            if pause {
                self.consumer.pause(&assignment)
            } else {
                self.consumer.resume(&assignment)
            }
        });
        match result {
            Ok(()) => tracing::info!(paused = pause, "fetching paused for the memory budget"),
            Err(e) => tracing::warn!(error = %e, "cannot pause/resume fetching"),
        }
        metrics::gauge!(PAUSED).set(if pause { 1.0 } else { 0.0 });
    }

    /// Final flush within the shutdown deadline.
    fn shutdown(self) -> anyhow::Result<()> {
        // Not ready any more, and stored-state reads stop retrying forever.
        self.partitions
            .health
            .stopping
            .store(true, Ordering::SeqCst);
        let deadline = Instant::now() + self.shutdown_timeout;
        let mut state = self.partitions.lock();
        self.partitions
            .poll_flush(&self.consumer, &mut state, self.shutdown_timeout)?;
        let events = state.buffered_events();
        if self.partitions.start_flush(&mut state) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            self.partitions
                .poll_flush(&self.consumer, &mut state, remaining)?;
        }
        let left = state.buffered_events();
        drop(state);
        tracing::info!(
            flushed_events = events - left.min(events),
            "final flush done; leaving the group"
        );
        // Dropping the consumer closes it: the group rebalances and our (empty) partitions are revoked.
        drop(self.consumer);
        Ok(())
    }
}
