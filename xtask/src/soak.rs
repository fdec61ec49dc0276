//! `cargo xtask soak`: the umbrella client against a simulator that misbehaves on a fraction of
//! its requests, with every fault kind the simulator has at once.
//!
//! The simulator runs in-process; the client is `bcfy::Client` as a user runs it (live polling,
//! audio, transcription, one bus subscriber per topic). The run asserts, and exits non-zero when
//! any assertion fails:
//! - every call the simulator served reaches `calls.live` exactly once, in `ts` order, and then
//!   exactly one of `calls.audio.raw` (with the audio's SHA-256 the simulator computed) or
//!   `calls.audio.failed` (only when the audio retry budget ran out; counted), in the same order;
//!   no call the simulator ingested is lost;
//! - the simulator's request log keeps the service contract (`contract/broadcastify.toml`:
//!   browser headers, form, poll interval, login single-flight and bursts, Retry-After, dead
//!   tokens), checked with the poll interval × (1 − jitter) as the minimum;
//! - a stalled `calls.audio.raw` subscriber (it stops reading for a while mid-run) loses
//!   nothing, polling pauses while it is stalled, and memory stays flat (RSS every second; the
//!   largest sample of the stall's last quarter within 10% of its first quarter's);
//! - no log line (everything at TRACE, written to a file), error message, `Debug` output or
//!   JSONL line holds the password, any session token the simulator issued, or the
//!   transcription key.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bcfy::proto::{
    AudioConfig, Endpoints, GroupId, LiveProducerConfig, Subscription, TranscriptionConfig,
};
use bcfy::{BcfyEvent, Client, topics};
use bcfy_sim::{Endpoint, Fault, FaultPlan, RetryAfter, Simulator};
use secrecy::SecretString;

use crate::bench::procstat;
use crate::contract::{CheckOptions, Contract, from_sim};

/// Options of one soak run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Calls the simulator feeds.
    pub calls: u64,
    /// Fraction of requests (per endpoint) that suffer a fault, spread evenly over the kinds.
    pub faults: f64,
    /// Calls per second fed.
    pub rate: f64,
    /// How long the `calls.audio.raw` subscriber stalls.
    pub stall: Duration,
    /// Feed and fault seed.
    pub seed: u64,
}

impl SoakOptions {
    /// `--quick` (CI: about 1,000 calls) or the full run (10,000 calls).
    pub fn new(quick: bool) -> SoakOptions {
        SoakOptions {
            calls: if quick { 1000 } else { 10_000 },
            faults: 0.10,
            rate: if quick { 10.0 } else { 15.0 },
            stall: Duration::from_secs(if quick { 22 } else { 30 }),
            seed: 7,
        }
    }
}

/// The client's poll interval and jitter in the soak (the simulator is local).
const POLL_INTERVAL: f64 = 0.5;
const JITTER: f64 = 0.1;
/// Retry-After of every simulated 429/503, seconds.
const RETRY_AFTER_SECS: u64 = 1;
/// Sessions die after this many authenticated requests.
const SESSION_EXPIRY: u64 = 25;
/// Time the bounded queues need to fill once the subscriber stalls; polling must have paused
/// after it. About 90 calls fit between the producer and the stalled subscriber (live queue
/// 32, audio queue 16, bus queue 16, downloads in flight, dispatcher), 9 s at the quick feed
/// of 10 calls/s: the producer keeps polling until its queue is full, by design.
const STALL_SETTLE: Duration = Duration::from_secs(12);

/// Every fault kind the simulator has, `p` of the requests of each endpoint in all.
pub fn fault_plan(p: f64) -> FaultPlan {
    let ra = RetryAfter::Seconds(RETRY_AFTER_SECS);
    let date = RetryAfter::HttpDate(Duration::from_secs(RETRY_AFTER_SECS));
    let slow_headers = Fault::SlowHeaders(Duration::from_millis(300));
    let slow_body = Fault::SlowBody(Duration::from_millis(40));
    let live = [
        Fault::TooManyRequests(Some(ra)),
        Fault::Unavailable(Some(date)),
        Fault::ResetMidBody,
        slow_headers.clone(),
        slow_body.clone(),
        Fault::MalformedJson,
        Fault::HostileEntries,
        Fault::DuplicateCalls,
        Fault::LastPosBackwards,
    ];
    let audio = [
        Fault::TooManyRequests(Some(ra)),
        Fault::Unavailable(Some(ra)),
        Fault::ResetMidBody,
        slow_headers.clone(),
        slow_body,
        Fault::TruncatedBody,
    ];
    let whisper = [
        Fault::TooManyRequests(Some(ra)),
        Fault::Unavailable(Some(date)),
        Fault::ResetMidBody,
        slow_headers,
    ];
    let mut plan = FaultPlan::none();
    for (ep, faults) in [
        (Endpoint::LiveCalls, &live[..]),
        (Endpoint::Audio, &audio[..]),
        (Endpoint::Transcription, &whisper[..]),
    ] {
        let each = p / faults.len() as f64;
        for f in faults {
            plan = plan.random(ep, each, f.clone());
        }
    }
    plan.session_expiry_after(SESSION_EXPIRY)
        .dual_upload(p / 5.0)
}

