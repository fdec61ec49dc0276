//! Publishing costs no allocation when nobody listens, and one (the shared topic string) when
//! someone does. A counting global allocator makes that checkable; this file holds a single
//! test so no other test allocates concurrently.

use std::alloc::System;
use std::sync::Arc;

use bcfy_bus::{EventBus, Policy, SubscribeOptions};
use futures::executor::block_on;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn unmatched_publications_allocate_nothing_and_matched_ones_allocate_only_the_topic() {
    let bus: EventBus<Arc<str>> = EventBus::new();
    let mut streams = Vec::new();
    for pattern in [
        "calls.live",
        "calls.live.*.*",
        "transcription.complete",
        "calls.audio.raw",
    ] {
        for policy in [Policy::Block, Policy::DropOldest] {
            let opts = SubscribeOptions::default().capacity(64).policy(policy);
            streams.push(bus.stream_with(pattern, opts).unwrap());
        }
    }
    // An unbounded family of scoped topics, formatted before measuring.
    let topics: Vec<String> = (0..2_000)
        .map(|i| format!("calls.audio.raw.4290-20240101_{i:06}"))
        .collect();
    let payload: Arc<str> = Arc::from("payload");
    // Warm up: the executor's thread-local state and the test harness's first allocations.
    assert_eq!(
        block_on(bus.publish(&topics[0], Arc::clone(&payload))),
        Ok(0)
    );

    for topic in &topics {
        assert_eq!(block_on(bus.publish(topic, Arc::clone(&payload))), Ok(0));
    }
    let region = Region::new(GLOBAL);
    for topic in &topics {
        assert_eq!(block_on(bus.publish(topic, Arc::clone(&payload))), Ok(0));
    }
    let change = region.change();
    assert_eq!(
        (
            change.allocations,
            change.reallocations,
            change.bytes_allocated
        ),
        (0, 0, 0),
        "unmatched publications allocated: {change:?}"
    );

    // Matched: at most one allocation per publication (the topic string shared by all its
    // subscribers), however many subscribers get it; none for a topic published again from the
    // same thread. The queues have room, so they do not grow.
    const MATCHED: usize = 40;
    let scoped: Vec<String> = (0..MATCHED)
        .map(|i| format!("calls.live.4290.{i}"))
        .collect();
    assert_eq!(
        block_on(bus.publish("calls.live.1.1", Arc::clone(&payload))),
        Ok(2)
    );
    let region = Region::new(GLOBAL);
    for topic in &scoped {
        assert_eq!(block_on(bus.publish(topic, Arc::clone(&payload))), Ok(2));
    }
    let change = region.change();
    assert_eq!(change.allocations, MATCHED, "fresh topics: {change:?}");
    let region = Region::new(GLOBAL);
    for _ in 0..MATCHED {
        assert_eq!(
            block_on(bus.publish("calls.live", Arc::clone(&payload))),
            Ok(2)
        );
    }
    let change = region.change();
    assert!(change.allocations <= 1, "a repeated topic: {change:?}");
    assert_eq!(bus.stats().unmatched, 2 * topics.len() as u64 + 1);
    drop(streams);
}
