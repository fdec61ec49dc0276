//! End to end against `bcfy-sim`'s CDN on 127.0.0.1 with the real `HttpTransport`.

#![allow(clippy::field_reassign_with_default)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bcfy_audio::{AudioConsumer, AudioOutcome};
use bcfy_proto::{AudioConfig, Call, LiveCallEnvelope, SessionToken};
use bcfy_sim::{Endpoint, Fault, FaultPlan, SimHandle, Simulator, Trigger};
use bcfy_transport::{HttpTransport, SharedTransport};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::timeout;

const EPOCH: i64 = 1_758_428_000;
const WAIT: Duration = Duration::from_secs(30);

async fn start(builder: bcfy_sim::SimulatorBuilder) -> SimHandle {
    builder
        .seed(21)
        .groups([(4290, 512), (4290, 513), (7001, 4)])
        .manual_clock(EPOCH)
        .calls_per_second(0.0)
        .start()
        .await
        .unwrap()
}

fn transport(sim: &SimHandle) -> SharedTransport {
    let t = HttpTransport::builder().build().unwrap().shared();
    t.session()
        .set(Some(SessionToken::new(sim.create_session())));
    t
}

fn consumer(sim: &SimHandle, t: SharedTransport, config: AudioConfig) -> Arc<AudioConsumer> {
    Arc::new(
        AudioConsumer::new(t, sim.cdn_url(), config)
            .unwrap()
            .with_site(&sim.base_url())
            .with_rng_seed(1),
    )
}

fn fast() -> AudioConfig {
    let mut c = AudioConfig::default();
    c.initial_backoff = Duration::from_millis(10);
    c.max_backoff = Duration::from_millis(50);
    c
}

/// Ingests `n` calls and returns their envelopes, in ingest order.
fn ingest(sim: &SimHandle, n: usize) -> Vec<LiveCallEnvelope> {
    sim.ingest(n)
        .iter()
        .map(|id| {
            let call = Call::from_value(&sim.call_payload(id).unwrap()).unwrap();
            assert_eq!(call.call_id().as_str(), id);
            LiveCallEnvelope::new(Arc::new(call), None, SystemTime::now())
        })
        .collect()
}

