//! `tail`: watch live calls, their audio and transcripts, in a terminal or as JSON Lines.
//!
//! ```text
//! cargo run --release -p bcfy --example tail -- --group 4290-512
//! ```
//!
//! Without credentials (`--username`/`--password` or `BCFY_USERNAME`/`BCFY_PASSWORD`) and
//! without `--base-url`, it starts the embedded Broadcastify + Whisper simulator (`bcfy-sim`)
//! in-process and says so on stderr, so it works on a fresh machine with no account.
//! `--jsonl` prints one JSON object per bus event on stdout (schema in the crate README);
//! logs always go to stderr.
//!
//! The whole run is [`run`], which the crate's tests call directly with their own writer.

#![allow(clippy::print_stderr, unreachable_pub)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bcfy::bus::Event;
use bcfy::config::{Config, FileFormat};
use bcfy::proto::{GroupId, NodeId, Subscription, SystemId, TimeWindow};
use bcfy::{BcfyEvent, Client};
use clap::Parser;
use futures::StreamExt;
use secrecy::SecretString;
use url::Url;

/// Command-line arguments of `tail`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tail",
    about = "Watch Broadcastify live calls, their audio and transcripts (or the embedded simulator's)",
    after_help = "Without credentials and without --base-url, tail runs against an embedded \
                  simulator: no account needed. You are responsible for having the rights to \
                  what you automate against the real Broadcastify service."
)]
pub struct Args {
    /// A talkgroup `SID-TG` (RadioReference system id, talkgroup); repeatable, all polled in one request.
    #[arg(long = "group", value_name = "SID-TG")]
    pub groups: Vec<GroupId>,
    /// A Broadcastify playlist UUID.
    #[arg(long, value_name = "UUID", conflicts_with_all = ["groups", "system", "node"])]
    pub playlist: Option<String>,
    /// A whole trunked system (RadioReference system id).
    #[arg(long, value_name = "SID", conflicts_with_all = ["groups", "node"])]
    pub system: Option<u64>,
    /// A whole upload node.
    #[arg(long, value_name = "ID", conflicts_with_all = ["groups"])]
    pub node: Option<u64>,

    /// Broadcastify username (real service).
    #[arg(long, env = "BCFY_USERNAME")]
    pub username: Option<String>,
    /// Broadcastify password (real service).
    #[arg(long, env = "BCFY_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Seconds between polls (default: the spec's 2 s; the real site's page uses 5 s; never below 3 s against the real service).
    #[arg(long, value_name = "SECONDS")]
    pub poll_interval: Option<f64>,
    /// Site base URL (login, live calls, archives).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<Url>,
    /// Calls CDN base URL (audio).
    #[arg(long, value_name = "URL")]
    pub cdn_url: Option<Url>,
    /// A configuration file (TOML or YAML); `BCFY_*` variables override it, flags override both.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Transcribe each call (on by default against the simulator).
    #[arg(long)]
    pub transcribe: bool,
    /// Do not transcribe, even against the simulator.
    #[arg(long, conflicts_with = "transcribe")]
    pub no_transcribe: bool,
    /// OpenAI-compatible API base (ending in /v1).
    #[arg(long, value_name = "URL")]
    pub whisper_url: Option<Url>,
    /// API key of the transcription service.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub whisper_key: Option<String>,
    /// Transcription model.
    #[arg(long, value_name = "NAME")]
    pub whisper_model: Option<String>,

    /// One JSON object per bus event on stdout.
    #[arg(long)]
    pub jsonl: bool,
    /// Save each call's audio as DIR/{call_id}.m4a.
    #[arg(long, value_name = "DIR")]
    pub audio_dir: Option<PathBuf>,
    /// Stop cleanly after N calls went through every stage.
    #[arg(long, value_name = "N")]
    pub max_calls: Option<u64>,
    /// Stop cleanly after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Seconds between status lines on stderr (0 = none).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub status_interval: f64,
    /// Runtime threads: 1 runs everything on one thread, enough for thousands of calls a
    /// second and about a quarter less CPU than two workers waking each other
    /// (docs/benchmarks.md); more gives a multi-thread runtime with that many workers.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// Embedded simulator only: mean calls per second across its talkgroups.
    #[arg(long, value_name = "RATE", default_value_t = 1.0)]
    pub sim_rate: f64,
    /// Embedded simulator only: seed of its synthetic feed.
    #[arg(long, value_name = "SEED", default_value_t = 0)]
    pub sim_seed: u64,

