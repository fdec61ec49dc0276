//! `bench-sim`: the simulator in its own process for `cargo xtask bench`, so the client's CPU and
//! memory are measured alone.
//!
//! ```text
//! bench-sim --seed 1 --groups 10 --rate 1000 --total 10000 [--port 0 --cdn-port 0] [--preload 15]
//! ```
//! Prints `{"site": URL, "cdn": URL}` as one line on stdout, then waits for a line `start` on
//! stdin and feeds `--rate` calls per second (up to `--total`), ingesting them itself so it knows
//! each call's ingest wall time to the millisecond (the feed's `ts` is whole seconds). When stdin
//! closes (or on SIGTERM) it prints its statistics as one JSON line and exits: requests answered
//! per endpoint, live-calls requests and the seconds they span, calls ingested and served, the
//! audio bytes of the served calls, and `ingest`: call id -> ingest time (epoch seconds).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bcfy_sim::{Endpoint, SimHandle, Simulator};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Parsed flags.
struct Args {
    seed: u64,
    groups: usize,
    rate: f64,
    total: usize,
    port: u16,
    cdn_port: u16,
    preload: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seed: 1,
        groups: 10,
        rate: 100.0,
        total: 1000,
        port: 0,
        cdn_port: 0,
        preload: 0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seed" => a.seed = parse(flag, value)?,
            "--groups" => a.groups = parse(flag, value)?,
            "--rate" => a.rate = parse(flag, value)?,
            "--total" => a.total = parse(flag, value)?,
            "--port" => a.port = parse(flag, value)?,
            "--cdn-port" => a.cdn_port = parse(flag, value)?,
            "--preload" => a.preload = parse(flag, value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: bad value `{value}`"))
}

/// The talkgroups of a run with `n` groups: `4290-1000`, `4290-1001`, ... (bench-client uses
/// the same list).
fn groups(n: usize) -> Vec<(u64, u64)> {
    (0..n.max(1)).map(|i| (4290, 1000 + i as u64)).collect()
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Ingests calls at `rate` per second until `total`, recording each call's ingest wall time.
async fn feed(sim: SimHandle, rate: f64, total: usize, ingest: &mut HashMap<String, f64>) {
    let started = tokio::time::Instant::now();
    let mut done = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while done < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
        if due > done {
            let ids = sim.ingest(due - done);
            let t = epoch_now();
            done = due;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                ingest.insert(id, t);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let sim = Simulator::builder()
        .seed(args.seed)
        .groups(groups(args.groups))
        .calls_per_second(0.0)
        .backfill(Duration::ZERO)
        .late_ingest_probability(0.0)
        .user("demo", "demo-password")
        .port(args.port)
        .cdn_port(args.cdn_port)
        // Long runs must not grow with every request; the counters are kept regardless.
        .record_requests(false)
        .start()
        .await?;
    let mut ingest: HashMap<String, f64> = HashMap::new();
    if args.preload > 0 {
        let t = epoch_now();
        for id in sim.ingest(args.preload) {
            ingest.insert(id, t);
        }
    }
    println!(
        "{}",
        json!({"site": sim.base_url().as_str(), "cdn": sim.cdn_url().as_str()})
    );

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut live_start = (sim.answered(Endpoint::LiveCalls), epoch_now());
    let mut feeding = false;
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(l)) if l.trim() == "start" && !feeding => {
                    feeding = true;
                    live_start = (sim.answered(Endpoint::LiveCalls), epoch_now());
                    feed(sim.clone(), args.rate, args.total, &mut ingest).await;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
            _ = term.recv() => break,
        }
    }
    let live_end = (sim.answered(Endpoint::LiveCalls), epoch_now());
    let served = sim.served_calls();
    let requests: serde_json::Map<String, serde_json::Value> = Endpoint::ALL
        .iter()
        .map(|e| (e.name().to_owned(), json!(sim.answered(*e))))
        .collect();
    let stats = json!({
        "requests": requests,
        "live_requests": live_end.0 - live_start.0,
        "live_seconds": live_end.1 - live_start.1,
        "ingested": sim.ingested_count(),
        "served": served.len(),
        "audio_bytes_served": served.iter().map(|c| c.audio_len).sum::<u64>(),
        "ingest": ingest,
    });
    println!("{stats}");
    sim.shutdown().await;
    Ok(())
}
