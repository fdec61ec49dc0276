//! Behaviour of the bus: routing, ordering, policies, failures, unsubscribe and shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy_bus::{BusError, BusErrorKind, EventBus, Policy, SubscribeOptions, SubscriberKind};
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn take<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().unwrap().clone()
}

/// Yields to the scheduler often enough for spawned tasks to run as far as they can.
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn routing_follows_patterns_and_handlers_learn_the_topic() {
    let bus: EventBus<u32> = EventBus::new();
    let seen: Log<(String, String, u32)> = log();
    let mut subs = Vec::new();
    for pattern in [
        "calls.live",
        "calls.live.*.*",
        "calls.>",
        "calls.audio.raw.*",
        "calls.live.4290.512",
    ] {
        let seen = Arc::clone(&seen);
        subs.push(
            bus.subscribe(pattern, move |ev| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push((
                        pattern.to_owned(),
                        ev.topic().to_owned(),
                        ev.payload,
                    ));
                }
            })
            .unwrap(),
        );
    }
    assert_eq!(bus.publish("calls.live", 1).await, Ok(2));
    assert_eq!(bus.publish("calls.live.4290.512", 2).await, Ok(3));
    assert_eq!(bus.publish("calls.live.4290.513", 3).await, Ok(2));
    assert_eq!(bus.publish("calls.audio.raw", 4).await, Ok(1));
    assert_eq!(bus.publish("calls.audio.raw.7-abc", 5).await, Ok(2));
    assert_eq!(bus.publish("transcription.complete", 6).await, Ok(0));
    assert!(bus.has_subscribers("calls.audio.raw.1-x"));
    assert!(!bus.has_subscribers("transcription.complete"));
    bus.shutdown().await;

    let mut got = take(&seen);
    got.sort();
    let s = |p: &str, t: &str, n| (p.to_owned(), t.to_owned(), n);
    let mut want = vec![
        s("calls.live", "calls.live", 1),
        s("calls.>", "calls.live", 1),
        s("calls.live.*.*", "calls.live.4290.512", 2),
        s("calls.>", "calls.live.4290.512", 2),
        s("calls.live.4290.512", "calls.live.4290.512", 2),
        s("calls.live.*.*", "calls.live.4290.513", 3),
        s("calls.>", "calls.live.4290.513", 3),
        s("calls.>", "calls.audio.raw", 4),
        s("calls.>", "calls.audio.raw.7-abc", 5),
        s("calls.audio.raw.*", "calls.audio.raw.7-abc", 5),
    ];
    want.sort();
    assert_eq!(got, want);
    let stats = bus.stats();
    assert_eq!(
        (stats.published, stats.unmatched, stats.delivered),
        (6, 1, 10)
    );
}

#[tokio::test]
async fn invalid_input_is_a_clear_error() {
    let bus: EventBus<u32> = EventBus::new();
    for bad in [
        "",
        "calls..live",
        "calls.>.raw",
        "calls.li*",
        "calls. live",
        "calls.",
    ] {
        let err = bus.stream(bad).unwrap_err();
        assert_eq!(err.kind(), BusErrorKind::InvalidPattern, "{bad:?}");
        let err = bus.subscribe(bad, |_| async {}).unwrap_err();
        assert_eq!(err.kind(), BusErrorKind::InvalidPattern, "{bad:?}");
    }
    for bad in ["", "calls.*", "calls.>", "calls..x", "calls x"] {
        let err = bus.publish(bad, 1).await.unwrap_err();
        assert_eq!(err.kind(), BusErrorKind::InvalidTopic, "{bad:?}");
    }
    let err = bus
        .stream_with("a", SubscribeOptions::default().capacity(0))
        .unwrap_err();
    assert_eq!(err.kind(), BusErrorKind::InvalidOptions);
    assert_eq!(bus.stats().subscribers, 0);
    assert_eq!(bus.stats().published, 0);
}