/// A file every log line and JSONL line goes to, scanned at the end.
#[derive(Clone)]
struct Sink(Arc<Mutex<BufWriter<std::fs::File>>>);

impl Sink {
    fn create(path: &PathBuf) -> Result<Sink, String> {
        let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Sink(Arc::new(Mutex::new(BufWriter::new(f)))))
    }
    fn line(&self, s: &str) {
        let mut w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = w.write_all(s.as_bytes());
        let _ = w.write_all(b"\n");
    }
    fn flush(&self) {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush();
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}

/// What the subscribers saw, in arrival order per topic.
#[derive(Default)]
struct Seen {
    live: Vec<(String, i64)>,
    audio: Vec<(String, String)>,
    failed: Vec<(String, u32, String)>,
    transcripts: Vec<(String, String)>,
    transcript_failed: Vec<(String, String)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One assertion's outcome.
struct Check {
    name: &'static str,
    pass: bool,
    detail: String,
}

fn check(name: &'static str, pass: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        pass,
        detail: detail.into(),
    }
}

fn random_hex() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", n, std::process::id())
}

/// `cargo xtask soak [--quick] [--calls N] [--faults P] [--rate R] [--stall SECS] [--seed S]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut o = SoakOptions::new(args.iter().any(|a| a == "--quick"));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Result<f64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match a.as_str() {
            "--quick" => {}
            "--calls" => o.calls = val("--calls")? as u64,
            "--faults" => o.faults = val("--faults")?,
            "--rate" => o.rate = val("--rate")?,
            "--stall" => o.stall = Duration::from_secs_f64(val("--stall")?),
            "--seed" => o.seed = val("--seed")? as u64,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let log_path = std::env::temp_dir().join(format!("bcfy-soak-{}.log", std::process::id()));
    let sink = Sink::create(&log_path)?;
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .map_err(|e| format!("tracing: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let checks = rt.block_on(soak(&o, &sink, &log_path))?;
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.pass).collect();
    println!("soak: {} calls, faults {:.0}%", o.calls, o.faults * 100.0);
    for c in &checks {
        println!(
            "  {:<4} {:<28} {}",
            if c.pass { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    if failed.is_empty() {
        let _ = std::fs::remove_file(&log_path);
        println!("soak: all {} checks passed", checks.len());
        Ok(())
    } else {
        eprintln!(
            "soak: the TRACE log is kept in {}; every violation and the request log in {}",
            log_path.display(),
            std::env::temp_dir()
                .join("bcfy-soak-violations.txt")
                .display()
        );
        Err(format!(
            "{} of {} soak checks failed",
            failed.len(),
            checks.len()
        ))
    }
}

#[allow(clippy::too_many_lines)]
async fn soak(o: &SoakOptions, sink: &Sink, log_path: &PathBuf) -> Result<Vec<Check>, String> {
    let password = format!("soak-pw-{}", random_hex());
    let whisper_key = format!("sk-soak-{}", random_hex());
    let groups: Vec<(u64, u64)> = (0..10).map(|i| (4290, 1000 + i)).collect();
    let sim = Simulator::builder()
        .seed(o.seed)
        .groups(groups.clone())
        .calls_per_second(o.rate)
        .total_calls(Some(o.calls))
        .backfill(Duration::ZERO)
        .user("soak", &password)
        .whisper_key(whisper_key.clone())
        .faults(fault_plan(o.faults))
        .record_requests(true)
        .start()
        .await
        .map_err(|e| e.to_string())?;

    let client = Client::builder()
        .credentials("soak", SecretString::from(password.clone()))
        .endpoints(Endpoints {
            site: sim.base_url(),
            calls_cdn: sim.cdn_url(),
        })
        .live_config(LiveProducerConfig {
            poll_interval: Duration::from_secs_f64(POLL_INTERVAL),
            jitter_ratio: JITTER,
            // Small queues, so a stalled subscriber reaches the producer within seconds.
            queue_maxsize: 32,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            max_init_backlog: 1_000_000,
            ..LiveProducerConfig::default()
        })
        .audio_config(AudioConfig {
            queue_size: 16,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            ..AudioConfig::default()
        })
        .transcription_config(TranscriptionConfig {
            enabled: true,
            endpoint_url: Some(sim.whisper_url()),
            api_key: Some(SecretString::from(whisper_key.clone())),
            queue_size: 16,
            ..TranscriptionConfig::default()
        })
        .bus_capacity(16)
        .build()
        .map_err(|e| e.to_string())?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let stall_at = o.calls * 3 / 10;
    let stall_window: Arc<Mutex<Option<(SystemTime, SystemTime)>>> = Arc::new(Mutex::new(None));
    let stalled = Arc::new(AtomicBool::new(false));
    let mut errors: Vec<String> = Vec::new();

    let spawn_topic = |topic: &'static str| -> Result<_, String> {
        let mut stream = client.stream(topic).map_err(|e| e.to_string())?;
        let (seen, sink, delivered) = (seen.clone(), sink.clone(), delivered.clone());
        let (stall_window, stalled, stall) = (stall_window.clone(), stalled.clone(), o.stall);
        Ok(tokio::spawn(async move {
            while let Some(ev) = stream.recv().await {
                sink.line(&ev.payload.to_json_line());
                let mut stall_now = false;
                {
                    let mut g = lock(&seen);
                    match &ev.payload {
                        BcfyEvent::Live(e) => g.live.push((e.call_id().to_string(), e.call.ts)),
                        BcfyEvent::Audio(a) => {
                            g.audio
                                .push((a.call_id.to_string(), bcfy::event::sha256_hex(&a.payload)));
                            delivered.fetch_add(1, Ordering::Relaxed);
                            stall_now = g.audio.len() as u64 >= stall_at
                                && !stalled.swap(true, Ordering::SeqCst);
                        }
                        BcfyEvent::AudioFailed(f) => {
                            g.failed
                                .push((f.call_id.to_string(), f.attempts, f.error.clone()));
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        BcfyEvent::Transcript(t) => {
                            g.transcripts.push((t.call_id.to_string(), t.text.clone()));
                        }
                        BcfyEvent::TranscriptFailed(t) => g
                            .transcript_failed
                            .push((t.call_id.to_string(), t.error.clone())),
                        _ => {}
                    }
                }
                if stall_now {
                    // The subscriber stops reading: everything behind it must back up.
                    let t0 = SystemTime::now();
                    tokio::time::sleep(stall).await;
                    *lock(&stall_window) = Some((t0, SystemTime::now()));
                }
            }
        }))
    };
    let tasks = vec![
        spawn_topic(topics::CALLS_LIVE)?,
        spawn_topic(topics::CALLS_AUDIO_RAW)?,
        spawn_topic(topics::CALLS_AUDIO_FAILED)?,
        spawn_topic(topics::TRANSCRIPTION_COMPLETE)?,
        spawn_topic(topics::TRANSCRIPTION_FAILED)?,
    ];

    let rss: Arc<Mutex<Vec<(SystemTime, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let rss = rss.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some(kb) = procstat::status_kb("VmRSS") {
                    lock(&rss).push((SystemTime::now(), kb));
                }
            }
        })
    };

    let subscription = Subscription::talkgroups(
        groups
            .iter()
            .map(|&(s, t)| GroupId::new(s.into(), t.into())),
    )
    .map_err(|e| e.to_string())?;
    client
        .create_live_producer(subscription)
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    if let Err(e) = client.start().await {
        errors.push(e.to_string());
        return Err(format!("client start: {e}"));
    }

    // Run until every ingested call reached its audio topic (or the time limit).
    let limit = Duration::from_secs_f64(o.calls as f64 / o.rate * 4.0 + 300.0);
    let mut ingested_ids: Option<HashSet<String>> = None;
    let mut last_report = Instant::now();
    let timed_out = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if started.elapsed() > limit {
            break true;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            eprintln!(
                "soak: {:.0}s, ingested {}, served {}, delivered {}",
                started.elapsed().as_secs_f64(),
                sim.ingested_count(),
                sim.served_calls().len(),
                delivered.load(Ordering::Relaxed)
            );
        }
        if ingested_ids.is_none() && sim.feed_exhausted() {
            ingested_ids = Some(
                sim.ingested_calls()
                    .into_iter()
                    .map(|c| c.call_id)
                    .collect(),
            );
        }
        if let Some(ids) = &ingested_ids
            && delivered.load(Ordering::Relaxed) >= ids.len() as u64
        {
            let g = lock(&seen);
            let got: HashSet<&str> = g
                .audio
                .iter()
                .map(|a| a.0.as_str())
                .chain(g.failed.iter().map(|f| f.0.as_str()))
                .collect();
            if ids.iter().all(|id| got.contains(id.as_str())) {
                break false;
            }
        }
    };
    let elapsed = started.elapsed();
    let stats = client.stats();
    let health = client.health();
    errors.push(format!("{stats:?}"));
    errors.push(format!("{health:?}"));
    errors.push(format!("{client:?}"));
    if let Some(e) = &health.last_error {
        errors.push(e.clone());
    }
    match client.shutdown(Duration::from_secs(30)).await {
        Ok(r) => errors.push(format!("{r:?}")),
        Err(e) => {
            errors.push(e.to_string());
            errors.push(format!("{e:?}"));
        }
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    sampler.abort();

    // ---- checks ----
    let mut checks = Vec::new();
    let served = sim.served_calls();
    let ingested = sim.ingested_calls();
    let requests = sim.requests();
    let g = std::mem::take(&mut *lock(&seen));
    checks.push(check(
        "completed",
        !timed_out,
        format!(
            "{} calls ingested, {} served, in {:.0}s{}",
            ingested.len(),
            served.len(),
            elapsed.as_secs_f64(),
            if timed_out { " (TIMED OUT)" } else { "" }
        ),
    ));

    // Exactly once on calls.live, in ts order.
    let mut live_count: HashMap<&str, usize> = HashMap::new();
    for (id, _) in &g.live {
        *live_count.entry(id.as_str()).or_default() += 1;
    }
    let dup_live: Vec<&&str> = live_count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let missing_live: Vec<&str> = served
        .iter()
        .filter(|c| !live_count.contains_key(c.call_id.as_str()))
        .map(|c| c.call_id.as_str())
        .collect();
    checks.push(check(
        "calls.live exactly once",
        dup_live.is_empty() && missing_live.is_empty(),
        format!(
            "{} events; {} served calls missing, {} repeated{}",
            g.live.len(),
            missing_live.len(),
            dup_live.len(),
            missing_live
                .first()
                .map(|id| format!(" (e.g. {id})"))
                .unwrap_or_default()
        ),
    ));
    let out_of_order = g.live.windows(2).filter(|w| w[1].1 < w[0].1).count();
    checks.push(check(
        "calls.live in ts order",
        out_of_order == 0,
        format!("{out_of_order} calls with a ts below the previous one"),
    ));
    let ingested_set: HashSet<&str> = ingested.iter().map(|c| c.call_id.as_str()).collect();
    let foreign = live_count
        .keys()
        .filter(|id| !ingested_set.contains(**id))
        .count();
    let lost: Vec<&str> = ingested
        .iter()
        .filter(|c| !live_count.contains_key(c.call_id.as_str()))
        .map(|c| c.call_id.as_str())
        .collect();
    checks.push(check(
        "no ingested call lost",
        lost.is_empty(),
        format!(
            "{} ingested calls never on calls.live; {foreign} calls.live events are not simulator calls",
            lost.len()
        ),
    ));

    // Exactly once on audio (or failure), right hash, same order as calls.live.
    let live_index: HashMap<&str, usize> = g
        .live
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let mut audio_count: HashMap<&str, usize> = HashMap::new();
    for id in g
        .audio
        .iter()
        .map(|a| a.0.as_str())
        .chain(g.failed.iter().map(|f| f.0.as_str()))
    {
        *audio_count.entry(id).or_default() += 1;
    }
    let audio_sha: HashMap<&str, &str> = g
        .audio
        .iter()
        .map(|(id, sha)| (id.as_str(), sha.as_str()))
        .collect();
    let failed_ids: HashSet<&str> = g.failed.iter().map(|f| f.0.as_str()).collect();
    let mut missing_audio = 0;
    let mut wrong_hash = Vec::new();
    let mut served_failed = 0;
    for c in &served {
        match audio_count.get(c.call_id.as_str()) {
            None => missing_audio += 1,
            Some(_) if failed_ids.contains(c.call_id.as_str()) => served_failed += 1,
            Some(_) => {
                if audio_sha.get(c.call_id.as_str()) != Some(&c.audio_sha256.as_str()) {
                    wrong_hash.push(c.call_id.as_str());
                }
            }
        }
    }
    let dup_audio = audio_count.values().filter(|n| **n > 1).count();
    checks.push(check(
        "audio exactly once",
        missing_audio == 0 && dup_audio == 0,
        format!(
            "{} on calls.audio.raw, {} on calls.audio.failed ({served_failed} of them simulator calls whose retry budget ran out); {missing_audio} served calls missing, {dup_audio} repeated",
            g.audio.len(),
            g.failed.len()
        ),
    ));
    checks.push(check(
        "audio sha256",
        wrong_hash.is_empty(),
        format!(
            "{} served calls with a different hash{}",
            wrong_hash.len(),
            wrong_hash
                .first()
                .map(|id| format!(" (e.g. {id})"))
                .unwrap_or_default()
        ),
    ));
    let in_live_order = |ids: &mut dyn Iterator<Item = &str>| -> usize {
        let idx: Vec<usize> = ids.filter_map(|id| live_index.get(id).copied()).collect();
        idx.windows(2).filter(|w| w[1] < w[0]).count()
    };
    let audio_disorder = in_live_order(&mut g.audio.iter().map(|a| a.0.as_str()));
    let failed_disorder = in_live_order(&mut g.failed.iter().map(|a| a.0.as_str()));
    checks.push(check(
        "audio in calls.live order",
        audio_disorder == 0 && failed_disorder == 0,
        format!("{audio_disorder} audio and {failed_disorder} failure events out of order"),
    ));
    let wrong_text = g
        .transcripts
        .iter()
        .filter(|(id, text)| {
            sim.transcript_for(id)
                .is_some_and(|t| t.trim() != text.trim())
        })
        .count();
    checks.push(check(
        "transcripts (informational)",
        true,
        format!(
            "{} complete, {} failed, {wrong_text} with a text other than the simulator's{}",
            g.transcripts.len(),
            g.transcript_failed.len(),
            g.transcript_failed
                .first()
                .map(|(_, e)| format!("; first failure: {e}"))
                .unwrap_or_default()
        ),
    ));

    // The contract on the simulator's request log.
    let contract = Contract::load()?;
    // The log is appended as answers are composed; the checker wants arrival order.
    let mut by_arrival = requests.clone();
    by_arrival.sort_by_key(|r| r.time);
    let observed = from_sim(&by_arrival);
    let violations = contract.check_requests(
        &observed,
        CheckOptions {
            min_poll_interval_secs: Some(POLL_INTERVAL * (1.0 - JITTER)),
        },
    );
    if let Ok(mut f) = std::fs::File::create(std::env::temp_dir().join("bcfy-soak-violations.txt"))
    {
        for v in &violations {
            let _ = writeln!(f, "{v}");
        }
        for (i, r) in observed.iter().enumerate() {
            let _ = writeln!(
                f,
                "#{i} {:.3} {:?} {} {} {} tok={}",
                r.start,
                r.host,
                r.method,
                r.path,
                r.status,
                r.headers
                    .iter()
                    .find(|h| h.0 == "cookie")
                    .map_or("-", |h| &h.1[h.1.len().saturating_sub(6)..])
            );
        }
    }
    let mut by_rule: HashMap<&str, usize> = HashMap::new();
    for v in &violations {
        let n = by_rule.entry(v.rule.as_str()).or_default();
        *n += 1;
        if *n <= 5 {
            eprintln!("soak: contract: {v}");
        }
    }
    let by_status = |ep: Endpoint, status: u16| {
        requests
            .iter()
            .filter(|r| r.endpoint == ep && r.status.as_u16() == status)
            .count()
    };
    checks.push(check(
        "contract",
        violations.is_empty(),
        format!(
            "{} requests ({} live-calls, {} audio, {} whisper, {} logins; 429/503: live {}/{}, audio {}/{}), {} violations {:?}{}",
            requests.len(),
            requests.iter().filter(|r| r.endpoint == Endpoint::LiveCalls).count(),
            requests.iter().filter(|r| r.endpoint == Endpoint::Audio).count(),
            requests.iter().filter(|r| r.endpoint == Endpoint::Transcription).count(),
            requests.iter().filter(|r| r.endpoint == Endpoint::Login).count(),
            by_status(Endpoint::LiveCalls, 429),
            by_status(Endpoint::LiveCalls, 503),
            by_status(Endpoint::Audio, 429),
            by_status(Endpoint::Audio, 503),
            violations.len(),
            by_rule,
            violations
                .first()
                .map(|v| format!("; first: {v}"))
                .unwrap_or_default()
        ),
    ));

    // The stall: polling paused, memory flat.
    let window = *lock(&stall_window);
    match window {
        None => checks.push(check("stall", false, "the subscriber never stalled")),
        Some((t0, t1)) => {
            let from = t0 + STALL_SETTLE;
            let polls = requests
                .iter()
                .filter(|r| r.endpoint == Endpoint::LiveCalls && r.time >= from && r.time <= t1)
                .count();
            let expected = (t1.duration_since(from).unwrap_or_default().as_secs_f64()
                / POLL_INTERVAL) as usize;
            checks.push(check(
                "stall: polling paused",
                polls <= 1,
                format!(
                    "{polls} live-calls requests from {}s into the {}s stall to its end (about {expected} if not paused)",
                    STALL_SETTLE.as_secs(),
                    o.stall.as_secs()
                ),
            ));
            let samples: Vec<u64> = lock(&rss)
                .iter()
                .filter(|(t, _)| *t >= t0 && *t <= t1)
                .map(|(_, kb)| *kb)
                .collect();
            let q = (samples.len() / 4).max(1);
            let first = samples.iter().take(q).copied().max().unwrap_or(0);
            let last = samples.iter().rev().take(q).copied().max().unwrap_or(0);
            checks.push(check(
                "stall: memory flat",
                samples.len() >= 4 && (last as f64) <= first as f64 * 1.10,
                format!(
                    "RSS max first quarter {:.1} MiB, last quarter {:.1} MiB ({} samples)",
                    first as f64 / 1024.0,
                    last as f64 / 1024.0,
                    samples.len()
                ),
            ));
        }
    }
    let all_rss = lock(&rss).clone();
    let peak = all_rss.iter().map(|r| r.1).max().unwrap_or(0);
    checks.push(check(
        "memory (informational)",
        true,
        format!(
            "process RSS (client and in-process simulator) peak {:.1} MiB, end {:.1} MiB",
            peak as f64 / 1024.0,
            all_rss.last().map_or(0, |r| r.1) as f64 / 1024.0
        ),
    ));

    // Secret hygiene.
    for (_, _, e) in &g.failed {
        errors.push(e.clone());
    }
    for (_, e) in &g.transcript_failed {
        errors.push(e.clone());
    }
    drop(g);
    for e in &errors {
        sink.line(e);
    }
    sink.flush();
    let mut secrets: Vec<(String, &str)> = vec![
        (password.clone(), "password"),
        (whisper_key.clone(), "transcription key"),
    ];
    let tokens: HashSet<&String> = requests.iter().filter_map(|r| r.cookie.as_ref()).collect();
    for t in &tokens {
        secrets.push(((*t).clone(), "session token"));
    }
    let text = std::fs::read(log_path).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&text);
    let lines = text.lines().count();
    let mut found: HashMap<&str, usize> = HashMap::new();
    for (s, what) in &secrets {
        let n = text.matches(s.as_str()).count();
        if n > 0 {
            *found.entry(what).or_default() += n;
        }
    }
    checks.push(check(
        "no secret in logs/errors/JSONL",
        found.is_empty() && !tokens.is_empty(),
        format!(
            "{lines} lines ({:.1} MiB) scanned for the password, the key and {} session tokens: {}",
            text.len() as f64 / 1024.0 / 1024.0,
            tokens.len(),
            if found.is_empty() {
                "0 found".to_owned()
            } else {
                format!("{found:?}")
            }
        ),
    ));
    sim.shutdown().await;
    Ok(checks)
}
