//! `bench-client`: the bcfy umbrella client as a user runs it, for `cargo xtask bench`.
//!
//! ```text
//! bench-client run --site URL --cdn URL --groups 10 --calls 10000 [--poll-interval 0.5] [--threads 1]
//! bench-client baseline-http --site URL --groups 10 --requests 2000
//! bench-client baseline-bus --events 200000
//! ```
//! `run` polls the talkgroups `4290-1000`.. (as many as `--groups`, the list `bench-sim` serves),
//! downloads every call's audio and publishes every event on the bus, with one subscriber per
//! topic (`calls.live`, `calls.audio.raw`, `calls.audio.failed`); transcription is off; on a
//! current-thread runtime as `tail` runs by default (`--threads N`: N multi-thread workers). It prints
//! `{"ready":true}` once started, then, after `--calls` calls reached their audio topic, one JSON
//! line of figures: per-call arrival wall times on `calls.audio.raw`, CPU time (from
//! `/proc/self/task/*/schedstat`, nanoseconds, and `/proc/self/stat` ticks), peak RSS (VmHWM),
//! RSS sampled every second, the largest live-queue backlog seen, polls and audio bytes.
//!
//! `baseline-http` times the same live-calls request over one pooled HTTP/1.1 connection with a
//! raw hyper-util client and with bcfy-transport's `HttpTransport`; `baseline-bus` times a raw
//! `tokio::sync::mpsc` channel against `bcfy_bus::EventBus` carrying the same events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bcfy::auth::{AuthClient, Credentials};
use bcfy::bus::{EventBus, SubscribeOptions};
use bcfy::proto::{
    AudioConfig, Call, Endpoints, GroupId, LiveCallEnvelope, LiveCallsForm, LiveProducerConfig,
    NodeId, SessionKey, Subscription, TranscriptionConfig,
};
use bcfy::transport::{HttpTransport, Request, SharedTransport, Transport};
use bcfy::{BcfyEvent, Client};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secrecy::SecretString;
use serde_json::json;
use url::Url;
use xtask::bench::procstat;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Flag values by name (`--site URL` → `site`).
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, BoxError> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument `{flag}`"))?;
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            map.insert(name.to_owned(), value.clone());
        }
        Ok(Flags(map))
    }
    fn get<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T, BoxError> {
        match self.0.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: bad value `{v}`").into()),
            None => default.ok_or_else(|| format!("--{name} is required").into()),
        }
    }
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn subscription(groups: usize) -> Result<Subscription, BoxError> {
    let ids = (0..groups.max(1)).map(|i| GroupId::new(4290.into(), (1000 + i as u64).into()));
    Ok(Subscription::talkgroups(ids)?)
}

fn main() -> Result<(), BoxError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mode = argv.first().cloned().unwrap_or_default();
    let flags = Flags::parse(argv.get(1..).unwrap_or_default())?;
    // `--threads 1` (the default, as `tail`): a current-thread runtime; more: a multi-thread
    // runtime with that many workers (the baselines keep the multi-thread default).
    let threads: usize = flags.get("threads", Some(if mode == "run" { 1 } else { 2 }))?;
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let out = runtime.block_on(async {
        match mode.as_str() {
            "run" => run(&flags).await,
            "baseline-http" => baseline_http(&flags).await,
            "baseline-bus" => baseline_bus(&flags).await,
            _ => Err("usage: bench-client run|baseline-http|baseline-bus [--flags]".into()),
        }
    })?;
    println!("{out}");
    Ok(())
}

/// What the subscribers saw.
#[derive(Default)]
struct Seen {
    /// Call id and wall time (epoch seconds) of each `calls.audio.raw` event, in order.
    audio: Vec<(String, f64)>,
    audio_bytes: u64,
    failed: u64,
}

