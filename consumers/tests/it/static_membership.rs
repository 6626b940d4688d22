//! Fast recovery with static group membership (docs/operations.md, "Static membership"): an ingest
//! with `group_instance_id` is SIGKILLed with records uncommitted, more records arrive while it is down,
//! and a new process with the same instance id must have its partitions back and have committed every
//! record within 5 s of its start — not after the session timeout (45 s), which a dynamic member waits
//! for the dead member's session to expire. Exactness is kept (independent verifier).

use std::time::{Duration, Instant};

use crate::support::{TestStack, TrafficShape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_is_back_within_five_seconds() -> anyhow::Result<()> {
    let stack = TestStack::new("static_member", 4).await?;
    let id = [("SLUICE_GROUP_INSTANCE_ID", "ingest-0")];
    let first = stack.spawn_ingest("a", &id)?;
    let mut events = stack.publish(TrafficShape::seed(91).rate(2_000).events(300))?;
    stack.wait_caught_up(Duration::from_secs(30)).await?;
    // Records the killed process read but never committed, then records published while it is down.
    let traffic = stack.start_traffic(TrafficShape::seed(92).rate(2_000).events(300))?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.crash()?;
    events.extend(traffic.join()?);

    let started = Instant::now();
    let second = stack.spawn_ingest("b", &id)?;
    stack.wait_caught_up(Duration::from_secs(90)).await?;
    let took = started.elapsed();
    println!(
        "static member restarted: partitions back and every record committed {:.2} s after the new process started",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}; log: {}",
        second.log.display()
    );
    stack.finish(vec![second], &events).await
}
