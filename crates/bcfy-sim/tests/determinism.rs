//! Same seed, same calls; the real-time clock feeds calls as time passes.

mod common;

use std::time::Duration;

use bcfy_sim::{ServedCall, Simulator};
use common::{Http, call_id, login, poll};

const START: i64 = 1_758_430_000;

async fn feed(seed: u64) -> Vec<ServedCall> {
    let sim = Simulator::builder()
        .seed(seed)
        .groups([(4290, 512), (4290, 1536), (9000, 7)])
        .manual_clock(START)
        .calls_per_second(4.0)
        .total_calls(Some(80))
        .faults(bcfy_sim::FaultPlan::none().dual_upload(0.1))
        .start()
        .await
        .unwrap();
    sim.advance(Duration::from_mins(1));
    assert!(sim.feed_exhausted());
    sim.ingested_calls()
}

#[tokio::test]
async fn same_seed_same_calls_different_seed_different_calls() {
    let a = feed(42).await;
    let b = feed(42).await;
    assert_eq!(a.len(), 80);
    assert_eq!(a, b);
    let c = feed(43).await;
    assert_ne!(
        a.iter().map(|x| &x.call_id).collect::<Vec<_>>(),
        c.iter().map(|x| &x.call_id).collect::<Vec<_>>()
    );
    // ts never decreases in ingest order; call ids are unique.
    assert!(a.windows(2).all(|w| w[0].ts <= w[1].ts));
    let ids: std::collections::HashSet<_> = a.iter().map(|x| &x.call_id).collect();
    assert_eq!(ids.len(), a.len());
    // Several calls share a second at 4 calls/s.
    assert!(a.windows(2).any(|w| w[0].ts == w[1].ts));
}

#[tokio::test]
async fn finite_feed_stops_at_total() {
    let sim = Simulator::builder()
        .manual_clock(START)
        .calls_per_second(0.0)
        .total_calls(Some(5))
        .start()
        .await
        .unwrap();
    assert_eq!(sim.ingest(3).len(), 3);
    assert_eq!(sim.ingest(3).len(), 2);
    assert!(sim.ingest(1).is_empty());
    assert!(sim.feed_exhausted());
}

#[tokio::test]
async fn real_clock_with_fixed_start_epoch_and_backfill_is_deterministic() {
    async fn history() -> Vec<String> {
        let sim = Simulator::builder()
            .seed(9)
            .start_epoch(START)
            .backfill(Duration::from_mins(2))
            .calls_per_second(1.0)
            .start()
            .await
            .unwrap();
        // Only the backfilled calls (ts <= START) are compared: later ones depend on timing.
        sim.ingested_calls()
            .into_iter()
            .filter(|c| c.ts < START)
            .map(|c| c.call_id)
            .collect()
    }
    let a = history().await;
    assert!(a.len() > 60, "{}", a.len());
    assert_eq!(a, history().await);
}

#[tokio::test]
async fn real_clock_feeds_a_polling_client() {
    let sim = Simulator::builder()
        .seed(1)
        .calls_per_second(40.0)
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let token = login(&http, &sim).await;
    let start = sim.now();
    assert!(
        (start
            - std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64())
        .abs()
            < 5.0
    );
    let mut seen = std::collections::HashSet::new();
    let mut pos = (start - 300.0).floor() as i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 10 {
        assert!(tokio::time::Instant::now() < deadline, "no calls appeared");
        let j = poll(
            &http,
            &sim,
            &token,
            &["4290-512", "4290-1536"],
            &pos.to_string(),
            false,
        )
        .await
        .json();
        for c in j["calls"].as_array().unwrap() {
            seen.insert(call_id(c));
        }
        // Overlap by one second (lastPos, not lastPos + 1), as the cursor rules say.
        pos = pos.max(j["lastPos"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served: std::collections::HashSet<_> =
        sim.served_calls().into_iter().map(|c| c.call_id).collect();
    assert_eq!(seen, served);
}

#[tokio::test]
async fn load_mode_bounds_memory_but_keeps_counts() {
    let sim = Simulator::builder()
        .manual_clock(START)
        .calls_per_second(0.0)
        .max_stored_calls(Some(10))
        .track_served(false)
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let token = login(&http, &sim).await;
    let ids = sim.ingest(15);
    let r = poll(&http, &sim, &token, &["4290-512", "4290-1536"], "0", true).await;
    assert_eq!(r.json()["calls"].as_array().unwrap().len(), 15);
    assert_eq!(sim.served_count(), 15);
    assert!(sim.served_calls().is_empty());
    sim.ingest(10);
    assert_eq!(sim.ingested_count(), 25);
    let stored = sim.ingested_calls();
    assert!(stored.len() >= 10 && stored.len() <= 20, "{}", stored.len());
    assert!(
        sim.call_audio(&ids[0]).is_none(),
        "the oldest call was dropped"
    );
}