async fn run(flags: &Flags) -> Result<serde_json::Value, BoxError> {
    let site: Url = flags.get("site", None)?;
    let cdn: Url = flags.get("cdn", None)?;
    let groups: usize = flags.get("groups", Some(10))?;
    let calls: u64 = flags.get("calls", None)?;
    let poll: f64 = flags.get("poll-interval", Some(0.5))?;
    let timeout: f64 = flags.get("timeout", Some(600.0))?;

    let live = LiveProducerConfig {
        poll_interval: Duration::from_secs_f64(poll),
        // The feed starts right after the client: never cut the first answer.
        max_init_backlog: 1_000_000,
        ..LiveProducerConfig::default()
    };
    let client = Client::builder()
        .credentials("demo", SecretString::from("demo-password"))
        .endpoints(Endpoints {
            site,
            calls_cdn: cdn,
        })
        .live_config(live)
        .audio_config(AudioConfig::default())
        .transcription_config(TranscriptionConfig {
            enabled: false,
            ..TranscriptionConfig::default()
        })
        .build()?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let live_count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut live_stream = client.stream(bcfy::topics::CALLS_LIVE)?;
    let mut audio_stream = client.stream(bcfy::topics::CALLS_AUDIO_RAW)?;
    let mut failed_stream = client.stream(bcfy::topics::CALLS_AUDIO_FAILED)?;
    let lc = live_count.clone();
    tokio::spawn(async move {
        while live_stream.recv().await.is_some() {
            lc.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (s, d) = (seen.clone(), done.clone());
    tokio::spawn(async move {
        while let Some(ev) = audio_stream.recv().await {
            let t = epoch_now();
            if let BcfyEvent::Audio(a) = &ev.payload {
                let mut g = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                g.audio.push((a.call_id.to_string(), t));
                g.audio_bytes += a.payload.len() as u64;
                if g.audio.len() as u64 + g.failed >= calls {
                    d.notify_one();
                }
            }
        }
    });
    let (s, d) = (seen.clone(), done.clone());
    tokio::spawn(async move {
        while failed_stream.recv().await.is_some() {
            let mut g = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            g.failed += 1;
            if g.audio.len() as u64 + g.failed >= calls {
                d.notify_one();
            }
        }
    });

    client.create_live_producer(subscription(groups)?)?;
    client.start().await?;
    let cpu_ready = procstat::cpu_self();
    let ready_at = epoch_now();
    println!("{}", json!({"ready": true}));

    let mut rss = Vec::new();
    let mut max_backlog = 0usize;
    let mut sample = tokio::time::interval(Duration::from_millis(100));
    let deadline = tokio::time::sleep(Duration::from_secs_f64(timeout));
    tokio::pin!(deadline);
    let mut ticks = 0u64;
    let mut timed_out = false;
    loop {
        tokio::select! {
            () = done.notified() => break,
            () = &mut deadline => { timed_out = true; break }
            _ = sample.tick() => {
                max_backlog = max_backlog.max(client.backlog());
                if ticks.is_multiple_of(10) {
                    rss.push(procstat::status_kb("VmRSS").unwrap_or(0));
                }
                ticks += 1;
            }
        }
    }
    let cpu_done = procstat::cpu_self();
    let done_at = epoch_now();
    rss.push(procstat::status_kb("VmRSS").unwrap_or(0));
    let stats = client.stats();
    let last_error = client.health().last_error;
    let hwm = procstat::status_kb("VmHWM").unwrap_or(0);
    let _ = client.shutdown(Duration::from_secs(10)).await;

    let g = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let arrivals: serde_json::Map<String, serde_json::Value> = g
        .audio
        .iter()
        .map(|(id, t)| (id.clone(), json!(t)))
        .collect();
    let polls: u64 = stats.producers.iter().map(|p| p.polls).sum();
    let audio = stats.audio.unwrap_or_default();
    Ok(json!({
        "timed_out": timed_out,
        "calls": g.audio.len(),
        "audio_failed": g.failed,
        "live_events": live_count.load(Ordering::Relaxed),
        "ready_at": ready_at,
        "done_at": done_at,
        "cpu_ns": cpu_done.sched_ns.saturating_sub(cpu_ready.sched_ns),
        "cpu_ticks_ms": cpu_done.ticks_ms.saturating_sub(cpu_ready.ticks_ms),
        "cpu_ns_total": cpu_done.sched_ns,
        "vmhwm_kb": hwm,
        "rss_kb": rss,
        "max_backlog": max_backlog,
        "polls": polls,
        "audio_bytes_read": g.audio_bytes,
        "audio_requests": audio.requests,
        "audio_retries": audio.retries,
        "logins": stats.auth.logins,
        "successful_polls": stats.producers.iter().map(|p| p.successful_polls).sum::<u64>(),
        "poll_retries": stats.producers.iter().map(|p| p.retries).sum::<u64>(),
        "last_error": last_error,
        "arrivals": arrivals,
    }))
}

/// The live-calls request as the producer sends it, for both baselines.
struct LiveRequest {
    url: Url,
    body: String,
    origin: String,
    referer: String,
}

async fn baseline_http(flags: &Flags) -> Result<serde_json::Value, BoxError> {
    let site: Url = flags.get("site", None)?;
    let groups: usize = flags.get("groups", Some(10))?;
    let n: usize = flags.get("requests", Some(2000))?;
    let transport = Arc::new(HttpTransport::builder().build()?);
    let shared: SharedTransport = transport.clone();
    let login = AuthClient::new(shared.clone(), site.clone())
        .login(&Credentials::new("demo", "demo-password"))
        .await?;
    let token = login.token;
    transport.session().set(Some(token.clone()));
    let sub = subscription(groups)?;
    let key = SessionKey::new(0x1234_abcd, 0x5678);
    let req = LiveRequest {
        url: site.join("calls/apis/live-calls")?,
        body: LiveCallsForm {
            subscription: &sub,
            pos: (epoch_now() - 600.0).floor(),
            do_init: false,
            session_key: &key,
        }
        .encode(),
        origin: site.origin().ascii_serialization(),
        referer: site.join("calls/")?.to_string(),
    };

    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let cookie = format!("bcfyuser1={}", token.expose_secret());
    let accept_language = bcfy::proto::TransportConfig::default().accept_language;
    let raw_once = || async {
        let r = hyper::Request::post(req.url.as_str())
            .header("user-agent", bcfy::proto::DEFAULT_USER_AGENT)
            .header("accept", bcfy::transport::DEFAULT_ACCEPT)
            .header("accept-language", accept_language.as_str())
            .header("connection", "keep-alive")
            .header("accept-encoding", bcfy::transport::ACCEPT_ENCODING_VALUE)
            .header("cookie", cookie.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-requested-with", "XMLHttpRequest")
            .header("origin", req.origin.as_str())
            .header("referer", req.referer.as_str())
            .body(Full::new(Bytes::from(req.body.clone())))?;
        let resp = raw.request(r).await?;
        if !resp.status().is_success() {
            return Err::<usize, BoxError>(format!("raw: HTTP {}", resp.status()).into());
        }
        Ok(resp.into_body().collect().await?.to_bytes().len())
    };
    let transport_once = || async {
        let r = Request::post_form(req.url.clone(), req.body.clone())
            .header("x-requested-with", "XMLHttpRequest")
            .header("origin", req.origin.as_str())
            .header("referer", req.referer.as_str());
        let resp = shared.send(r).await?;
        if !resp.status().is_success() {
            return Err::<usize, BoxError>(format!("transport: HTTP {}", resp.status()).into());
        }
        Ok(resp.bytes().await?.len())
    };
    let mut body_len = 0;
    for _ in 0..50 {
        body_len = raw_once().await?;
        transport_once().await?;
    }
    // Paired rounds, the order swapped every round so a drift of the machine's speed falls on
    // both sides; the figure is the median of the rounds' ratios (one round is easily 10% off on
    // a shared VM).
    let (mut raw_rps, mut transport_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..7 {
        let mut pair = [0.0f64; 2];
        for side in [round % 2, 1 - round % 2] {
            let t = Instant::now();
            for _ in 0..n {
                if side == 0 {
                    raw_once().await?;
                } else {
                    transport_once().await?;
                }
            }
            pair[side] = n as f64 / t.elapsed().as_secs_f64();
        }
        raw_rps.push(pair[0]);
        transport_rps.push(pair[1]);
        ratios.push(pair[1] / pair[0]);
    }
    for v in [&mut raw_rps, &mut transport_rps, &mut ratios] {
        v.sort_by(f64::total_cmp);
    }
    let mid = ratios.len() / 2;
    Ok(json!({
        "requests": n,
        "rounds": ratios.len(),
        "response_bytes": body_len,
        "raw_rps": raw_rps[mid],
        "transport_rps": transport_rps[mid],
        "ratio": ratios[mid],
        "ratio_min": ratios[0],
        "ratio_max": ratios[ratios.len() - 1],
    }))
}

async fn baseline_bus(flags: &Flags) -> Result<serde_json::Value, BoxError> {
    let n: u64 = flags.get("events", Some(200_000))?;
    let call = Arc::new(Call::new(
        1_758_428_083,
        NodeId::new(2893),
        "1758428077-1000",
    ));
    let event = BcfyEvent::Live(Arc::new(LiveCallEnvelope::new(
        call,
        None,
        SystemTime::now(),
    )));
    let capacity = 256;
    let (mut best_mpsc, mut best_bus) = (0.0f64, 0.0f64);
    for _round in 0..3 {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<BcfyEvent>(capacity);
        let t = Instant::now();
        let ev = event.clone();
        let producer = tokio::spawn(async move {
            for _ in 0..n {
                if tx.send(ev.clone()).await.is_err() {
                    break;
                }
            }
        });
        let mut got = 0u64;
        while rx.recv().await.is_some() {
            got += 1;
        }
        producer.await?;
        assert_eq!(got, n);
        best_mpsc = best_mpsc.max(n as f64 / t.elapsed().as_secs_f64());

        let bus: EventBus<BcfyEvent> = EventBus::new();
        let mut stream = bus.stream_with(
            bcfy::topics::CALLS_LIVE,
            SubscribeOptions::default().capacity(capacity),
        )?;
        let t = Instant::now();
        let (b, ev) = (bus.clone(), event.clone());
        let producer = tokio::spawn(async move {
            for _ in 0..n {
                if b.publish(bcfy::topics::CALLS_LIVE, ev.clone())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            b.shutdown().await;
        });
        let mut got = 0u64;
        while stream.recv().await.is_some() {
            got += 1;
            if got == n {
                break;
            }
        }
        best_bus = best_bus.max(n as f64 / t.elapsed().as_secs_f64());
        producer.await?;
    }
    Ok(json!({
        "events": n,
        "mpsc_eps": best_mpsc,
        "bus_eps": best_bus,
        "ratio": best_bus / best_mpsc,
    }))
}
