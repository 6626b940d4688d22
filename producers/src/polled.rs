//! A librdkafka producer whose delivery reports are served on a thread of its own, which waits up to
//! [`POLL_PERIOD`] per call. Records go in through the [`BaseProducer`] it derefs to; their reports come
//! out in the context's `delivery` callback, on that thread.
//!
//! This is what rdkafka's `ThreadedProducer` (and `FutureProducer`, built on it) do, without their
//! spin: they poll 100 ms at a time, and rdkafka's `poll` spins through the last millisecond of every
//! call (it hands librdkafka the time left rounded down to whole milliseconds, and 0 returns at once),
//! about 1 % of a core per producer, idle or busy (docs/BENCHMARKS.md, sessions 18 and 21). A report
//! ends the wait at once, so the longer wait delays nothing; it is only how often an idle producer
//! wakes.
//!
//! Both of Sluice's producers run on it: [`EventProducer`](crate::EventProducer), with its own delivery
//! bookkeeping, and ingest's dead-letter sink, whose every record is awaited ([`Awaited`],
//! [`PolledProducer::send_awaited`]).

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};
use tokio::sync::oneshot;

use crate::producer::ProduceError;

/// How long the polling thread waits for delivery reports in one call.
pub const POLL_PERIOD: Duration = Duration::from_secs(1);

/// A [`BaseProducer`] with a polling thread of its own. Dropping it tells the thread to stop after its
/// current wait; the client closes when the thread lets go of it. Whatever is still queued then is
/// purged by librdkafka: purge and flush first if that matters (as `EventProducer`'s drop does).
pub struct PolledProducer<C: ProducerContext + 'static> {
    producer: Arc<BaseProducer<C>>,
    /// Tells the polling thread to stop (set on drop).
    stop: Arc<AtomicBool>,
}

impl<C: ProducerContext + 'static> PolledProducer<C> {
    /// Creates the client from `config` and `context`, and its polling thread, named `thread` (Linux
    /// keeps 15 bytes of a thread's name: keep it that short, so that `top -H` and `/proc` tell the
    /// threads apart).
    pub fn new(config: &ClientConfig, context: C, thread: &str) -> Result<Self, ProduceError> {
        debug_assert!(
            thread.len() <= 15,
            "thread name {thread:?} is longer than Linux keeps"
        );
        let producer = Arc::new(
            BaseProducer::from_config_and_context(config, context).map_err(ProduceError::Create)?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new()
            .name(thread.to_owned())
            .spawn({
                let (producer, stop) = (Arc::clone(&producer), Arc::clone(&stop));
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(POLL_PERIOD);
                    }
                }
            })
            .map_err(ProduceError::PollThread)?;
        Ok(PolledProducer { producer, stop })
    }
}

impl<C: ProducerContext + 'static> std::fmt::Debug for PolledProducer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledProducer")
            .field("in_flight", &self.producer.in_flight_count())
            .finish_non_exhaustive()
    }
}

impl<C: ProducerContext + 'static> Deref for PolledProducer<C> {
    type Target = BaseProducer<C>;

    fn deref(&self) -> &BaseProducer<C> {
        &self.producer
    }
}

impl<C: ProducerContext + 'static> Drop for PolledProducer<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A record's delivery report: its partition and offset (an offset below 0 is an unconfirmed delivery,
/// see [`is_confirmed`](crate::is_confirmed)), or why it failed.
pub type Delivered = Result<(i32, i64), KafkaError>;

/// The context of a producer whose every record is awaited: each record carries the sender of a
/// oneshot channel, and its delivery report is sent there. librdkafka's log lines go through rdkafka's
/// default (the `log` facade at their level).
#[derive(Debug, Default, Clone, Copy)]
pub struct Awaited;

impl ClientContext for Awaited {}

impl ProducerContext for Awaited {
    type DeliveryOpaque = Box<oneshot::Sender<Delivered>>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Self::DeliveryOpaque) {
        let delivered = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        // The sender's future may have been dropped (its caller gave up): nothing to tell then.
        let _ = report.send(delivered);
    }
}

impl PolledProducer<Awaited> {
    /// Enqueues `record` and returns a future of its delivery report. `Err` is librdkafka refusing the
    /// record before queueing it (queue full, too large, unknown partition): nothing was sent. The
    /// future gives `Err(KafkaError::Canceled)` if the report never comes (the client was destroyed
    /// with the record still queued).
    pub fn send_awaited<K, P>(
        &self,
        record: BaseRecord<'_, K, P>,
    ) -> Result<impl Future<Output = Delivered>, KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        // The same record, carrying the report's sender (its fields are public; `()` is dropped).
        let record = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(tx),
        };
        self.producer.send(record).map_err(|(error, _)| error)?;
        Ok(async move { rx.await.unwrap_or(Err(KafkaError::Canceled)) })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rdkafka::mocking::MockCluster;

    use super::*;

    /// The names of this process's threads (Linux: /proc/self/task/*/comm).
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    fn client(brokers: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        config
    }

    #[tokio::test]
    async fn awaited_records_get_their_own_reports_with_consecutive_offsets() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("letters", 1, 1).expect("topic");
        let producer = PolledProducer::new(
            &client(&cluster.bootstrap_servers()),
            Awaited,
            "test-awaited",
        )
        .expect("producer");
        let mut reports = Vec::new();
        for value in ["a", "b", "c"] {
            let sent = producer
                .send_awaited(BaseRecord::<(), str>::to("letters").payload(value))
                .expect("enqueued");
            reports.push(sent.await);
        }
        let reports: Vec<(i32, i64)> = reports.into_iter().map(|r| r.expect("delivered")).collect();
        // Awaited one by one into an empty single-partition topic: offsets 0, 1, 2.
        assert_eq!(reports, vec![(0, 0), (0, 1), (0, 2)]);
    }

    #[tokio::test]
    async fn a_record_librdkafka_refuses_is_an_error_before_anything_is_sent() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("letters", 1, 1).expect("topic");
        let mut config = client(&cluster.bootstrap_servers());
        config.set("message.max.bytes", "1000");
        let producer = PolledProducer::new(&config, Awaited, "test-refused").expect("producer");
        let value = vec![b'x'; 5_000];
        let refused = producer
            .send_awaited(BaseRecord::<(), [u8]>::to("letters").payload(&value[..]))
            .err()
            .expect("a record over message.max.bytes is refused");
        assert_eq!(
            refused.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge)
        );
        assert_eq!(producer.in_flight_count(), 0);
    }

    #[test]
    fn the_polling_thread_ends_after_the_producer_is_dropped() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let name = "test-poll-ends";
        let producer = PolledProducer::new(&client(&cluster.bootstrap_servers()), Awaited, name)
            .expect("producer");
        // The thread names itself once it runs: wait for it, within a bound.
        let deadline = Instant::now() + 3 * POLL_PERIOD;
        while thread_names().iter().filter(|n| *n == name).count() != 1 {
            assert!(
                Instant::now() < deadline,
                "no polling thread named {name} while the producer lives"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(producer);
        // The thread sees the stop flag after its current wait: within one POLL_PERIOD, plus slack.
        let deadline = Instant::now() + 3 * POLL_PERIOD;
        while thread_names().iter().any(|n| n == name) {
            assert!(
                Instant::now() < deadline,
                "the polling thread still runs {:?} after the drop",
                3 * POLL_PERIOD
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
