//! Repository automation for bcfy: `cargo xtask <command>`.
//!
//! - `ci`: everything `.ci/run` checks (fmt, clippy, tests, docs, extra checks).
//! - `ci-extra`: the checks beyond cargo's own that CI runs (`contract`).
//! - `contract [--json]`: checks the service contract (`contract/broadcastify.toml`) against the
//!   response fixtures (provider side) and the client's requests against the simulator
//!   (consumer side).

use std::process::{Command, ExitCode};

use xtask::contract::{Contract, Violation};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map_or("help", String::as_str);
    let rest = args.get(1..).unwrap_or_default();
    let result = match cmd {
        "ci" => ci(),
        "ci-extra" => contract_cmd(&[]),
        "contract" => contract_cmd(rest),
        _ => {
            eprintln!("usage: cargo xtask <ci|ci-extra|contract [--json]>");
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
    contract_cmd(&[])
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

fn contract_cmd(args: &[String]) -> Result<(), String> {
    let json = args.iter().any(|a| a == "--json");
    let contract = Contract::load()?;
    let mut checks = Vec::new();

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