    /// Print archived calls of the groups between --from and --to instead of tailing.
    #[arg(long, requires_all = ["from", "to"])]
    pub archive: bool,
    /// Start of the archive window: epoch seconds, `YYYY-MM-DDTHH:MM:SSZ`, `now` or `-2h`/`-30m`/`-90s`.
    #[arg(
        long,
        value_name = "TIME",
        requires = "archive",
        allow_hyphen_values = true
    )]
    pub from: Option<String>,
    /// End of the archive window (same forms as --from).
    #[arg(
        long,
        value_name = "TIME",
        requires = "archive",
        allow_hyphen_values = true
    )]
    pub to: Option<String>,
}

/// What a run did, for scripts and tests.
#[derive(Debug)]
pub struct Summary {
    /// Calls that went through every stage (and were printed).
    pub calls: u64,
    /// Lines written to the output.
    pub lines: u64,
    /// Failure events (audio or transcription).
    pub errors: u64,
    /// Whether the final shutdown drained the pipeline in time.
    pub drained: bool,
    /// The embedded simulator, when one ran (still serving, so tests can inspect it).
    pub sim: Option<bcfy_sim::SimHandle>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `tail` with `args`, writing the live view or JSON Lines to `out`, until `--max-calls`,
/// `--duration`, Ctrl-C or the pipeline ends.
pub async fn run<W: Write>(args: Args, mut out: W) -> Result<Summary, BoxError> {
    let subscription = subscription(&args)?;
    let mut config = match &args.config {
        Some(path) => Config::load(Some(path))?,
        None => Config::load(None)?,
    };
    let _ = FileFormat::Toml;

    let real = args.username.is_some() || args.base_url.is_some();
    let mut sim = None;
    if real {
        if let Some(url) = &args.base_url {
            config.endpoints.site = url.clone();
        }
        if let Some(url) = &args.cdn_url {
            config.endpoints.calls_cdn = url.clone();
        }
        config.transcription.enabled = args.transcribe;
    } else {
        let groups = match &subscription {
            Subscription::Talkgroups(groups) => groups.clone(),
            _ => Vec::new(),
        };
        let server = start_sim(&args, &groups, args.playlist.as_deref()).await?;
        eprintln!(
            "tail: no credentials given: running against the embedded simulator at {} \
             (synthetic calls, no account needed)",
            server.base_url()
        );
        config.endpoints.site = server.base_url();
        config.endpoints.calls_cdn = server.cdn_url();
        config.transcription.enabled = !args.no_transcribe;
        config.transcription.endpoint_url = Some(server.whisper_url());
        if config.transcription.api_key.is_none() {
            config.transcription.api_key = Some(SecretString::from("sim-key"));
        }
        sim = Some(server);
    }
    if let Some(interval) = args.poll_interval {
        if !(interval.is_finite() && interval > 0.0) {
            return Err("--poll-interval must be a positive number of seconds".into());
        }
        config.live.poll_interval = Duration::from_secs_f64(interval);
    }
    if sim.is_none() && config.live.poll_interval < Duration::from_secs(3) {
        eprintln!(
            "tail: warning: polling every {:.1} s; Broadcastify's page polls every 5 s and \
             community guidance is never faster than 3 s",
            config.live.poll_interval.as_secs_f64()
        );
    }
    if let Some(url) = &args.whisper_url {
        config.transcription.endpoint_url = Some(url.clone());
    }
    if let Some(key) = &args.whisper_key {
        config.transcription.api_key = Some(SecretString::from(key.clone()));
    }
    if let Some(model) = &args.whisper_model {
        config.transcription.model.clone_from(model);
    }

    let mut builder = Client::builder().config(config);
    match (&args.username, &args.password) {
        (Some(user), Some(password)) => {
            builder = builder.credentials(user.clone(), SecretString::from(password.clone()));
        }
        (Some(_), None) => return Err("--username needs --password (or BCFY_PASSWORD)".into()),
        _ if sim.is_some() => {
            // The simulator accepts any account; logging in exercises the real path.
            builder = builder.credentials(SIM_USER, SecretString::from(SIM_PASSWORD));
        }
        _ => {}
    }
    let client = builder.build()?;

    if args.archive {
        let summary = archive(&args, &client, &subscription, &mut out).await;
        let _ = client.shutdown(Duration::from_secs(5)).await;
        return summary.map(|(calls, lines)| Summary {
            calls,
            lines,
            errors: 0,
            drained: true,
            sim,
        });
    }

    let mut tailer = Tailer::new(&args, client.transcription_enabled());
    let mut events = client.stream(">")?;
    client.create_live_producer(subscription)?;
    client.start().await?;

    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let status_every = (args.status_interval > 0.0 && !args.jsonl)
        .then(|| Duration::from_secs_f64(args.status_interval));
    let mut status = tokio::time::interval(status_every.unwrap_or(Duration::from_hours(1)));
    status.tick().await;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                tailer.handle(&event, &mut out).await?;
                if tailer.done() {
                    break;
                }
            }
            () = sleep_until(deadline) => break,
            _ = &mut ctrl_c => {
                eprintln!("tail: interrupted, shutting down");
                break;
            }
            _ = status.tick(), if status_every.is_some() => {
                tailer.status_line(&client);
            }
        }
    }

    // The bus drains into our stream during shutdown: keep reading it meanwhile (events for
    // calls already shown: their audio, their transcript).
    let shutdown = client.shutdown(Duration::from_secs(10));
    let drain = async {
        while let Some(event) = events.next().await {
            tailer.handle(&event, &mut out).await?;
        }
        Ok::<(), BoxError>(())
    };
    let both = async { tokio::join!(shutdown, drain) };
    // A second Ctrl-C during the drain gives up on it.
    let (report, drained_stream) = tokio::select! {
        both = both => both,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("tail: interrupted again, exiting without waiting for the drain");
            return Err("interrupted".into());
        }
    };
    drained_stream?;
    let drained = report.is_ok();
    if let Err(e) = report {
        eprintln!("tail: {e}");
    }
    out.flush()?;
    if !args.jsonl {
        tailer.status_line(&client);
    }
    Ok(Summary {
        calls: tailer.completed,
        lines: tailer.lines,
        errors: tailer.errors,
        drained,
        sim,
    })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures::future::pending().await,
    }
}

