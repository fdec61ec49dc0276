//! The consumer side of `cargo xtask contract`: the real umbrella client driven through a
//! scripted session against `bcfy-sim` with faults switched on; the simulator's request log
//! is what the contract is checked against.

use std::time::Duration;

use bcfy::proto::{GroupId, NodeId, Subscription, SystemId, TimeWindow};
use bcfy::{BcfyEvent, Client};
use bcfy_sim::{Endpoint, Fault, FaultPlan, RetryAfter, Simulator};
use futures::StreamExt;
use secrecy::SecretString;

use crate::contract::{Observed, from_sim};

const USER: &str = "contract-user";
const PASSWORD: &str = "contract-password-5c1f";
const WHISPER_KEY: &str = "sk-contract-8d2e";
const PLAYLIST: &str = "6f1c2b9a-3d4e-4f50-8a6b-7c8d9e0f1a2b";
/// The healthy cadence of the run: above the contract's 3 s floor even with full jitter.
const POLL_INTERVAL: f64 = 3.5;
/// Live-calls requests to wait for: four producers, at least three polls each.
const POLLS: u64 = 14;

/// What one scripted session did, beside the request log.
#[derive(Debug, Default)]
pub struct SessionSummary {
    /// `calls.live` events seen.
    pub live: usize,
    /// `calls.audio.raw` events seen.
    pub audio: usize,
    /// `transcription.complete` events seen.
    pub transcripts: usize,
    /// Archive blocks fetched.
    pub archive_blocks: usize,
    /// Requests the simulator recorded.
    pub requests: usize,
}

/// Runs the scripted session and returns the request log as the checker reads it.
pub fn run() -> Result<(Vec<Observed>, SessionSummary), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(session())
}

fn group(s: &str) -> Result<GroupId, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}

async fn session() -> Result<(Vec<Observed>, SessionSummary), String> {
    let plan = FaultPlan::none()
        .nth(Endpoint::LiveCalls, 4, Fault::too_many_requests_secs(1))
        .nth(
            Endpoint::LiveCalls,
            6,
            Fault::Unavailable(Some(RetryAfter::HttpDate(Duration::from_secs(2)))),
        )
        .nth(Endpoint::LiveCalls, 8, Fault::MalformedJson)
        .nth(Endpoint::LiveCalls, 10, Fault::HostileEntries)
        .nth(Endpoint::LiveCalls, 11, Fault::DuplicateCalls)
        .nth(
            Endpoint::Audio,
            2,
            Fault::Unavailable(Some(RetryAfter::Seconds(1))),
        )
        .nth(Endpoint::Audio, 5, Fault::TruncatedBody)
        .nth(Endpoint::Audio, 7, Fault::ResetMidBody)
        .nth(Endpoint::Transcription, 2, Fault::Unavailable(None))
        .session_expiry_after(20);
    let sim = Simulator::builder()
        .seed(23)
        .groups([(4290, 512), (4290, 1536), (4290, 1537), (7001, 300)])
        .playlist(PLAYLIST, [(4290, 1537)])
        .calls_per_second(2.0)
        .user(USER, PASSWORD)
        .whisper_key(WHISPER_KEY)
        .faults(plan)
        .start()
        .await
        .map_err(|e| format!("simulator: {e}"))?;

    let mut config = bcfy::Config::default();
    config.endpoints.site = sim.base_url();
    config.endpoints.calls_cdn = sim.cdn_url();
    config.live.poll_interval = Duration::from_secs_f64(POLL_INTERVAL);
    config.live.jitter_ratio = 0.1;
    config.live.initial_backoff = Duration::from_millis(500);
    config.transcription.enabled = true;
    config.transcription.endpoint_url = Some(sim.whisper_url());
    config.transcription.api_key = Some(SecretString::from(WHISPER_KEY));
    let client = Client::builder()
        .config(config)
        .credentials(USER, SecretString::from(PASSWORD))
        .build()
        .map_err(|e| format!("client: {e}"))?;

    // Subscribers drain every topic, so back-pressure never stalls the run.
    let mut events = client.stream(">").map_err(|e| format!("subscribe: {e}"))?;
    let counter = tokio::spawn(async move {
        let mut s = SessionSummary::default();
        while let Some(event) = events.next().await {
            match &event.payload {
                BcfyEvent::Live(_) if event.topic.as_ref() == "calls.live" => s.live += 1,
                BcfyEvent::Audio(_) if event.topic.as_ref() == "calls.audio.raw" => s.audio += 1,
                BcfyEvent::Transcript(_) => s.transcripts += 1,
                _ => {}
            }
        }
        s
    });

    let producers = [
        Subscription::talkgroups([group("4290-512")?, group("4290-1536")?])
            .map_err(|e| e.to_string())?,
        Subscription::playlist(PLAYLIST).map_err(|e| e.to_string())?,
        Subscription::System(SystemId::new(7001)),
        Subscription::Node(NodeId::new(2893)),
    ];
    for p in producers {
        client
            .create_live_producer(p)
            .map_err(|e| format!("producer: {e}"))?;
    }
    client.start().await.map_err(|e| format!("start: {e}"))?;

    let now = sim.now() as i64;
    let blocks = client
        .get_archived_range(
            group("4290-512")?,
            TimeWindow {
                start: now - 3600,
                end: now,
            },
        )
        .await
        .map_err(|e| format!("archive: {e}"))?;

    let waited = tokio::time::timeout(
        Duration::from_secs(90),
        sim.wait_answered(Endpoint::LiveCalls, POLLS),
    )
    .await;
    if waited.is_err() {
        return Err(format!(
            "the client made only {} live-calls requests in 90 s",
            sim.answered(Endpoint::LiveCalls)
        ));
    }
    client
        .shutdown(Duration::from_secs(30))
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    client.logout().await.map_err(|e| format!("logout: {e}"))?;
    drop(client);
    let mut summary = counter.await.map_err(|e| format!("subscriber: {e}"))?;
    summary.archive_blocks = blocks.len();
    let records = sim.requests();
    summary.requests = records.len();
    sim.shutdown().await;
    Ok((from_sim(&records), summary))
}
