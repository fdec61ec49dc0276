//! Repository automation for bcfy: `cargo xtask <command>`.
//!
//! - `ci`: everything `.ci/run` checks: fmt, clippy, tests, docs, `contract`, `soak --quick`,
//!   `release-check`.
//! - `contract [--json] [--live [--group G] [--record DIR]]`: checks the service contract (`contract/broadcastify.toml`) against the
//!   response fixtures (provider side) and the client's requests against the simulator
//!   (consumer side).
//! - `release-check [--quick|--ci]`: package metadata, changelog, `cargo package` of every
//!   publishable crate in dependency order (verified builds unless `--ci`/`--quick`), docs with
//!   warnings denied, feature combinations and licenses (unless `--quick`), API snapshot.
//! - `release VERSION [--execute]`: bumps the version, moves the changelog's Unreleased section,
//!   runs `release-check` and prints the tag and the `cargo publish` order (a dry run unless
//!   `--execute`; it never publishes).
//! - `api-snapshot`: rewrites `api/*.txt`, the committed public API of each crate.
//! - `fuzz [--minutes N] [TARGET..]`: runs the cargo-fuzz targets of `fuzz/` (corpora seeded
//!   from the fixtures) for N minutes in all and reports executions and crashes per target.
//! - `bench [--quick] [--json]`: end-to-end figures (simulator and client in separate release
//!   processes, plus raw hyper and mpsc baselines); a full run rewrites `docs/benchmarks.md`.
//! - `soak [--quick] [--calls N] [--faults P]`: the client against a simulator misbehaving on a
//!   fraction P of requests: nothing lost or repeated, contract kept, stalled subscriber, no secret
//!   in any log line.

use std::process::{Command, ExitCode};

