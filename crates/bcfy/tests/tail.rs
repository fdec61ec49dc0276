//! `tail` end to end on the embedded simulator, through the same `run` the example's `main`
//! calls: the README's first command, with `--jsonl --max-calls 50`.

#[path = "../examples/tail.rs"]
#[allow(dead_code)]
mod tail;

use std::collections::HashMap;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;

fn args(extra: &[&str]) -> tail::Args {
    let mut argv = vec!["tail", "--group", "4290-512", "--status-interval", "0"];
    argv.extend_from_slice(extra);
    tail::Args::parse_from(argv)
}

async fn run(args: tail::Args) -> (tail::Summary, Vec<Value>) {
    let mut out = Vec::new();
    let summary = tokio::time::timeout(Duration::from_mins(2), tail::run(args, &mut out))
        .await
        .expect("tail finished in time")
        .expect("tail succeeded");
    let text = String::from_utf8(out).expect("utf-8 output");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (summary, lines)
}

// On a current-thread runtime, as `tail` runs by default; the others use two workers.
#[tokio::test]
async fn jsonl_max_calls_50_emits_three_ordered_events_per_call_with_true_hashes_and_transcripts() {
    let (summary, lines) = run(args(&[
        "--jsonl",
        "--max-calls",
        "50",
        "--poll-interval",
        "0.2",
        "--sim-rate",
        "25",
    ]))
    .await;
    let sim = summary.sim.as_ref().expect("the embedded simulator ran");
    assert!(summary.drained, "shutdown drained in time");
    assert_eq!(summary.calls, 50);
    assert_eq!(lines.len(), 150, "three lines per call");

    let served: HashMap<String, bcfy_sim::ServedCall> = sim
        .served_calls()
        .into_iter()
        .map(|c| (c.call_id.clone(), c))
        .collect();

    let mut per_call: HashMap<String, Vec<&Value>> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for line in &lines {
        let id = line["call_id"].as_str().expect("call_id").to_owned();
        if !per_call.contains_key(&id) {
            order.push(id.clone());
        }
        per_call.entry(id).or_default().push(line);
    }
    assert_eq!(per_call.len(), 50, "50 distinct calls");
    for (id, events) in &per_call {
        let topics: Vec<&str> = events
            .iter()
            .map(|e| e["topic"].as_str().unwrap())
            .collect();
        assert_eq!(
            topics,
            ["calls.live", "calls.audio.raw", "transcription.complete"],
            "call {id}"
        );
        let sc = served
            .get(id)
            .unwrap_or_else(|| panic!("{id} was never served"));
        for e in events {
            assert_eq!(e["group"], "4290-512");
            assert_eq!(e["node"], sc.node);
            assert_eq!(e["filename"], sc.filename.as_str());
            assert_eq!(e["ts"], sc.ts);
            assert_eq!(e["start_time"], sc.start_time);
        }
        let audio = events[1];
        assert_eq!(
            audio["sha256"],
            sc.audio_sha256.as_str(),
            "audio hash of {id}"
        );
        assert_eq!(audio["bytes"], sc.audio_len);
        assert_eq!(audio["content_type"], "audio/mp4");
        let transcript = events[2];
        assert_eq!(
            transcript["text"],
            sc.transcript.as_str(),
            "transcript of {id}"
        );
        assert!(transcript["language"].is_string());
    }
    // Calls appear on calls.live in the order the service served them.
    let live_order: Vec<&str> = lines
        .iter()
        .filter(|l| l["topic"] == "calls.live")
        .map(|l| l["call_id"].as_str().unwrap())
        .collect();
    let mut served_pos: Vec<usize> = live_order
        .iter()
        .map(|id| {
            sim.served_calls()
                .iter()
                .position(|c| c.call_id == *id)
                .unwrap()
        })
        .collect();
    let sorted = {
        let mut s = served_pos.clone();
        s.sort_unstable();
        s
    };
    assert_eq!(served_pos, sorted, "live order follows the served order");
    served_pos.dedup();
    assert_eq!(served_pos.len(), 50);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_dir_saves_each_call_and_no_transcribe_gives_two_events() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, lines) = run(args(&[
        "--jsonl",
        "--no-transcribe",
        "--max-calls",
        "5",
        "--poll-interval",
        "0.2",
        "--sim-rate",
        "20",
        "--audio-dir",
        dir.path().to_str().unwrap(),
    ]))
    .await;
    let sim = summary.sim.as_ref().unwrap();
    assert_eq!(lines.len(), 10);
    for audio in lines.iter().filter(|l| l["topic"] == "calls.audio.raw") {
        let id = audio["call_id"].as_str().unwrap();
        let saved = std::fs::read(dir.path().join(format!("{id}.m4a"))).expect("saved audio");
        assert_eq!(saved, sim.call_audio(id).unwrap().as_ref(), "{id}");
    }
    assert!(lines.iter().all(|l| l["topic"] != "transcription.complete"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_ends_the_run_and_the_live_view_is_readable() {
    let mut out = Vec::new();
    let summary = tail::run(
        args(&[
            "--duration",
            "3",
            "--poll-interval",
            "0.2",
            "--sim-rate",
            "10",
        ]),
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(summary.calls > 0, "some calls in 3 s at 10 calls/s");
    assert!(text.contains("4290-512"), "{text}");
    assert!(text.contains('»'), "a transcript line: {text}");
    summary.sim.unwrap().shutdown().await;
}

#[test]
fn times_parse() {
    let now = 1_700_000_000;
    assert_eq!(tail::parse_time("now", now).unwrap(), now);
    assert_eq!(tail::parse_time("-2h", now).unwrap(), now - 7200);
    assert_eq!(tail::parse_time("1699990000", now).unwrap(), 1_699_990_000);
    assert_eq!(
        tail::parse_time("2023-11-14T22:13:20Z", now).unwrap(),
        1_700_000_000
    );
    assert!(tail::parse_time("yesterday", now).is_err());
    assert!(tail::parse_time("-5w", now).is_err());
}

#[test]
fn flags_conflict_and_groups_parse() {
    assert!(tail::Args::try_parse_from(["tail", "--group", "4290"]).is_err());
    assert!(tail::Args::try_parse_from(["tail", "--group", "1-2", "--playlist", "x"]).is_err());
    let a = tail::Args::try_parse_from(["tail", "--group", "1-2", "--group", "3-4"]).unwrap();
    assert_eq!(a.groups.len(), 2);
    assert_eq!(a.threads, 1, "a current-thread runtime by default");
    let a = tail::Args::try_parse_from(["tail", "--group", "1-2", "--threads", "4"]).unwrap();
    assert_eq!(a.threads, 4);
    assert!(tail::Args::try_parse_from(["tail", "--archive", "--group", "1-2"]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_mode_prints_the_archived_calls_of_the_window() {
    let (summary, lines) = run(args(&[
        "--jsonl",
        "--archive",
        "--from",
        "-1h",
        "--to",
        "now",
        "--sim-rate",
        "2",
    ]))
    .await;
    let sim = summary.sim.as_ref().unwrap();
    let now = sim.now() as i64;
    let mut want: Vec<String> = sim
        .ingested_calls()
        .into_iter()
        .filter(|c| c.group == "4290-512" && c.ts >= now - 3600 && c.ts <= now)
        .map(|c| c.call_id)
        .collect();
    assert!(!want.is_empty(), "the simulator has some history");
    let mut got: Vec<String> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["topic"], "archive");
            assert_eq!(l["group"], "4290-512");
            l["call_id"].as_str().unwrap().to_owned()
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    sim.shutdown().await;
}