async fn run(consumer: &Arc<AudioConsumer>, envelopes: Vec<LiveCallEnvelope>) -> Vec<AudioOutcome> {
    let n = envelopes.len();
    let (in_tx, in_rx) = mpsc::channel(n.max(1));
    let (out_tx, mut out_rx) = mpsc::channel(4);
    for e in envelopes {
        in_tx.send(e).await.unwrap();
    }
    drop(in_tx);
    let c = Arc::clone(consumer);
    let task = tokio::spawn(async move { c.run(in_rx, out_tx).await });
    let mut out = Vec::new();
    while let Some(o) = timeout(WAIT, out_rx.recv()).await.unwrap() {
        out.push(o);
    }
    task.await.unwrap().unwrap();
    assert_eq!(out.len(), n);
    out
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every outcome is a payload whose bytes hash to what the sim served, in input order.
fn assert_matches_sim(sim: &SimHandle, ids: &[String], out: &[AudioOutcome]) {
    let ingested = sim.ingested_calls();
    for (id, o) in ids.iter().zip(out) {
        let AudioOutcome::Ok(audio) = o else {
            panic!("{id}: {o:?}");
        };
        assert_eq!(audio.call_id.as_str(), id);
        let served = ingested.iter().find(|c| &c.call_id == id).unwrap();
        assert_eq!(audio.payload.len() as u64, served.audio_len);
        assert_eq!(sha(&audio.payload), served.audio_sha256, "{id}");
    }
}

fn id_list(envs: &[LiveCallEnvelope]) -> Vec<String> {
    envs.iter().map(|e| e.call.call_id().to_string()).collect()
}

#[tokio::test]
async fn audio_bytes_match_the_sim_with_the_servers_content_type() {
    // Some calls have no hash: their CDN path is /{systemId}/{filename}.m4a.
    let sim = start(Simulator::builder().hashless_probability(0.4)).await;
    let t = transport(&sim);
    let c = consumer(&sim, t, fast());
    let envs = ingest(&sim, 8);
    let ids = id_list(&envs);
    let out = run(&c, envs).await;
    assert_matches_sim(&sim, &ids, &out);
    for o in &out {
        let AudioOutcome::Ok(a) = o else {
            unreachable!()
        };
        assert_eq!(
            (a.content_type.as_str(), a.content_type_sniffed),
            ("audio/mp4", false)
        );
    }
    let reqs = sim.requests_to(Endpoint::Audio);
    assert_eq!(reqs.len(), 8, "each call downloaded once");
    let hashless = reqs
        .iter()
        .filter(|r| r.path.matches('/').count() == 2)
        .count();
    assert!(hashless > 0 && hashless < 8, "{hashless} hashless of 8");
    for r in &reqs {
        assert_eq!(
            r.header("referer"),
            Some(format!("{}calls/", sim.base_url()).as_str())
        );
        assert!(r.cookie.is_some());
        assert!(r.header("user-agent").unwrap().contains("Chrome/126"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_content_type_is_sniffed() {
    let sim = start(Simulator::builder().audio_content_type(None)).await;
    let c = consumer(&sim, transport(&sim), fast());
    let envs = ingest(&sim, 2);
    let ids = id_list(&envs);
    let out = run(&c, envs).await;
    assert_matches_sim(&sim, &ids, &out);
    let AudioOutcome::Ok(a) = &out[0] else {
        unreachable!()
    };
    assert_eq!(
        (a.content_type.as_str(), a.content_type_sniffed),
        ("audio/mp4", true)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn truncated_and_reset_bodies_are_retried() {
    let faults = FaultPlan::none()
        .nth(Endpoint::Audio, 2, Fault::TruncatedBody)
        .nth(Endpoint::Audio, 3, Fault::TruncatedBody)
        .nth(Endpoint::Audio, 5, Fault::ResetMidBody);
    let sim = start(Simulator::builder().faults(faults)).await;
    let mut config = fast();
    config.max_concurrency = 1; // makes "the n-th request" a known call
    let c = consumer(&sim, transport(&sim), config);
    let envs = ingest(&sim, 5);
    let ids = id_list(&envs);
    let out = run(&c, envs).await;
    assert_matches_sim(&sim, &ids, &out);
    assert_eq!(sim.requests_to(Endpoint::Audio).len(), 8);
    assert_eq!(c.stats().retries, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_exhausted_budget_is_an_in_order_failure_and_404_is_final() {
    let faults = FaultPlan::none().rule(
        Endpoint::Audio,
        Trigger::Range(2, 4),
        Fault::Unavailable(None),
    );
    let sim = start(Simulator::builder().faults(faults)).await;
    let mut config = fast();
    config.max_concurrency = 1;
    config.max_attempts = 3;
    let c = consumer(&sim, transport(&sim), config);
    let mut envs = ingest(&sim, 3);
    // A call the CDN does not have.
    let mut ghost = (*envs[0].call).clone();
    ghost.filename = "1700000000-999".to_owned();
    envs.push(LiveCallEnvelope::new(
        Arc::new(ghost),
        None,
        SystemTime::now(),
    ));
    envs.extend(ingest(&sim, 1));
    let ids = id_list(&envs);
    let out = run(&c, envs).await;
    let got: Vec<String> = out.iter().map(|o| o.call_id().to_string()).collect();
    assert_eq!(got, ids, "outcomes in input order");
    assert_matches_sim(&sim, &ids[..1], &out[..1]);
    let AudioOutcome::Failed(f) = &out[1] else {
        panic!("{:?}", out[1])
    };
    assert_eq!(f.attempts, 3);
    assert!(f.error.contains("503"), "{}", f.error);
    assert_matches_sim(&sim, &ids[2..3], &out[2..3]);
    let AudioOutcome::Failed(nf) = &out[3] else {
        panic!("{:?}", out[3])
    };
    assert_eq!(nf.attempts, 1);
    assert_matches_sim(&sim, &ids[4..], &out[4..]);
    assert_eq!(sim.requests_to(Endpoint::Audio).len(), 1 + 3 + 1 + 1 + 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrent_downloads_from_a_throttled_cdn_keep_call_order() {
    // ~20-25 KB per call at 400 KB/s: about 55 ms each, so overlap is measurable.
    let sim = start(
        Simulator::builder()
            .audio_throttle(Some(400_000))
            .audio_padding(8_000),
    )
    .await;
    let mut config = fast();
    config.max_concurrency = 4;
    config.chunk_size = 4096;
    let c = consumer(&sim, transport(&sim), config);
    let envs = ingest(&sim, 16);
    let ids = id_list(&envs);
    let sequential: f64 = sim
        .ingested_calls()
        .iter()
        .map(|s| s.audio_len as f64 / 400_000.0)
        .sum();
    let started = Instant::now();
    let out = run(&c, envs).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_matches_sim(&sim, &ids, &out);
    assert!(
        elapsed < sequential * 0.75,
        "downloads overlapped: {elapsed:.3} s vs {sequential:.3} s one at a time"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn producer_to_consumer_pipeline_delivers_every_served_call_with_its_audio() {
    use bcfy_auth::{AuthManager, CredentialSource, Credentials};
    use bcfy_live::LiveCallProducer;
    use bcfy_proto::{GroupId, LiveProducerConfig, Subscription};

    let sim = start(
        Simulator::builder()
            .user("bob", "pw-bob")
            .audio_throttle(Some(2_000_000)),
    )
    .await;
    let t = HttpTransport::builder().build().unwrap().shared();
    let auth = Arc::new(AuthManager::new(
        t.clone(),
        sim.base_url(),
        CredentialSource::Credentials(Credentials::new("bob", "pw-bob")),
    ));
    let mut pc = LiveProducerConfig::default();
    pc.poll_interval = Duration::from_millis(20);
    pc.initial_position = Some((EPOCH - 10) as f64);
    let groups: Vec<GroupId> = ["4290-512", "4290-513", "7001-4"]
        .iter()
        .map(|g| g.parse().unwrap())
        .collect();
    let producer = Arc::new(
        LiveCallProducer::new(
            t.clone(),
            auth,
            sim.base_url(),
            Subscription::talkgroups(groups).unwrap(),
            pc,
        )
        .unwrap(),
    );
    let c = consumer(&sim, t, fast());
    let (live_tx, live_rx) = mpsc::channel(8);
    let (out_tx, mut out_rx) = mpsc::channel(2);
    let p = Arc::clone(&producer);
    let ptask = tokio::spawn(async move { p.run(live_tx).await });
    let c2 = Arc::clone(&c);
    let ctask = tokio::spawn(async move { c2.run(live_rx, out_tx).await });
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.extend(sim.ingest(5));
        sim.advance(Duration::from_secs(1));
    }
    let mut out = Vec::new();
    while out.len() < ids.len() {
        out.push(timeout(WAIT, out_rx.recv()).await.unwrap().unwrap());
    }
    producer.stop();
    ptask.await.unwrap().unwrap();
    ctask.await.unwrap().unwrap(); // the producer's sender is gone: the consumer drains and ends
    let served: Vec<String> = sim.served_calls().into_iter().map(|s| s.call_id).collect();
    assert_eq!(served.len(), ids.len());
    assert_matches_sim(&sim, &served, &out);
    assert_eq!(sim.requests_to(Endpoint::Audio).len(), ids.len());
    sim.shutdown().await;
}
