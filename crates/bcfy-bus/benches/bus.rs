//! Throughput of the bus beside raw `tokio::sync::mpsc` channels, measured in the same run.
//!
//! For N = 1, 4 and 16 subscribers, one publisher sends `EVENTS` events; each subscriber is a
//! stream drained by its own task. The raw baseline is one bounded mpsc channel per receiver,
//! of the same capacity, carrying the same `Arc` payload, with the publisher sending to each
//! channel in turn (what the bus does for one publication). Both run on a current-thread runtime
//! (the CPU cost per delivered event, without scheduler noise from a shared machine) and on a
//! two-worker runtime.
//!
//! Before the criterion groups, a paired measurement prints the cost per delivered event of
//! both and their ratio (bus/raw), best and median of several alternating rounds.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bcfy_bus::{EventBus, SubscribeOptions};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const EVENTS: usize = 20_000;
const CAPACITY: usize = 256;
const FANOUTS: [usize; 3] = [1, 4, 16];
const TOPIC: &str = "calls.live.4290.512";
const PATTERN: &str = "calls.live.*.*";

/// Roughly what a live call envelope is: an `Arc` of something, cloned per subscriber.
#[derive(Debug)]
#[allow(dead_code)] // the fields are only there to give the payload a realistic size
struct Payload {
    call_id: String,
    body: [u8; 64],
}

type Ev = Arc<Payload>;

fn payload() -> Ev {
    Arc::new(Payload {
        call_id: "4290-20240101_120000_512".to_owned(),
        body: [7; 64],
    })
}

fn runtime(workers: usize) -> Runtime {
    if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap()
    }
}

/// Publishes `EVENTS` events to `n` stream subscribers; returns the time from the first
/// publication until every subscriber has received the last event.
async fn run_bus(n: usize) -> Duration {
    let bus: EventBus<Ev> = EventBus::new();
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = bus
            .stream_with(PATTERN, SubscribeOptions::default().capacity(CAPACITY))
            .unwrap();
        readers.push(tokio::spawn(async move {
            for _ in 0..EVENTS {
                black_box(stream.recv().await.unwrap());
            }
        }));
    }
    let ev = payload();
    let start = Instant::now();
    for _ in 0..EVENTS {
        let delivered = bus.publish(TOPIC, Arc::clone(&ev)).await.unwrap();
        debug_assert_eq!(delivered, n);
    }
    for r in readers {
        r.await.unwrap();
    }
    start.elapsed()
}

/// The same with one raw bounded mpsc channel per receiver.
async fn run_raw(n: usize) -> Duration {
    let mut senders = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, mut rx) = mpsc::channel::<Ev>(CAPACITY);
        senders.push(tx);
        readers.push(tokio::spawn(async move {
            for _ in 0..EVENTS {
                black_box(rx.recv().await.unwrap());
            }
        }));
    }
    let ev = payload();
    let start = Instant::now();
    for _ in 0..EVENTS {
        for tx in &senders {
            tx.send(Arc::clone(&ev)).await.unwrap();
        }
    }
    for r in readers {
        r.await.unwrap();
    }
    start.elapsed()
}

/// Publishing to a scoped topic nobody listens to, with 16 subscribers on other patterns.
async fn run_unmatched(iters: u64) -> Duration {
    let bus: EventBus<Ev> = EventBus::new();
    let _streams: Vec<_> = (0..16).map(|_| bus.stream(PATTERN).unwrap()).collect();
    let topics: Vec<String> = (0..1024)
        .map(|i| format!("calls.audio.raw.4290-20240101_1200{i:04}"))
        .collect();
    let ev = payload();
    let start = Instant::now();
    for i in 0..iters {
        let topic = &topics[i as usize % topics.len()];
        let delivered = bus.publish(topic, Arc::clone(&ev)).await.unwrap();
        debug_assert_eq!(delivered, 0);
    }
    start.elapsed()
}

fn per_event_ns(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / (EVENTS * n) as f64
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The paired bus/raw measurement, printed as a table: the best (least disturbed) and the
/// median round of each, alternating bus and raw so both see the same machine load.
fn print_ratios() {
    const ROUNDS: usize = 15;
    println!("\nbus vs raw tokio mpsc: {EVENTS} events, capacity {CAPACITY}, {ROUNDS} rounds each");
    println!(
        "{:<16} {:>4} {:>13} {:>13} {:>9} {:>13} {:>13} {:>10}",
        "runtime",
        "subs",
        "bus ns (min)",
        "raw ns (min)",
        "ratio",
        "bus ns (med)",
        "raw ns (med)",
        "ratio med"
    );
    for (label, workers) in [("current_thread", 0), ("multi_thread(2)", 2)] {
        let rt = runtime(workers);
        for n in FANOUTS {
            let (mut bus, mut raw) = (Vec::new(), Vec::new());
            rt.block_on(run_bus(n)); // warm-up
            rt.block_on(run_raw(n));
            for _ in 0..ROUNDS {
                bus.push(per_event_ns(rt.block_on(run_bus(n)), n));
                raw.push(per_event_ns(rt.block_on(run_raw(n)), n));
            }
            let (bmin, rmin) = (min(&bus), min(&raw));
            let (bmed, rmed) = (median(bus), median(raw));
            println!(
                "{label:<16} {n:>4} {bmin:>13.1} {rmin:>13.1} {:>8.2}x {bmed:>13.1} {rmed:>13.1} {:>9.2}x",
                bmin / rmin,
                bmed / rmed
            );
        }
    }
    let rt = runtime(0);
    let iters = 1_000_000;
    let d = rt.block_on(run_unmatched(iters));
    println!(
        "unmatched scoped topic, 16 subscribers elsewhere: {:.1} ns/publish\n",
        d.as_nanos() as f64 / iters as f64
    );
}

fn throughput(c: &mut Criterion) {
    // `BUS_BENCH_RATIOS=0` skips the paired table (e.g. when profiling one benchmark).
    if std::env::var_os("BUS_BENCH_RATIOS").is_none_or(|v| v != "0") {
        print_ratios();
    }
    for (label, workers) in [("current_thread", 0), ("multi_thread2", 2)] {
        let rt = runtime(workers);
        let mut group = c.benchmark_group(format!("fanout_{label}"));
        for n in FANOUTS {
            group.throughput(Throughput::Elements((EVENTS * n) as u64));
            group.bench_with_input(BenchmarkId::new("bus", n), &n, |b, &n| {
                b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(run_bus(n))).sum());
            });
            group.bench_with_input(BenchmarkId::new("raw_mpsc", n), &n, |b, &n| {
                b.iter_custom(|iters| (0..iters).map(|_| rt.block_on(run_raw(n))).sum());
            });
        }
        group.finish();
    }
    let rt = runtime(0);
    c.bench_function("publish_unmatched_16_subs", |b| {
        b.iter_custom(|iters| rt.block_on(run_unmatched(iters)));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = throughput
}
criterion_main!(benches);
