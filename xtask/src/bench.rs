//! `cargo xtask bench`: end-to-end figures of the client against the simulator in another
//! process.
//!
//! The simulator (`bench-sim`) and the client (`bench-client`, the umbrella `bcfy::Client` as a
//! user runs it: polling, downloading every call's audio, one bus subscriber per topic) are
//! release binaries of this package, each in its own process, so the client's CPU time and
//! memory are its own. `bench-sim` ingests calls at the requested rate and records each call's
//! ingest wall time; `bench-client` records when each call's `calls.audio.raw` event reached its
//! subscriber; latency is the difference. The baselines (a raw hyper client against
//! `HttpTransport`, a raw `tokio::sync::mpsc` against `EventBus`) run in the same invocation.
//! Figures go to the terminal, to `--json`, and (full runs) to `docs/benchmarks.md`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

/// CPU time and memory of a process from `/proc` (Linux).
pub mod procstat {
    /// CPU time used so far.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Cpu {
        /// Sum of on-CPU nanoseconds of the live threads (`/proc/<pid>/task/*/schedstat`).
        pub sched_ns: u64,
        /// `utime + stime` of `/proc/<pid>/stat`, in milliseconds (tick resolution, 10 ms).
        pub ticks_ms: u64,
    }

    /// CPU time of this process.
    pub fn cpu_self() -> Cpu {
        cpu_of("self")
    }

    /// CPU time of a process (`pid` as a number or `self`).
    pub fn cpu_of(pid: &str) -> Cpu {
        let mut sched_ns = 0;
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in dir.flatten() {
                if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                    sched_ns += s
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        let ticks_ms = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                // Fields after the `(comm)`, which may hold spaces: utime and stime are the
                // 14th and 15th fields overall, the 12th and 13th after the comm.
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ut: u64 = f.get(11)?.parse().ok()?;
                let st: u64 = f.get(12)?.parse().ok()?;
                // USER_HZ is 100 on Linux.
                Some((ut + st) * 10)
            })
            .unwrap_or(0);
        Cpu { sched_ns, ticks_ms }
    }

    /// A `kB` line of `/proc/self/status` (`VmRSS`, `VmHWM`).
    pub fn status_kb(key: &str) -> Option<u64> {
        status_kb_of("self", key)
    }

    /// A `kB` line of `/proc/<pid>/status`.
    pub fn status_kb_of(pid: &str, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }
}

/// The poll interval of bench runs: the simulator is local, so the client may poll far faster
/// than the 3 s allowed against the real service.
pub const POLL_INTERVAL_SECS: f64 = 0.5;

/// One end-to-end run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Which table it belongs to: `feed` (rates) or `api` (talkgroups).
    pub table: &'static str,
    /// Talkgroups polled (all in one request).
    pub groups: usize,
    /// Calls per second fed across them.
    pub rate: f64,
    /// Calls fed in all.
    pub calls: u64,
    /// The client's runtime: 1 is a current-thread runtime (what `tail` runs by default),
    /// more is a multi-thread runtime with that many workers.
    pub threads: usize,
    /// Times the run is repeated; its row is the run with the median CPU per call, and the
    /// range of all of them is reported (one run's CPU figure varies by ±15% on a shared VM).
    pub repeats: usize,
}

/// The runs of a full (or `--quick`) bench.
pub fn plan(quick: bool) -> Vec<RunSpec> {
    let (secs, cap, api_calls) = if quick {
        (3.0, 3000.0, 500)
    } else {
        (10.0, 25_000.0, 2000)
    };
    let mut runs: Vec<RunSpec> = [10.0, 100.0, 1000.0, 5000.0]
        .into_iter()
        .map(|rate: f64| RunSpec {
            table: "feed",
            groups: 10,
            rate,
            calls: (rate * secs).min(cap) as u64,
            threads: 1,
            // The figure the target is about is measured several times.
            repeats: if (rate - 1000.0).abs() < 0.5 && !quick {
                5
            } else {
                1
            },
        })
        .collect();
    // The same 1,000 calls/s feed with the client on a two-worker runtime, as a library user
    // embedding it in `#[tokio::main]` runs it.
    runs.push(RunSpec {
        threads: 2,
        ..runs[2].clone()
    });
    for groups in [1, 10, 100, 1000] {
        runs.push(RunSpec {
            table: "api",
            groups,
            rate: 100.0,
            calls: api_calls,
            threads: 1,
            repeats: 1,
        });
    }
    runs
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| ".".into(), Path::to_path_buf)
}

fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("release")
}

/// Builds the bench binaries (release), politely.
fn build() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> nice cargo build --release -p xtask --bins");
    let status = Command::new("nice")
        .args([
            "-n",
            "10",
            &cargo,
            "build",
            "--release",
            "-p",
            "xtask",
            "--bins",
        ])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("release build failed ({status})"))
    }
}

/// A child process with line-oriented stdout.
struct Proc {
    child: Child,
    out: BufReader<ChildStdout>,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, args: &[String]) -> Result<Proc, String> {
        let bin = release_dir().join(name);
        let mut child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Proc { child, out, name })
    }

    fn line(&mut self) -> Result<Value, String> {
        let mut s = String::new();
        let n = self
            .out
            .read_line(&mut s)
            .map_err(|e| format!("{}: {e}", self.name))?;
        if n == 0 {
            return Err(format!("{} ended without output", self.name));
        }
        serde_json::from_str(&s).map_err(|e| format!("{}: bad output line ({e})", self.name))
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        writeln!(stdin, "{line}").map_err(|e| format!("{}: {e}", self.name))?;
        stdin.flush().map_err(|e| e.to_string())
    }

    /// Closes stdin (the simulator's cue to print its stats), reads the last line, waits.
    fn finish(mut self) -> Result<Value, String> {
        drop(self.child.stdin.take());
        let v = self.line();
        let _ = self.child.wait();
        v
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// Runs one end-to-end measurement and returns its figures.
fn run_one(spec: &RunSpec, seed: u64) -> Result<Value, String> {
    let mut sim = Proc::spawn(
        "bench-sim",
        &[
            "--seed".into(),
            seed.to_string(),
            "--groups".into(),
            spec.groups.to_string(),
            "--rate".into(),
            spec.rate.to_string(),
            "--total".into(),
            spec.calls.to_string(),
        ],
    )?;
    let urls = sim.line()?;
    let timeout = (spec.calls as f64 / spec.rate) * 4.0 + 60.0;
    let mut client = Proc::spawn(
        "bench-client",
        &[
            "run".into(),
            "--site".into(),
            urls["site"].as_str().unwrap_or_default().into(),
            "--cdn".into(),
            urls["cdn"].as_str().unwrap_or_default().into(),
            "--groups".into(),
            spec.groups.to_string(),
            "--calls".into(),
            spec.calls.to_string(),
            "--poll-interval".into(),
            POLL_INTERVAL_SECS.to_string(),
            "--timeout".into(),
            timeout.to_string(),
            "--threads".into(),
            spec.threads.to_string(),
        ],
    )?;
    let _ready = client.line()?;
    sim.send("start")?;
    let c = client.line()?;
    drop(client);
    let s = sim.finish()?;

    let ingest: HashMap<&str, f64> = s["ingest"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut lat: Vec<f64> = Vec::new();
    let mut last_arrival = f64::MIN;
    if let Some(arrivals) = c["arrivals"].as_object() {
        for (id, t) in arrivals {
            let t = t.as_f64().unwrap_or(f64::NAN);
            last_arrival = last_arrival.max(t);
            if let Some(i) = ingest.get(id.as_str()) {
                lat.push(t - i);
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    let first_ingest = ingest.values().copied().fold(f64::MAX, f64::min);
    let last_ingest = ingest.values().copied().fold(f64::MIN, f64::max);
    let calls = num(&c, "calls") + num(&c, "audio_failed");
    let active = num(&c, "done_at") - num(&c, "ready_at");
    let rss: Vec<f64> = c["rss_kb"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let quarter = (rss.len() / 4).max(1);
    let first_q = rss.iter().take(quarter).copied().fold(0.0, f64::max);
    let last_q = rss.iter().rev().take(quarter).copied().fold(0.0, f64::max);
    let served = num(&s, "audio_bytes_served");
    Ok(json!({
        "table": spec.table,
        "threads": spec.threads,
        "groups": spec.groups,
        "rate": spec.rate,
        "calls_fed": spec.calls,
        "calls": calls,
        "audio_failed": num(&c, "audio_failed"),
        "timed_out": c["timed_out"],
        "feed_calls_per_sec": spec.calls as f64 / (last_ingest - first_ingest).max(1e-9),
        "sustained_calls_per_sec": calls / (last_arrival - first_ingest).max(1e-9),
        "drain_after_feed_s": last_arrival - last_ingest,
        "cpu_ms_per_call": num(&c, "cpu_ns") / 1e6 / calls.max(1.0),
        "cpu_ms_per_call_ticks": num(&c, "cpu_ticks_ms") / calls.max(1.0),
        "peak_rss_mb": num(&c, "vmhwm_kb") / 1024.0,
        "rss_first_quarter_mb": first_q / 1024.0,
        "rss_last_quarter_mb": last_q / 1024.0,
        "latency_p50_s": percentile(&lat, 0.5),
        "latency_p99_s": percentile(&lat, 0.99),
        "latency_max_s": lat.last().copied().unwrap_or(f64::NAN),
        "max_backlog": c["max_backlog"],
        "live_requests_per_min": num(&c, "polls") / active.max(1e-9) * 60.0,
        "sim_live_requests": s["live_requests"],
        "logins": c["logins"],
        "poll_retries": c["poll_retries"],
        "last_error": c["last_error"],
        "audio_requests": c["audio_requests"],
        "audio_bytes_read": num(&c, "audio_bytes_read"),
        "audio_bytes_served": served,
        "bytes_read_over_served": num(&c, "audio_bytes_read") / served.max(1.0),
    }))
}

fn baselines(quick: bool) -> Result<Value, String> {
    let mut sim = Proc::spawn(
        "bench-sim",
        &[
            "--rate".into(),
            "0".into(),
            "--groups".into(),
            "10".into(),
            "--preload".into(),
            "15".into(),
        ],
    )?;
    let urls = sim.line()?;
    let n = if quick { 500 } else { 3000 };
    let mut http = Proc::spawn(
        "bench-client",
        &[
            "baseline-http".into(),
            "--site".into(),
            urls["site"].as_str().unwrap_or_default().into(),
            "--groups".into(),
            "10".into(),
            "--requests".into(),
            n.to_string(),
        ],
    )?;
    let h = http.line()?;
    drop(http);
    drop(sim.finish());
    let events = if quick { 100_000 } else { 1_000_000 };
    let mut bus = Proc::spawn(
        "bench-client",
        &["baseline-bus".into(), "--events".into(), events.to_string()],
    )?;
    let b = bus.line()?;
    Ok(json!({"http": h, "bus": b}))
}

/// The machine the figures came from.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "cpu": model,
        "memory_gib": mem_kb as f64 / 1024.0 / 1024.0,
        "date": out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "toolchain": out("rustc", &["--version"]),
        "kernel": out("uname", &["-r"]),
    })
}

fn f(v: &Value, k: &str, prec: usize) -> String {
    match v.get(k).and_then(Value::as_f64) {
        Some(x) if x.is_finite() => format!("{x:.prec$}"),
        _ => "-".into(),
    }
}

/// CPU ms per call; with repeats, the median and the range (`0.0450 (0.0390–0.0550, 5 runs)`).
fn cpu_cell(r: &Value) -> String {
    let runs: Vec<f64> = r["cpu_ms_per_call_runs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let median = f(r, "cpu_ms_per_call", 4);
    match (runs.first(), runs.last()) {
        (Some(lo), Some(hi)) if runs.len() > 1 => {
            format!("{median} ({lo:.4}–{hi:.4}, {} runs)", runs.len())
        }
        _ => median,
    }
}

/// The result tables, as Markdown (also what the terminal shows).
pub fn tables(report: &Value) -> String {
    let mut s = String::new();
    let runs = report["runs"].as_array().cloned().unwrap_or_default();
    s.push_str("### Feed rates (10 talkgroups)\n\n");
    s.push_str("| fed calls/s | client runtime | calls | sustained calls/s | CPU ms/call | peak RSS MiB | RSS 1st→last quarter MiB | p50 s | p99 s | max backlog | live req/min | bytes read/served |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in runs.iter().filter(|r| r["table"] == "feed") {
        let runtime = match r["threads"].as_u64() {
            Some(1) | None => "current-thread".to_owned(),
            Some(n) => format!("{n} workers"),
        };
        let _ = writeln!(
            s,
            "| {} | {runtime} | {} | {} | {} | {} | {}→{} | {} | {} | {} | {} | {} |",
            f(r, "rate", 0),
            f(r, "calls", 0),
            f(r, "sustained_calls_per_sec", 0),
            cpu_cell(r),
            f(r, "peak_rss_mb", 1),
            f(r, "rss_first_quarter_mb", 1),
            f(r, "rss_last_quarter_mb", 1),
            f(r, "latency_p50_s", 3),
            f(r, "latency_p99_s", 3),
            r["max_backlog"],
            f(r, "live_requests_per_min", 0),
            f(r, "bytes_read_over_served", 3),
        );
    }
    s.push_str("\n### API cost by talkgroups (100 calls/s)\n\n");
    s.push_str("| talkgroups | calls | live req/min | logins | CPU ms/call | peak RSS MiB | p50 s | p99 s |\n|---|---|---|---|---|---|---|---|\n");
    for r in runs.iter().filter(|r| r["table"] == "api") {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r["groups"],
            f(r, "calls", 0),
            f(r, "live_requests_per_min", 0),
            r["logins"],
            f(r, "cpu_ms_per_call", 4),
            f(r, "peak_rss_mb", 1),
            f(r, "latency_p50_s", 3),
            f(r, "latency_p99_s", 3),
        );
    }
    let b = &report["baselines"];
    s.push_str("\n### Baselines (same run)\n\n| stage | raw | bcfy | ratio (bcfy/raw) |\n|---|---|---|---|\n");
    let _ = writeln!(
        s,
        "| live-calls requests/s, one pooled HTTP/1.1 connection ({} B answers; medians of {} paired rounds) | hyper-util {} | HttpTransport {} | {} ({}–{}) |",
        b["http"]["response_bytes"],
        b["http"]["rounds"],
        f(&b["http"], "raw_rps", 0),
        f(&b["http"], "transport_rps", 0),
        f(&b["http"], "ratio", 3),
        f(&b["http"], "ratio_min", 3),
        f(&b["http"], "ratio_max", 3),
    );
    let _ = writeln!(
        s,
        "| bus events/s, one subscriber, capacity 256 | tokio mpsc {} | EventBus {} | {} |",
        f(&b["bus"], "mpsc_eps", 0),
        f(&b["bus"], "bus_eps", 0),
        f(&b["bus"], "ratio", 3),
    );
    s
}

const NOTES_MARKER: &str = "<!-- notes below are hand-written and kept by `cargo xtask bench` -->";

fn write_docs(report: &Value) -> Result<(), String> {
    let path = workspace_root().join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let notes = old
        .split_once(NOTES_MARKER)
        .map_or_else(String::new, |(_, n)| n.to_owned());
    let m = &report["machine"];
    let text = format!(
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` (full run; `--quick` is the short version, `--json` for \
         machines). The simulator (`bench-sim`) and the client (`bench-client`: the umbrella \
         `bcfy::Client` polling, downloading every call's audio, one bus subscriber per topic, \
         transcription off) are release binaries in separate processes, so the client's CPU and \
         memory are its own. Poll interval {POLL_INTERVAL_SECS} s: the simulator is local (against \
         the real service never poll faster than 3 s). Latency is from the simulator's ingest of a \
         call (wall clock, ms resolution) to the `calls.audio.raw` subscriber seeing it, so it \
         includes up to one poll interval of waiting. CPU is the client process's on-CPU time \
         (sum of `/proc/<pid>/task/*/schedstat`) from `start()` to the last call, divided by \
         calls.\n\n\
         Machine: {} × {} ({:.1} GiB), kernel {}, {}; measured {}. The machine is shared with \
         other builds, so figures are lower bounds.\n\n{}\n{NOTES_MARKER}{}",
        m["nproc"],
        m["cpu"].as_str().unwrap_or("?"),
        m["memory_gib"].as_f64().unwrap_or(0.0),
        m["kernel"].as_str().unwrap_or("?"),
        m["toolchain"].as_str().unwrap_or("?"),
        m["date"].as_str().unwrap_or("?"),
        tables(report),
        if notes.is_empty() {
            "\n".to_owned()
        } else {
            notes
        },
    );
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The run with the median CPU per call, carrying every run's figure
/// (`cpu_ms_per_call_runs`) and any failure of the others (a lost or repeated call in any
/// repeat fails the bench).
fn median_run(mut tries: Vec<Value>) -> Value {
    tries.sort_by(|a, b| num(a, "cpu_ms_per_call").total_cmp(&num(b, "cpu_ms_per_call")));
    let all: Vec<f64> = tries.iter().map(|t| num(t, "cpu_ms_per_call")).collect();
    let bad = tries
        .iter()
        .find(|t| t["timed_out"] == true || (num(t, "calls") - num(t, "calls_fed")).abs() > 0.5)
        .cloned();
    let mid = tries.len() / 2;
    let mut r = bad.unwrap_or_else(|| tries.swap_remove(mid));
    r["cpu_ms_per_call_runs"] = json!(all);
    r
}

/// `cargo xtask bench [--quick] [--json] [--no-build] [--no-docs]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let json_out = args.iter().any(|a| a == "--json");
    if !args.iter().any(|a| a == "--no-build") {
        build()?;
    }
    let mut runs = Vec::new();
    for (i, spec) in plan(quick).iter().enumerate() {
        eprintln!(
            "==> run {}: {} talkgroups, {} calls/s, {} calls",
            i + 1,
            spec.groups,
            spec.rate,
            spec.calls
        );
        let mut tries = Vec::new();
        for k in 0..spec.repeats.max(1) {
            tries.push(run_one(spec, 1 + i as u64 + 100 * k as u64)?);
        }
        let r = median_run(tries);
        eprintln!(
            "    {} calls, {} calls/s sustained, {} ms CPU/call, p50 {} s, p99 {} s, {} live req/min",
            f(&r, "calls", 0),
            f(&r, "sustained_calls_per_sec", 0),
            f(&r, "cpu_ms_per_call", 4),
            f(&r, "latency_p50_s", 3),
            f(&r, "latency_p99_s", 3),
            f(&r, "live_requests_per_min", 0),
        );
        runs.push(r);
    }
    eprintln!("==> baselines");
    let report = json!({
        "quick": quick,
        "poll_interval_s": POLL_INTERVAL_SECS,
        "machine": machine(),
        "runs": runs,
        "baselines": baselines(quick)?,
    });
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
        eprintln!("{}", tables(&report));
    } else {
        println!("{}", tables(&report));
    }
    if !quick && !args.iter().any(|a| a == "--no-docs") {
        write_docs(&report)?;
    }
    let mut problems = Vec::new();
    for r in &runs {
        // Fewer is a lost call, more a duplicated one: both are defects, not figures.
        if r["timed_out"] == true || (num(r, "calls") - num(r, "calls_fed")).abs() > 0.5 {
            problems.push(format!(
                "run {} talkgroups at {} calls/s: {} calls arrived for {} served",
                r["groups"], r["rate"], r["calls"], r["calls_fed"]
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cpu: f64, calls: u64) -> Value {
        json!({"cpu_ms_per_call": cpu, "calls": calls, "calls_fed": 10, "timed_out": false})
    }

    #[test]
    fn repeats_report_the_median_and_the_range_and_keep_failures() {
        let r = median_run(vec![run(0.05, 10), run(0.04, 10), run(0.06, 10)]);
        assert_eq!(r["cpu_ms_per_call"], json!(0.05));
        assert_eq!(cpu_cell(&r), "0.0500 (0.0400–0.0600, 3 runs)");
        // A repeat that lost or repeated a call is the one reported, so the bench fails.
        let r = median_run(vec![run(0.05, 10), run(0.04, 11), run(0.06, 10)]);
        assert_eq!(r["calls"], json!(11));
        assert_eq!(cpu_cell(&run(0.05, 10)), "0.0500");
    }

    #[test]
    fn the_target_rate_is_measured_on_both_runtimes_several_times() {
        let full = plan(false);
        let target: Vec<_> = full
            .iter()
            .filter(|r| r.table == "feed" && r.calls == 10_000)
            .collect();
        assert_eq!(target.iter().map(|r| r.threads).collect::<Vec<_>>(), [1, 2]);
        assert!(target.iter().all(|r| r.repeats == 5));
        assert!(plan(true).iter().all(|r| r.repeats == 1));
    }
}