fn subscription(args: &Args) -> Result<Subscription, BoxError> {
    if let Some(uuid) = &args.playlist {
        return Ok(Subscription::Playlist(uuid.clone()));
    }
    if let Some(sid) = args.system {
        return Ok(Subscription::System(SystemId::new(sid)));
    }
    if let Some(node) = args.node {
        return Ok(Subscription::Node(NodeId::new(node)));
    }
    if args.groups.is_empty() {
        return Err(
            "give --group SID-TG (repeatable), --playlist UUID, --system SID or --node ID \
                    (try: --group 4290-512)"
                .into(),
        );
    }
    Ok(Subscription::talkgroups(args.groups.iter().copied())?)
}

/// Starts the in-process simulator with the requested talkgroups (or its defaults), some
/// history and `--sim-rate` calls per second.
async fn start_sim(
    args: &Args,
    groups: &[GroupId],
    playlist: Option<&str>,
) -> Result<bcfy_sim::SimHandle, BoxError> {
    // About twenty calls of history, so the first poll shows something at once.
    let backfill = if args.sim_rate > 0.0 {
        (20.0 / args.sim_rate).min(60.0)
    } else {
        0.0
    };
    let mut builder = bcfy_sim::Simulator::builder()
        .seed(args.sim_seed)
        .calls_per_second(args.sim_rate)
        .backfill(Duration::from_secs_f64(backfill))
        .user(SIM_USER, SIM_PASSWORD);
    if !groups.is_empty() {
        builder = builder.groups(groups.iter().map(|g| (g.sid.get(), g.tg.get())));
    }
    if let Some(uuid) = playlist {
        builder = builder.playlist(uuid, [(4290, 512), (4290, 1536)]);
    }
    Ok(builder.start().await?)
}

