//! `sluice-produce` stopped by a signal: SIGTERM (what `kill`, systemd and container runtimes send)
//! and SIGINT both end production, flush what was queued and print the summary, exit status 0. The
//! binary runs as a child process against librdkafka's in-process mock cluster.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use sluice_schemas::EventKind;

fn stops_cleanly_on(signal: &str) {
    let cluster: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(1).expect("mock cluster");
    for kind in EventKind::ALL {
        cluster
            .create_topic(kind.default_topic(), 3, 1)
            .expect("create topic");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-produce"))
        .args(["--brokers", &cluster.bootstrap_servers()])
        .args(["synthetic", "--rate", "2000", "--duration", "120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice-produce");
    std::thread::sleep(Duration::from_secs(2));
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still running 20 s after SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    assert_eq!(exit.code(), Some(0), "SIG{signal}: {exit}; stdout {out:?}");
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("a summary line")).expect("summary JSON");
    let sent = summary["sent"].as_u64().expect("sent");
    // About 2 s at 2,000/s were sent before the signal; everything sent was delivered.
    assert!(sent > 1000 && sent < 20_000, "sent {sent}");
    assert_eq!(summary["delivered"].as_u64(), Some(sent), "{summary}");
    assert_eq!(summary["failed"].as_u64(), Some(0), "{summary}");
}

#[test]
fn sigterm_stops_flushes_and_reports() {
    stops_cleanly_on("TERM");
}

#[test]
fn sigint_stops_flushes_and_reports() {
    stops_cleanly_on("INT");
}