use xtask::contract::{Contract, Violation};
use xtask::release;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map_or("help", String::as_str);
    let rest = args.get(1..).unwrap_or_default();
    let result = match cmd {
        "ci" => ci(),
        "contract" => contract_cmd(rest),
        "release-check" => release_check(rest),
        "release" => release(rest),
        "api-snapshot" => api_snapshot(true).map(|_| ()),
        "fuzz" => fuzz(rest),
        "bench" => xtask::bench::run(rest),
        "soak" => xtask::soak::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|contract [--json] [--live [--group SID-TG] [--record DIR]]|release-check [--quick|--ci]|release VERSION [--execute]|api-snapshot|fuzz [--minutes N] [TARGET..]|bench [--quick] [--json]|soak [--quick] [--calls N] [--faults P]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    eprintln!("==> cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .env("RUSTDOCFLAGS", "-D warnings")
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace"])?;
    cargo(&["doc", "--workspace", "--no-deps"])?;
    contract_cmd(&[])?;
    xtask::soak::run(&["--quick".to_owned()])?;
    release_check(&["--ci".to_owned()])
}

/// One row of the contract report.
struct Check {
    side: &'static str,
    name: String,
    violations: Vec<Violation>,
}

fn repo_file(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn read_json(rel: &str) -> Result<serde_json::Value, String> {
    let path = repo_file(rel);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

fn flag_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn contract_cmd(args: &[String]) -> Result<(), String> {
    let json = args.iter().any(|a| a == "--json");
    let contract = Contract::load()?;
    let mut checks = Vec::new();
    if args.iter().any(|a| a == "--live") {
        return contract_live(&contract, args, json);
    }

    // Provider side: the real captures must match strictly; the tolerance variants only loosely
    // (they are shapes a robust client must survive, not samples of the service).
    let fixtures = "crates/bcfy-proto/tests/fixtures";
    for (file, kind, strict) in [
        ("real/live-calls.json", "live-calls", true),
        ("real/archivecall.json", "archive", true),
        ("live-calls-empty.json", "live-calls", true),
        ("live-calls-no-calls-key.json", "live-calls", true),
        ("live-calls-error.json", "live-calls", true),
        ("live-calls-variants.json", "live-calls", false),
    ] {
        let body = read_json(&format!("{fixtures}/{file}"))?;
        checks.push(Check {
            side: "provider",
            name: format!(
                "fixture {file} ({})",
                if strict { "strict" } else { "tolerant" }
            ),
            violations: contract.check_response(file, kind, &body, strict),
        });
    }

    // Consumer side: the real client through a scripted session against the simulator.
    eprintln!("==> consumer side: scripted session against bcfy-sim (about 30 s)");
    let started = std::time::Instant::now();
    let (log, summary) = xtask::contract_run::run()?;
    eprintln!(
        "    {} requests in {:.1}s: {} live calls, {} audio, {} transcripts, {} archive blocks",
        summary.requests,
        started.elapsed().as_secs_f64(),
        summary.live,
        summary.audio,
        summary.transcripts,
        summary.archive_blocks
    );
    let violations = contract.check_requests(
        &log,
        xtask::contract::CheckOptions {
            min_poll_interval_secs: None,
        },
    );
    checks.push(Check {
        side: "consumer",
        name: format!("simulator session ({} requests)", log.len()),
        violations,
    });
    let mut covered: Vec<&str> = Vec::new();
    for (name, present) in [
        ("login", log.iter().any(|r| r.path == "/login/")),
        ("logout", log.iter().any(|r| r.path == "/account/")),
        (
            "live-calls",
            log.iter().any(|r| r.path == "/calls/apis/live-calls"),
        ),
        (
            "archive",
            log.iter().any(|r| r.path == "/calls/apis/archivecall.php"),
        ),
        (
            "audio",
            log.iter().any(|r| r.host == xtask::contract::Host::Cdn),
        ),
        (
            "transcription",
            log.iter().any(|r| r.host == xtask::contract::Host::Whisper),
        ),
    ] {
        if present {
            covered.push(name);
        } else {
            checks.push(Check {
                side: "consumer",
                name: format!("session reaches {name}"),
                violations: vec![Violation {
                    subject: "scripted session".into(),
                    rule: "coverage".into(),
                    detail: format!("no {name} request was made"),
                }],
            });
        }
    }
    eprintln!("    endpoints exercised: {}", covered.join(", "));

    report(&checks, json)
}

fn report(checks: &[Check], json: bool) -> Result<(), String> {
    let failed = checks.iter().filter(|c| !c.violations.is_empty()).count();
    if json {
        let rows: Vec<serde_json::Value> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "side": c.side,
                    "check": c.name,
                    "pass": c.violations.is_empty(),
                    "violations": c.violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(10);
        for c in checks {
            let verdict = if c.violations.is_empty() {
                "pass"
            } else {
                "FAIL"
            };
            eprintln!("{:<8} {:<width$}  {verdict}", c.side, c.name);
            for v in &c.violations {
                eprintln!("           - {v}");
            }
        }
        eprintln!("{} checks, {failed} failed", checks.len());
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} contract checks failed"))
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| ".".into(), std::path::Path::to_path_buf)
}

fn cargo_output(args: &[&str], envs: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        String::from_utf8(out.stdout).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "`cargo {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn workspace_packages() -> Result<Vec<release::Package>, String> {
    let text = cargo_output(&["metadata", "--format-version", "1", "--no-deps"], &[])?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    release::packages(&meta)
}

/// Installs a cargo tool at a pinned version unless that version is already there.
fn ensure_tool(bin: &str, krate: &str, version: &str) -> Result<(), String> {
    // Cargo subcommands answer `--version` when called through cargo (`cargo hack --version`).
    let sub = bin.strip_prefix("cargo-").unwrap_or(bin);
    let have = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([sub, "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if have.contains(version) {
        return Ok(());
    }
    eprintln!("==> installing {krate} {version} (one-time; it is compiled from crates.io)");
    cargo(&["install", krate, "--version", version, "--locked"])
}

fn timed<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let start = std::time::Instant::now();
    let r = f();
    eprintln!(
        "--- {what}: {} in {:.1}s",
        if r.is_ok() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    r
}

fn release_check(args: &[String]) -> Result<(), String> {
    // `--quick` leaves out the steps that compile extra tools (cargo-hack, cargo-deny) and
    // the verified package builds. `--ci` keeps the tools but packages without verifying: a
    // verified `cargo package` rebuilds every crate's whole dependency tree from its packaged
    // sources, one crate after another (about 25 minutes on 2 cores), which does not fit
    // beside the test suite in CI's 90 minutes. The full check runs it.
    let quick = args.iter().any(|a| a == "--quick");
    let verify = !quick && !args.iter().any(|a| a == "--ci");
    let root = workspace_root();
    let packages = workspace_packages()?;
    let order = release::publish_order(&packages)?;
    timed("metadata and changelog", || {
        let mut problems: Vec<String> = packages
            .iter()
            .flat_map(release::metadata_problems)
            .collect();
        let changelog = std::fs::read_to_string(root.join("CHANGELOG.md"))
            .map_err(|e| format!("CHANGELOG.md: {e}"))?;
        problems.extend(release::changelog_problems(&changelog));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    })?;
    let what = if verify {
        "cargo package (dependency order, verified builds)"
    } else {
        "cargo package (dependency order, --no-verify)"
    };
    timed(what, || {
        let mut a = vec!["package", "--locked", "--allow-dirty"];
        if !verify {
            a.push("--no-verify");
        }
        for name in &order {
            a.push("-p");
            a.push(name);
        }
        cargo(&a)
    })?;
    timed("cargo doc -D warnings", || {
        cargo(&["doc", "--workspace", "--no-deps", "--locked"])
    })?;
    timed("public API snapshot", || {
        let changed = api_snapshot(false)?;
        if changed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the public API differs from api/*.txt for: {}\n(run `cargo xtask api-snapshot`, review the diff, and note breaking changes in CHANGELOG.md)",
                changed.join(", ")
            ))
        }
    })?;
    if quick {
        eprintln!("--quick: feature combinations and cargo-deny skipped");
        return Ok(());
    }
    timed("each crate alone, per feature (cargo-hack)", || {
        ensure_tool("cargo-hack", "cargo-hack", "0.6.46")?;
        for name in &order {
            // `cargo check` of the library builds no dev-dependency, and resolver 2 does
            // not unify their features into it, so this is the crate as a dependent sees it
            // (`--no-dev-deps` would rewrite manifests and the lock file instead).
            cargo(&["hack", "check", "-p", name, "--each-feature", "--locked"])?;
        }
        Ok(())
    })?;
    timed("cargo deny (licenses, bans, sources)", || {
        ensure_tool("cargo-deny", "cargo-deny", "0.20.2")?;
        cargo(&["deny", "--locked", "check", "licenses", "bans", "sources"])
    })?;
    eprintln!("publish order: {}", order.join(" -> "));
    Ok(())
}

fn release(args: &[String]) -> Result<(), String> {
    let version = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .ok_or("usage: cargo xtask release VERSION [--execute]")?;
    if !release::valid_version(version) {
        return Err(format!("`{version}` is not MAJOR.MINOR.PATCH"));
    }
    let execute = args.iter().any(|a| a == "--execute");
    if std::env::var_os("CI").is_some() && execute {
        return Err("release --execute never runs in CI".into());
    }
    let root = workspace_root();
    let manifest_path = root.join("Cargo.toml");
    let changelog_path = root.join("CHANGELOG.md");
    let manifest = std::fs::read_to_string(&manifest_path).map_err(|e| e.to_string())?;
    let changelog = std::fs::read_to_string(&changelog_path).map_err(|e| e.to_string())?;
    let date = cargo_date()?;
    let new_manifest = release::bump_workspace_version(&manifest, version)?;
    let new_changelog = release::release_changelog(&changelog, version, &date)?;
    let order = release::publish_order(&workspace_packages()?)?;
    if execute {
        std::fs::write(&manifest_path, new_manifest).map_err(|e| e.to_string())?;
        std::fs::write(&changelog_path, new_changelog).map_err(|e| e.to_string())?;
        release_check(&[])?;
    } else {
        eprintln!("dry run: would set version {version} and date the changelog {date}");
    }
    eprintln!("tag: v{version}");
    eprintln!("publish, in this order (never from CI):");
    for name in order {
        eprintln!("  cargo publish -p {name}");
    }
    Ok(())
}

fn cargo_date() -> Result<String, String> {
    let out = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map_err(|e| format!("date: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Regenerates (`write`) or compares the committed public API listing of each publishable
/// crate, `api/{crate}.txt`, from rustdoc's JSON output. Returns the crates whose API differs.
fn api_snapshot(write: bool) -> Result<Vec<String>, String> {
    let root = workspace_root();
    let dir = root.join("api");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut changed = Vec::new();
    for p in workspace_packages()? {
        // rustdoc's JSON output is unstable: the pinned stable toolchain allows it with
        // RUSTC_BOOTSTRAP, which is why this snapshot, not cargo-semver-checks, is used.
        cargo_output(
            &[
                "rustdoc",
                "-q",
                "-p",
                &p.name,
                "--lib",
                "--locked",
                "--",
                "-Z",
                "unstable-options",
                "--output-format",
                "json",
            ],
            &[("RUSTC_BOOTSTRAP", "1")],
        )?;
        let json_path = root
            .join("target/doc")
            .join(format!("{}.json", p.name.replace('-', "_")));
        let text = std::fs::read_to_string(&json_path)
            .map_err(|e| format!("{}: {e}", json_path.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let listing = xtask::api::listing(&doc);
        let file = dir.join(format!("{}.txt", p.name));
        let old = std::fs::read_to_string(&file).unwrap_or_default();
        if old != listing {
            changed.push(p.name.clone());
            if write {
                std::fs::write(&file, &listing).map_err(|e| e.to_string())?;
                eprintln!("wrote {}", file.display());
            }
        }
    }
    Ok(changed)
}

/// Seeds for each fuzz target's corpus: files of the repository.
fn fuzz_seeds(target: &str) -> Vec<&'static str> {
    const JSON: [&str; 8] = [
        "crates/bcfy-proto/tests/fixtures/real/live-calls.json",
        "crates/bcfy-proto/tests/fixtures/real/archivecall.json",
        "crates/bcfy-proto/tests/fixtures/live-calls-variants.json",
        "crates/bcfy-proto/tests/fixtures/live-calls-hostile.json",
        "crates/bcfy-proto/tests/fixtures/live-calls-empty.json",
        "crates/bcfy-proto/tests/fixtures/live-calls-error.json",
        "crates/bcfy-proto/tests/fixtures/live-calls-no-calls-key.json",
        "crates/bcfy-proto/tests/fixtures/archive-missing-calls.json",
    ];
    match target {
        "sniff" => vec!["crates/bcfy-proto/tests/fixtures/real/squelch-example.m4a"],
        "live_calls" | "archive" => JSON.to_vec(),
        _ => vec![],
    }
}

fn fuzz(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let mut minutes = 10.0_f64;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--minutes" {
            minutes = it
                .next()
                .and_then(|m| m.parse().ok())
                .ok_or("--minutes takes a number")?;
        } else {
            targets.push(a.clone());
        }
    }
    if targets.is_empty() {
        let manifest =
            std::fs::read_to_string(fuzz_dir.join("Cargo.toml")).map_err(|e| e.to_string())?;
        let doc: toml::Value = toml::from_str(&manifest).map_err(|e| e.to_string())?;
        targets = doc["bin"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["name"].as_str().map(str::to_owned))
            .collect();
    }
    ensure_tool("cargo-fuzz", "cargo-fuzz", "0.13.2")?;
    let per_target = ((minutes * 60.0) / targets.len() as f64).max(1.0) as u64;
    let mut rows = Vec::new();
    for t in &targets {
        let corpus = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
        for seed in fuzz_seeds(t) {
            let src = root.join(seed);
            if let Some(name) = src.file_name() {
                let _ = std::fs::copy(&src, corpus.join(name));
            }
        }
        let artifacts = fuzz_dir.join("artifacts").join(t);
        let before = count_files(&artifacts);
        eprintln!("==> fuzz {t} for {per_target}s");
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "-O", t])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={per_target}"))
            .arg("-print_final_stats=1")
            .output()
            .map_err(|e| format!("cargo fuzz: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let execs: u64 = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum();
        let crashes = count_files(&artifacts).saturating_sub(before);
        let status = if out.status.success() { "ok" } else { "CRASH" };
        rows.push((t.clone(), execs, crashes, status));
        if !out.status.success() {
            eprintln!(
                "{}",
                stderr
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let total: u64 = rows.iter().map(|r| r.1).sum();
    println!(
        "{:<14} {:>14} {:>8} status",
        "target", "executions", "crashes"
    );
    for (t, e, c, s) in &rows {
        println!("{t:<14} {e:>14} {c:>8} {s}");
    }
    println!("{:<14} {total:>14}", "total");
    if rows.iter().any(|r| r.2 > 0 || r.3 != "ok") {
        Err("fuzzing found crashes (see fuzz/artifacts/)".into())
    } else {
        Ok(())
    }
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

/// `contract --live [--group SID-TG] [--record DIR] [--site URL --cdn URL]`.
fn contract_live(contract: &Contract, args: &[String], json: bool) -> Result<(), String> {
    let group = flag_value(args, "--group")
        .unwrap_or_else(|| "4290-512".to_owned())
        .parse()
        .map_err(|e| format!("--group: {e}"))?;
    let record = flag_value(args, "--record").map(std::path::PathBuf::from);
    let mut opts = xtask::contract_live::default_options(group, record.as_deref())?;
    if let Some(site) = flag_value(args, "--site") {
        opts.site = url::Url::parse(&site).map_err(|e| format!("--site: {e}"))?;
    }
    if let Some(cdn) = flag_value(args, "--cdn") {
        opts.cdn = url::Url::parse(&cdn).map_err(|e| format!("--cdn: {e}"))?;
    }
    eprintln!(
        "==> live: one login, at most three polls 10 s apart, one archive block, one audio file, logout ({})",
        opts.site
    );
    let Some((log, summary)) = xtask::contract_live::run(&opts)? else {
        eprintln!(
            "SKIPPED: --live needs BCFY_USERNAME and BCFY_PASSWORD (an account you may use for this)"
        );
        return Ok(());
    };
    eprintln!(
        "    {} polls, {} calls, audio {}, archive {}",
        summary.polls,
        summary.calls,
        if summary.audio { "downloaded" } else { "none" },
        summary.archive
    );
    let mut checks = vec![Check {
        side: "live",
        name: format!("live session ({} requests)", log.len()),
        violations: contract.check_requests(
            &log,
            xtask::contract::CheckOptions {
                min_poll_interval_secs: None,
            },
        ),
    }];
    for file in &summary.recorded {
        let name = file.display().to_string();
        if file.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let kind = if name.contains("live-calls") {
            "live-calls"
        } else if name.contains("archivecall") {
            "archive"
        } else {
            continue;
        };
        let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        checks.push(Check {
            side: "live",
            name: format!("recorded {name}"),
            violations: contract.check_response(&name, kind, &body, true),
        });
        eprintln!("    recorded (scrubbed): {name}");
    }
    report(&checks, json)
}
