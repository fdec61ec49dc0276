//! Cost per call of reading a live-calls answer, beside a bare `serde_json::Value` parse of
//! the same body, measured in the same run.
//!
//! The body is the real fixture's calls repeated to `CALLS` distinct calls (about 950 bytes
//! each, as the service sends them). Paths:
//! - `serde_json::Value`: the whole body into a `Value` tree (the floor for any tolerant parse);
//! - `before`: what the live producer did before: each entry as a `Value`, read into a `Call`,
//!   then `Call::to_value` to rebuild its raw payload;
//! - `from_slice`: every call parsed, its entry kept as the raw payload;
//! - `skipping 2/3`: `from_slice_skipping` with two thirds of the calls already known (a busy
//!   poll: the one-second cursor overlap returns each call two or three times).
//!
//! Before the criterion groups, a paired measurement prints each path's cost per call and its
//! ratio to the bare parse (best of several alternating rounds).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bcfy_proto::{Call, CallId, LiveCallsResponse};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

const CALLS: usize = 1_000;
const ROUNDS: usize = 7;

/// `CALLS` distinct calls made from the real fixture's entries.
fn body() -> Vec<u8> {
    let real: Value =
        serde_json::from_slice(include_bytes!("../tests/fixtures/real/live-calls.json")).unwrap();
    let entries = real["calls"].as_array().unwrap();
    let calls: Vec<Value> = (0..CALLS)
        .map(|i| {
            let mut e = entries[i % entries.len()].clone();
            e["filename"] = json!(format!("{}-{}", 1_758_428_366 + i, 512 + i % 10));
            e["ts"] = json!(1_758_428_382 + i / 100);
            e
        })
        .collect();
    serde_json::to_vec(
        &json!({"serverTime": 1_758_430_161, "lastPos": 1_758_428_391, "calls": calls}),
    )
    .unwrap()
}

/// Two of every three calls of the body.
fn known(body: &[u8]) -> HashSet<CallId> {
    let all = LiveCallsResponse::from_slice(body).unwrap();
    all.calls
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, c)| c.call_id())
        .collect()
}

fn bare(body: &[u8]) -> usize {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["calls"].as_array().map_or(0, Vec::len)
}

/// The producer's path before `from_json`/`RawCall`: each entry as a `Value`, read into a `Call`,
/// and its raw payload rebuilt by `to_value`.
fn before(body: &[u8]) -> usize {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| usize::from(black_box(Call::from_value(e).unwrap().to_value()).is_object()))
        .sum()
}

fn parse(body: &[u8]) -> usize {
    LiveCallsResponse::from_slice(body).unwrap().calls.len()
}

fn skipping(body: &[u8], known: &HashSet<CallId>) -> usize {
    let r = LiveCallsResponse::from_slice_skipping(body, |id| known.contains(id)).unwrap();
    r.calls.len() + r.skipped
}

fn time(mut f: impl FnMut() -> usize) -> Duration {
    let start = Instant::now();
    for _ in 0..20 {
        black_box(f());
    }
    start.elapsed() / 20
}

fn paired() {
    let body = body();
    let known = known(&body);
    let mut best = [Duration::MAX; 4];
    for _ in 0..ROUNDS {
        let t = [
            time(|| bare(&body)),
            time(|| before(&body)),
            time(|| parse(&body)),
            time(|| skipping(&body, &known)),
        ];
        for (b, t) in best.iter_mut().zip(t) {
            *b = (*b).min(t);
        }
    }
    let per_call = |d: Duration| d.as_nanos() as f64 / CALLS as f64 / 1000.0;
    println!(
        "live-calls answer of {CALLS} calls ({} KB), µs per call, best of {ROUNDS} rounds:",
        body.len() / 1000
    );
    let names = [
        "serde_json::Value (bare parse)",
        "before (Value, from_value, to_value)",
        "from_slice (text kept as raw)",
        "from_slice_skipping, 2/3 known",
    ];
    for (name, b) in names.iter().zip(best) {
        println!(
            "  {name:<37} {:>7.3} µs   {:>5.2}x the bare parse",
            per_call(b),
            b.as_secs_f64() / best[0].as_secs_f64()
        );
    }
}

fn benches(c: &mut Criterion) {
    paired();
    let body = body();
    let known = known(&body);
    let mut g = c.benchmark_group("live_calls_answer");
    g.throughput(Throughput::Elements(CALLS as u64));
    g.bench_function("serde_json_value", |b| b.iter(|| bare(black_box(&body))));
    g.bench_function("before_from_slice_to_value", |b| {
        b.iter(|| before(black_box(&body)));
    });
    g.bench_function("from_slice", |b| b.iter(|| parse(black_box(&body))));
    g.bench_function("from_slice_skipping_two_thirds", |b| {
        b.iter(|| skipping(black_box(&body), &known));
    });
    g.finish();
}

criterion_group!(parse_benches, benches);
criterion_main!(parse_benches);