/// The account the embedded simulator knows (it is local and synthetic: no secret).
const SIM_USER: &str = "demo";
const SIM_PASSWORD: &str = "demo-password";

/// Tracks calls through their stages and renders events.
struct Tailer {
    jsonl: bool,
    transcribing: bool,
    audio_dir: Option<PathBuf>,
    max_calls: Option<u64>,
    /// Calls shown on `calls.live`, waiting for their last stage.
    open: HashMap<String, Arc<bcfy::proto::Call>>,
    shown: u64,
    completed: u64,
    lines: u64,
    errors: u64,
    last_lag: Option<f64>,
}

impl Tailer {
    fn new(args: &Args, transcribing: bool) -> Self {
        Self {
            jsonl: args.jsonl,
            transcribing,
            audio_dir: args.audio_dir.clone(),
            max_calls: args.max_calls,
            open: HashMap::new(),
            shown: 0,
            completed: 0,
            lines: 0,
            errors: 0,
            last_lag: None,
        }
    }

    fn done(&self) -> bool {
        self.max_calls
            .is_some_and(|max| self.completed >= max && self.open.is_empty())
    }

    async fn handle<W: Write>(
        &mut self,
        event: &Event<BcfyEvent>,
        out: &mut W,
    ) -> Result<(), BoxError> {
        // The stream sees every topic; each event is printed once, for its global topic.
        let topic = event.topic();
        let event = &event.payload;
        if topic != event.topic() {
            return Ok(()); // the per-talkgroup or per-call copy
        }
        let call_id = event.call_id().to_string();
        match event {
            BcfyEvent::Live(envelope) => {
                if self.max_calls.is_some_and(|max| self.shown >= max) {
                    return Ok(()); // polled after the last call we show
                }
                self.shown += 1;
                self.open.insert(call_id.clone(), envelope.call.clone());
                self.last_lag = Some(now_secs() - envelope.call.ts as f64);
            }
            _ => {
                if !self.open.contains_key(&call_id) {
                    return Ok(()); // a call beyond --max-calls
                }
            }
        }
        match event {
            BcfyEvent::Audio(audio) => {
                if let Some(dir) = &self.audio_dir {
                    let path = dir.join(format!("{call_id}.m4a"));
                    tokio::fs::write(&path, &audio.payload).await?;
                }
            }
            BcfyEvent::AudioFailed(_) | BcfyEvent::TranscriptFailed(_) => self.errors += 1,
            _ => {}
        }
        self.render(event, out)?;
        let last_stage = match event {
            BcfyEvent::Audio(_) => !self.transcribing,
            BcfyEvent::AudioFailed(_)
            | BcfyEvent::Transcript(_)
            | BcfyEvent::TranscriptFailed(_) => true,
            _ => false,
        };
        if last_stage {
            self.open.remove(&call_id);
            self.completed += 1;
        }
        Ok(())
    }

    fn render<W: Write>(&mut self, event: &BcfyEvent, out: &mut W) -> std::io::Result<()> {
        self.lines += 1;
        if self.jsonl {
            writeln!(out, "{}", event.to_json_line())?;
            return out.flush();
        }
        let call = event.call();
        let time = clock(call.start_time.unwrap_or(call.ts));
        let group = call.group().map(|g| g.to_string()).unwrap_or_default();
        let label = call
            .display
            .as_deref()
            .or(call.descr.as_deref())
            .unwrap_or("");
        match event {
            BcfyEvent::Live(_) => {
                let src = call.src.map_or_else(|| "-".into(), |s| s.to_string());
                let duration = call
                    .duration_secs
                    .map_or_else(|| "    -".into(), |d| format!("{d:>4.0}s"));
                writeln!(
                    out,
                    "{time}  {group:<12} {label:<24.24} src {src:<10} {duration}  {}",
                    event.call_id()
                )?;
            }
            BcfyEvent::AudioFailed(e) => {
                writeln!(
                    out,
                    "{time}  {group:<12} {label:<24.24} audio failed: {}",
                    e.error
                )?;
            }
            BcfyEvent::Transcript(t) => {
                writeln!(
                    out,
                    "{time}  {group:<12} {label:<24.24} » {}",
                    t.text.trim()
                )?;
            }
            BcfyEvent::TranscriptFailed(e) => {
                writeln!(
                    out,
                    "{time}  {group:<12} {label:<24.24} transcription failed: {}",
                    e.error
                )?;
            }
            _ => {}
        }
        out.flush()
    }