#[test]
fn handler_subscription_outside_a_runtime_is_an_error_not_a_panic() {
    let bus: EventBus<u32> = EventBus::new();
    let err = bus.subscribe("a.b", |_| async {}).unwrap_err();
    assert_eq!(err, BusError::NoRuntime);
    // Streams need no runtime.
    let mut stream = bus.stream("a.b").unwrap();
    assert_eq!(futures::executor::block_on(bus.publish("a.b", 3)), Ok(1));
    let ev = futures::executor::block_on(stream.recv()).unwrap();
    assert_eq!((ev.topic(), ev.payload), ("a.b", 3));
}

#[tokio::test(start_paused = true)]
async fn each_subscriber_sees_publish_order_under_concurrent_handlers() {
    const N: u32 = 300;
    let bus: EventBus<(char, u32)> = EventBus::new();
    let mut logs = Vec::new();
    let mut subs = Vec::new();
    for (i, pattern) in ["jobs.>", "jobs.*", "jobs.a", "jobs.b", ">"]
        .into_iter()
        .enumerate()
    {
        let seen: Log<(char, u32)> = log();
        logs.push((pattern, Arc::clone(&seen)));
        let opts = SubscribeOptions::default().capacity(1 + i * 3);
        subs.push(
            bus.subscribe_with(pattern, opts, move |ev| {
                let seen = Arc::clone(&seen);
                async move {
                    // Different, uneven handler durations per subscriber and per event.
                    let ms = u64::from((ev.payload.1 * 7 + i as u32 * 13) % 5);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    seen.lock().unwrap().push(ev.payload);
                }
            })
            .unwrap(),
        );
    }
    // Two publishers at once, on different topics.
    let (a, b) = (bus.clone(), bus.clone());
    let pa = tokio::spawn(async move {
        for n in 0..N {
            a.publish("jobs.a", ('a', n)).await.unwrap();
        }
    });
    let pb = tokio::spawn(async move {
        for n in 0..N {
            b.publish("jobs.b", ('b', n)).await.unwrap();
            if n % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    pa.await.unwrap();
    pb.await.unwrap();
    bus.shutdown().await;

    for (pattern, seen) in logs {
        let seen = take(&seen);
        for publisher in ['a', 'b'] {
            let mine: Vec<u32> = seen
                .iter()
                .filter(|(p, _)| *p == publisher)
                .map(|&(_, n)| n)
                .collect();
            let expected = match (pattern, publisher) {
                ("jobs.a", 'b') | ("jobs.b", 'a') => Vec::new(),
                _ => (0..N).collect(),
            };
            assert_eq!(mine, expected, "{pattern} from publisher {publisher}");
        }
    }
    drop(subs);
}

#[tokio::test(start_paused = true)]
async fn block_policy_makes_the_publisher_wait_and_loses_nothing() {
    let bus: EventBus<u32> = EventBus::new();
    let mut stalled = bus
        .stream_with("calls.live", SubscribeOptions::default().capacity(2))
        .unwrap();
    assert_eq!(bus.publish("calls.live", 0).now_or_never(), Some(Ok(1)));
    assert_eq!(bus.publish("calls.live", 1).now_or_never(), Some(Ok(1)));

    let mut third = Box::pin(bus.publish("calls.live", 2));
    assert!(futures::poll!(third.as_mut()).is_pending());
    // Time does not unblock it: only the subscriber does.
    tokio::time::advance(Duration::from_hours(1)).await;
    assert!(futures::poll!(third.as_mut()).is_pending());
    assert_eq!(stalled.stats().queued, 2);

    assert_eq!(stalled.recv().await.unwrap().payload, 0);
    assert_eq!(third.await, Ok(1));
    assert_eq!(stalled.recv().await.unwrap().payload, 1);
    assert_eq!(stalled.recv().await.unwrap().payload, 2);
    let stats = stalled.stats();
    assert_eq!((stats.delivered, stats.received, stats.dropped), (3, 3, 0));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_handler_stops_the_publisher_until_it_resumes() {
    const N: u32 = 20;
    let bus: EventBus<u32> = EventBus::new();
    let gate = Arc::new(Semaphore::new(0));
    let seen: Log<u32> = log();
    let (g, s) = (Arc::clone(&gate), Arc::clone(&seen));
    let sub = bus
        .subscribe_with(
            "calls.live",
            SubscribeOptions::default().capacity(4),
            move |ev| {
                let (g, s) = (Arc::clone(&g), Arc::clone(&s));
                async move {
                    g.acquire().await.unwrap().forget();
                    s.lock().unwrap().push(ev.payload);
                }
            },
        )
        .unwrap();
    let published = Arc::new(AtomicUsize::new(0));
    let (b, p) = (bus.clone(), Arc::clone(&published));
    let publisher = tokio::spawn(async move {
        for n in 0..N {
            b.publish("calls.live", n).await.unwrap();
            p.fetch_add(1, Ordering::SeqCst);
        }
    });
    settle().await;
    // 4 queued + 1 taken by the (stalled) handler: the publisher is stuck on the 6th.
    assert_eq!(published.load(Ordering::SeqCst), 5);
    assert!(!publisher.is_finished());
    tokio::time::advance(Duration::from_mins(1)).await;
    settle().await;
    assert_eq!(published.load(Ordering::SeqCst), 5);

    gate.add_permits(N as usize);
    publisher.await.unwrap();
    let stats = sub.unsubscribe().await;
    assert_eq!(take(&seen), (0..N).collect::<Vec<_>>());
    assert_eq!((stats.delivered, stats.dropped), (u64::from(N), 0));
}

#[tokio::test]
async fn drop_oldest_never_waits_drops_the_oldest_and_counts_lag() {
    let bus: EventBus<u32> = EventBus::new();
    let mut dashboard = bus
        .stream_with(
            "calls.>",
            SubscribeOptions::default()
                .capacity(3)
                .policy(Policy::DropOldest)
                .name("dashboard"),
        )
        .unwrap();
    for n in 0..10 {
        // Never waits, even with nobody reading.
        assert_eq!(bus.publish("calls.live", n).now_or_never(), Some(Ok(1)));
    }
    assert_eq!(dashboard.lagged(), 7);
    let stats = dashboard.stats();
    assert_eq!(stats.name.as_deref(), Some("dashboard"));
    assert_eq!((stats.delivered, stats.dropped, stats.queued), (10, 7, 3));
    assert_eq!(bus.stats().dropped, 7);
    let got: Vec<u32> = vec![
        dashboard.recv().await.unwrap().payload,
        dashboard.recv().await.unwrap().payload,
        dashboard.recv().await.unwrap().payload,
    ];
    assert_eq!(got, [7, 8, 9]);
    assert_eq!(bus.publish("calls.live", 10).await, Ok(1));
    assert_eq!(dashboard.recv().await.unwrap().payload, 10);
}

#[tokio::test]
async fn panicking_and_failing_handlers_are_counted_and_the_bus_keeps_working() {
    let bus: EventBus<u32> = EventBus::new();
    let handled: Log<u32> = log();
    let h = Arc::clone(&handled);
    let flaky = bus
        .subscribe_with(
            "jobs.>",
            SubscribeOptions::default().name("flaky"),
            move |ev| {
                let h = Arc::clone(&h);
                // A panic in the call itself, before any future exists.
                assert!(ev.payload != 4, "boom in the call");
                async move {
                    match ev.payload {
                        2 => panic!("boom in the future"),
                        3 => Err(format!("cannot handle {}", ev.payload)),
                        n => {
                            h.lock().unwrap().push(n);
                            Ok(())
                        }
                    }
                }
            },
        )
        .unwrap();
    let mut healthy = bus.stream("jobs.*").unwrap();
    for n in 0..7 {
        assert_eq!(bus.publish("jobs.x", n).await, Ok(2));
    }
    for n in 0..7 {
        assert_eq!(healthy.recv().await.unwrap().payload, n);
    }
    let stats = flaky.unsubscribe().await;
    assert_eq!(take(&handled), [0, 1, 5, 6]);
    assert_eq!(
        (stats.panics, stats.handler_errors, stats.received),
        (2, 1, 7)
    );
    assert_eq!(stats.kind, SubscriberKind::Handler);
    let bus_stats = bus.stats();
    assert_eq!((bus_stats.panics, bus_stats.handler_errors), (2, 1));
    // Still working after all that.
    assert_eq!(bus.publish("jobs.y", 99).await, Ok(1));
    assert_eq!(healthy.recv().await.unwrap().payload, 99);
}

#[tokio::test]
async fn unsubscribe_by_call_and_by_drop() {
    let bus: EventBus<u32> = EventBus::new();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let sub = bus
        .subscribe("a", move |_| {
            let c = Arc::clone(&c);
            async move {
                c.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    let dropped_handle = bus.subscribe("a", |_| async {}).unwrap();
    let dropped_stream = bus.stream("a").unwrap();
    let mut closing = bus.stream("a").unwrap();
    assert_eq!(bus.stats().subscribers, 4);
    assert_eq!(bus.publish("a", 1).await, Ok(4));

    drop(dropped_handle);
    drop(dropped_stream);
    assert_eq!(bus.stats().subscribers, 2);
    assert_eq!(bus.publish("a", 2).await, Ok(2));

    // close(): no new events, but what was queued is still yielded, then None.
    closing.close();
    assert!(closing.is_closed());
    assert_eq!(bus.publish("a", 3).await, Ok(1));
    let rest: Vec<u32> = (&mut closing).map(|e| e.payload).collect().await;
    assert_eq!(rest, [1, 2]);
    assert!(closing.recv().await.is_none());

    let stats = sub.unsubscribe().await;
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(stats.closed);
    assert_eq!(bus.publish("a", 4).await, Ok(0));
    assert_eq!(bus.stats().subscribers, 0);
}

#[tokio::test]
async fn shutdown_drains_everything_queued_then_refuses_publications() {
    let bus: EventBus<u32> = EventBus::new();
    let gate = Arc::new(Semaphore::new(0));
    let handled: Log<u32> = log();
    let (g, h) = (Arc::clone(&gate), Arc::clone(&handled));
    let sub = bus
        .subscribe("work", move |ev| {
            let (g, h) = (Arc::clone(&g), Arc::clone(&h));
            async move {
                g.acquire().await.unwrap().forget();
                h.lock().unwrap().push(ev.payload);
            }
        })
        .unwrap();
    let mut stream = bus
        .stream_with("work", SubscribeOptions::default().capacity(100))
        .unwrap();
    for n in 0..50 {
        bus.publish("work", n).await.unwrap();
    }
    let shutdown = tokio::spawn({
        let bus = bus.clone();
        async move { bus.shutdown().await }
    });
    settle().await;
    assert!(bus.is_closed());
    assert!(!shutdown.is_finished(), "waits for the queues to drain");
    assert_eq!(bus.publish("work", 99).await, Err(BusError::Closed));
    assert_eq!(bus.stream("work").unwrap_err().kind(), BusErrorKind::Closed);

    gate.add_permits(1000);
    let from_stream: Vec<u32> = (&mut stream).map(|e| e.payload).collect().await;
    shutdown.await.unwrap();
    assert_eq!(take(&handled), (0..50).collect::<Vec<_>>());
    assert_eq!(from_stream, (0..50).collect::<Vec<_>>());
    assert!(sub.is_finished());
    assert!(stream.is_closed());
    // Idempotent.
    bus.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_stream_readers_but_keeps_their_events() {
    let bus: EventBus<u32> = EventBus::new();
    let mut unread = bus.stream("t").unwrap();
    for n in 0..5 {
        bus.publish("t", n).await.unwrap();
    }
    bus.shutdown().await;
    assert!(unread.is_closed());
    let got: Vec<u32> = (&mut unread).map(|e| e.payload).collect().await;
    assert_eq!(got, [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn shutdown_lets_a_blocked_publication_finish_first() {
    let bus: EventBus<u32> = EventBus::new();
    let mut stream = bus
        .stream_with("t", SubscribeOptions::default().capacity(1))
        .unwrap();
    bus.publish("t", 1).await.unwrap();
    let blocked = tokio::spawn({
        let bus = bus.clone();
        async move { bus.publish("t", 2).await }
    });
    settle().await;
    let shutdown = tokio::spawn({
        let bus = bus.clone();
        async move { bus.shutdown().await }
    });
    settle().await;
    assert!(!blocked.is_finished() && !shutdown.is_finished());
    let got: Vec<u32> = (&mut stream).map(|e| e.payload).collect().await;
    assert_eq!(got, [1, 2]);
    assert_eq!(blocked.await.unwrap(), Ok(1));
    shutdown.await.unwrap();
}

#[tokio::test]
async fn streams_end_when_every_bus_handle_is_gone() {
    let bus: EventBus<u32> = EventBus::new();
    let mut stream = bus.stream("x").unwrap();
    bus.publish("x", 5).await.unwrap();
    drop(bus);
    assert_eq!(stream.recv().await.map(|e| e.payload), Some(5));
    assert!(stream.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_through_sixteen_subscribers_arrive_once_in_order() {
    const N: u64 = 10_000;
    let bus: EventBus<Arc<u64>> = EventBus::new();
    let patterns = ["load.x", "load.*", "load.>", ">"];
    let mut readers = Vec::new();
    let mut handlers = Vec::new();
    let mut logs = Vec::new();
    for i in 0..16 {
        let pattern = patterns[i % patterns.len()];
        let opts = SubscribeOptions::default().capacity(1 + i * 7);
        if i % 2 == 0 {
            let mut stream = bus.stream_with(pattern, opts).unwrap();
            readers.push(tokio::spawn(async move {
                let mut got = Vec::with_capacity(N as usize);
                while let Some(ev) = stream.recv().await {
                    got.push(*ev.payload);
                }
                got
            }));
        } else {
            let seen: Log<u64> = log();
            logs.push(Arc::clone(&seen));
            handlers.push(
                bus.subscribe_with(pattern, opts, move |ev| {
                    let seen = Arc::clone(&seen);
                    async move { seen.lock().unwrap().push(*ev.payload) }
                })
                .unwrap(),
            );
        }
    }
    let expected: Vec<u64> = (0..N).collect();
    for n in 0..N {
        assert_eq!(bus.publish("load.x", Arc::new(n)).await, Ok(16));
    }
    bus.shutdown().await;
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
    for seen in logs {
        assert_eq!(take(&seen), expected);
    }
    for h in &handlers {
        let s = h.stats();
        assert_eq!((s.delivered, s.received, s.dropped), (N, N, 0));
    }
    assert_eq!(bus.stats().delivered, N * 16);
}

/// Many publishers contending for tiny Block queues: no lost wakeup, nothing lost, per-publisher
/// order kept. (The timeout only turns a hang into a failure.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contending_publishers_on_tiny_queues_lose_nothing() {
    const PUBLISHERS: u32 = 4;
    const EACH: u32 = 3_000;
    let bus: EventBus<(u32, u32)> = EventBus::new();
    let mut readers = Vec::new();
    for capacity in [1, 3] {
        let mut stream = bus
            .stream_with("c", SubscribeOptions::default().capacity(capacity))
            .unwrap();
        readers.push(tokio::spawn(async move {
            let mut next = [0u32; PUBLISHERS as usize];
            let mut total = 0;
            while let Some(ev) = stream.recv().await {
                let (p, n) = ev.payload;
                assert_eq!(n, next[p as usize], "publisher {p} out of order");
                next[p as usize] += 1;
                total += 1;
                if n % 97 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            total
        }));
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    assert_eq!(bus.publish("c", (p, n)).await, Ok(2));
                }
            })
        })
        .collect();
    let all = async {
        for p in publishers {
            p.await.unwrap();
        }
        bus.shutdown().await;
        let mut totals = Vec::new();
        for r in readers {
            totals.push(r.await.unwrap());
        }
        totals
    };
    let totals = tokio::time::timeout(Duration::from_mins(2), all)
        .await
        .expect("publishers or readers hung");
    assert_eq!(totals, [PUBLISHERS * EACH, PUBLISHERS * EACH]);
}

/// The handles and the publish future can cross threads (spawned tasks publish and read).
#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    fn unpin<T: Unpin>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let bus: EventBus<Arc<String>> = EventBus::new();
    send_sync(&bus);
    let stream = bus.stream("a").unwrap();
    send_sync(&stream);
    unpin(&stream);
    let sub = bus.subscribe("a", |_| async {}).unwrap();
    send_sync(&sub);
    let publish = bus.publish("a", Arc::new(String::new()));
    send(&publish);
    let shutdown = bus.shutdown();
    send(&shutdown);
    let unsubscribe = sub.unsubscribe();
    send(&unsubscribe);
}
