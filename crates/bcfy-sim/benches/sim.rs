//! How fast the simulator serves, so it is never the bottleneck of a load test.
//!
//! The simulator runs on ONE core (a current-thread tokio runtime on its own OS thread); the
//! client runs on another current-thread runtime with several keep-alive HTTP/1.1 connections.
//! Measured: live-calls polls per second (each poll returns ~10 calls of two talkgroups, with the
//! cookie and the real form), and audio bytes per second from the CDN, for the real 15 KB calls
//! and for 1 MiB calls (per-call padding). Targets: >= 20,000 polls/s and >= 1 GB/s.
//!
//! `cargo bench -p bcfy-sim --bench sim` (release). Besides criterion's own report, a summary
//! line per figure is printed at the end.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bcfy_sim::{SimHandle, Simulator};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

const START: i64 = 1_758_430_000;
const CONNS: usize = 16;

/// Builds one request of a benchmark.
type MakeRequest = Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync>;

/// Starts a simulator on a dedicated single-threaded runtime and returns its handle.
fn start_sim(padding: usize) -> SimHandle {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sim = Simulator::builder()
                .seed(1)
                .manual_clock(START)
                .calls_per_second(10.0)
                .audio_padding(padding)
                .record_requests(false)
                .start()
                .await
                .unwrap();
            // 2,000 calls over 200 s of simulated time.
            sim.advance(Duration::from_secs(200));
            tx.send(sim.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

async fn connect(url: &url::Url) -> SendRequest<Full<Bytes>> {
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Sends `n` requests made by `make` over `CONNS` connections; returns (elapsed, body bytes).
async fn run(url: &url::Url, n: u64, make: MakeRequest) -> (Duration, u64) {
    let mut senders = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        senders.push(connect(url).await);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        let share = n / CONNS as u64 + u64::from((i as u64) < n % CONNS as u64);
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            for _ in 0..share {
                s.ready().await.unwrap();
                let resp = s.send_request(make()).await.unwrap();
                assert!(resp.status().is_success());
                bytes += resp.into_body().collect().await.unwrap().to_bytes().len() as u64;
            }
            bytes
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.unwrap();
    }
    (t.elapsed(), bytes)
}

fn live_request(sim: &SimHandle) -> MakeRequest {
    let token = sim.create_session();
    let url = format!("{}calls/apis/live-calls", sim.base_url());
    let host = format!("127.0.0.1:{}", sim.base_url().port().unwrap());
    let form = Bytes::from(format!(
        "groups%5B%5D=4290-512&groups%5B%5D=4290-1536&pos={}&doInit=0&systemId=0&sid=0&sessionKey=0a1b2c3d-beef",
        START + 199
    ));
    let cookie = format!("bcfyuser1={token}");
    Arc::new(move || {
        Request::post(url.as_str())
            .header("host", host.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie.as_str())
            .header("x-requested-with", "XMLHttpRequest")
            .body(Full::new(form.clone()))
            .unwrap()
    })
}

fn audio_request(sim: &SimHandle) -> (MakeRequest, u64) {
    let call = sim.ingested_calls().remove(0);
    let hash = call.hash.clone().unwrap();
    let url = format!(
        "{}{hash}/{}/{}.m4a",
        sim.cdn_url(),
        call.node,
        call.filename
    );
    let host = format!("127.0.0.1:{}", sim.cdn_url().port().unwrap());
    (
        Arc::new(move || {
            Request::get(url.as_str())
                .header("host", host.as_str())
                .body(Full::new(Bytes::new()))
                .unwrap()
        }),
        call.audio_len,
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sim = start_sim(0);
    let big = start_sim(1 << 20);
    let live = live_request(&sim);
    // Sanity: a poll returns calls.
    let sample = rt.block_on(run(&sim.base_url(), 1, live.clone())).1;
    assert!(sample > 1000, "poll body {sample} bytes");
    let per_poll = sim
        .ingested_calls()
        .iter()
        .filter(|c| c.ts >= START + 199)
        .count();
    println!("SUMMARY each poll answers {per_poll} calls, {sample} bytes");
    let (small_audio, small_len) = audio_request(&sim);
    let (big_audio, big_len) = audio_request(&big);

    let mut g = c.benchmark_group("sim");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    let u = sim.base_url();
    g.bench_function("live_calls_poll", |b| {
        b.to_async(&rt).iter_custom(|n| {
            let live = live.clone();
            let u = u.clone();
            async move { run(&u, n, live).await.0 }
        });
    });
    g.throughput(Throughput::Bytes(small_len));
    let cu = sim.cdn_url();
    g.bench_function("audio_15k", |b| {
        b.to_async(&rt).iter_custom(|n| {
            let a = small_audio.clone();
            let cu = cu.clone();
            async move { run(&cu, n, a).await.0 }
        });
    });
    g.throughput(Throughput::Bytes(big_len));
    let bu = big.cdn_url();
    g.bench_function("audio_1mib", |b| {
        b.to_async(&rt).iter_custom(|n| {
            let a = big_audio.clone();
            let bu = bu.clone();
            async move { run(&bu, n, a).await.0 }
        });
    });
    g.finish();

    // Plain summary figures, one fixed-size run each.
    let (d, _) = rt.block_on(run(&sim.base_url(), 100_000, live));
    println!(
        "SUMMARY live-calls: {:.0} polls/s (sim on one core)",
        100_000.0 / d.as_secs_f64()
    );
    let (d, bytes) = rt.block_on(run(&sim.cdn_url(), 100_000, small_audio));
    println!(
        "SUMMARY audio 15 KB calls: {:.0} req/s, {:.2} GB/s",
        100_000.0 / d.as_secs_f64(),
        bytes as f64 / d.as_secs_f64() / 1e9
    );
    let (d, bytes) = rt.block_on(run(&big.cdn_url(), 4_000, big_audio));
    println!(
        "SUMMARY audio 1 MiB calls: {:.2} GB/s",
        bytes as f64 / d.as_secs_f64() / 1e9
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