    fn status_line(&self, client: &Client) {
        let health = client.health();
        let lag = self
            .last_lag
            .map_or_else(|| "-".into(), |l| format!("{l:.1}s"));
        eprintln!(
            "tail: status: {} calls, {} audio, {} transcripts, {} errors, lag {lag}, backlog {}, {}",
            health.counts.live,
            health.counts.audio,
            health.counts.transcripts,
            health.counts.audio_failed + health.counts.transcription_failed,
            health.backlog,
            if health.ready { "ready" } else { "not ready" },
        );
    }
}

/// `--archive`: every archived call of the groups in the window, oldest block first.
async fn archive<W: Write>(
    args: &Args,
    client: &Client,
    subscription: &Subscription,
    out: &mut W,
) -> Result<(u64, u64), BoxError> {
    let Subscription::Talkgroups(groups) = subscription else {
        return Err("--archive needs --group".into());
    };
    let now = now_secs() as i64;
    let from = parse_time(args.from.as_deref().unwrap_or("-1h"), now)?;
    let to = parse_time(args.to.as_deref().unwrap_or("now"), now)?;
    if to <= from {
        return Err(format!("--to ({to}) must be after --from ({from})").into());
    }
    let (mut calls, mut lines) = (0, 0);
    for group in groups {
        let results = client
            .get_archived_range(
                *group,
                TimeWindow {
                    start: from,
                    end: to,
                },
            )
            .await?;
        for result in results {
            for call in &result.calls {
                if call.ts < from || call.ts > to {
                    continue;
                }
                calls += 1;
                lines += 1;
                if args.jsonl {
                    let mut value = bcfy::event::call_json(call);
                    value["topic"] = "archive".into();
                    writeln!(out, "{value}")?;
                } else {
                    let label = call
                        .display
                        .as_deref()
                        .or(call.descr.as_deref())
                        .unwrap_or("");
                    let duration = call.duration_secs.unwrap_or_default();
                    writeln!(
                        out,
                        "{}  {group:<12} {label:<24.24} {duration:>4.0}s  {}",
                        clock(call.start_time.unwrap_or(call.ts)),
                        call.call_id()
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok((calls, lines))
}

/// Epoch seconds, `YYYY-MM-DDTHH:MM:SSZ`, `now`, or `-90s`/`-30m`/`-2h`/`-1d` before `now`.
pub fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(rel) = text.strip_prefix('-') {
        let (num, unit) = rel.split_at(rel.len().saturating_sub(1));
        let n: i64 = num
            .parse()
            .map_err(|_| format!("bad relative time `{text}`"))?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("bad unit in `{text}` (s, m, h or d)")),
        };
        return Ok(now - n * mult);
    }
    if let Ok(epoch) = text.parse::<i64>() {
        return Ok(epoch);
    }
    parse_rfc3339_utc(text).ok_or_else(|| {
        format!("bad time `{text}`: use epoch seconds, YYYY-MM-DDTHH:MM:SSZ, now or -2h")
    })
}

fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00:00"));
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(str::parse::<i64>);
    let (hh, mm) = (t.next()?.ok()?, t.next()?.ok()?);
    let ss = t.next().and_then(Result::ok).unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `HH:MM:SS` (UTC) of an epoch time.
fn clock(epoch: i64) -> String {
    let s = epoch.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BCFY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tail: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    match runtime.block_on(run(args, stdout.lock())) {
        Ok(summary) => {
            if let Some(sim) = summary.sim {
                drop(sim);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tail: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
