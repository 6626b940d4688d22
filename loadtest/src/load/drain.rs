//! Baseline R0: how fast can this machine merely *read* the run's topics? `sluice-load drain` is a
//! process of its own (so its CPU is its own): an rdkafka `BaseConsumer` in a fresh group subscribes to
//! the topics and polls until it has seen the expected number of records, touching each payload and
//! nothing more. Timed from the first record to the last, so group join is not counted.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};

use super::procstat;

#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topics to read (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub topics: Vec<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub expect: u64,
    #[arg(long)]
    pub group: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
}

/// What `sluice-load drain` prints (one JSON line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainResult {
    pub records: u64,
    pub payload_bytes: u64,
    /// First record to last record.
    pub seconds: f64,
    /// CPU seconds of the drain process over the same span (plus client start-up, a few ms).
    pub cpu_s: f64,
    pub vm_hwm_kb: u64,
}

pub fn run(args: &DrainArgs) -> anyhow::Result<DrainResult> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("cannot create the kafka consumer")?;
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("cannot subscribe")?;
    let cpu_start = procstat::cpu_seconds(procstat::Target::Process(std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let mut result = DrainResult::default();
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while result.records < args.expect {
        if Instant::now() > deadline {
            bail!(
                "drain read {} of {} records within {} s",
                result.records,
                args.expect,
                args.timeout_s
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                result.records += 1;
                result.payload_bytes += message.payload().map_or(0, |p| p.len() as u64);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "kafka consume error"),
        }
    }
    let (cpu_end, vm_hwm_kb) = procstat::own_usage();
    result.seconds = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    result.cpu_s = cpu_end - cpu_start.unwrap_or(0.0);
    result.vm_hwm_kb = vm_hwm_kb;
    Ok(result)
}
