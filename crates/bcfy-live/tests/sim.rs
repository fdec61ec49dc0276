//! End to end against `bcfy-sim` on 127.0.0.1 with the real `HttpTransport` (real time, real
//! sockets; the simulator's manual clock makes the feed exact).

#![allow(clippy::field_reassign_with_default)]

use std::sync::Arc;
use std::time::Duration;

use bcfy_auth::{AuthManager, CredentialSource, Credentials, LoginBackoff};
use bcfy_live::LiveCallProducer;
use bcfy_proto::{
    GroupId, LiveCallEnvelope, LiveProducerConfig, Subscription, SystemId, TalkgroupId,
};
use bcfy_sim::{Endpoint, FaultPlan, SimHandle, Simulator};
use bcfy_transport::HttpTransport;
use tokio::sync::mpsc;
use tokio::time::timeout;

const EPOCH: i64 = 1_758_428_000;
const WAIT: Duration = Duration::from_secs(20);
const PLAYLIST: &str = "6f1c2b9a-3d4e-4f50-8a6b-7c8d9e0f1a2b";

struct Rig {
    producer: Arc<LiveCallProducer>,
    auth: Arc<AuthManager>,
}

async fn sim(groups: &[(u64, u64)], faults: FaultPlan) -> SimHandle {
    Simulator::builder()
        .playlist(PLAYLIST, groups.iter().copied())
        .seed(11)
        .groups(groups.iter().copied())
        .manual_clock(EPOCH)
        .calls_per_second(0.0)
        .user("alice", "s3cret-pw")
        .late_ingest_probability(0.2)
        .faults(faults)
        .start()
        .await
        .unwrap()
}

fn producer_for(sim: &SimHandle, groups: &[(u64, u64)], config: LiveProducerConfig) -> Rig {
    let subscription = Subscription::talkgroups(
        groups
            .iter()
            .map(|&(s, t)| GroupId::new(SystemId::new(s), TalkgroupId::new(t))),
    )
    .unwrap();
    producer_with(sim, subscription, config)
}

fn producer_with(sim: &SimHandle, subscription: Subscription, config: LiveProducerConfig) -> Rig {
    let transport = HttpTransport::builder().build().unwrap().shared();
    // Logins at least 100 ms apart (the default 5 s is the real service's contract).
    let auth = Arc::new(
        AuthManager::new(
            transport.clone(),
            sim.base_url(),
            CredentialSource::Credentials(Credentials::new("alice", "s3cret-pw")),
        )
        .with_backoff(LoginBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            min_interval: Duration::from_millis(100),
        }),
    );
    let producer = LiveCallProducer::new(
        transport,
        Arc::clone(&auth),
        sim.base_url(),
        subscription,
        config,
    )
    .unwrap()
    .with_rng_seed(5);
    Rig {
        producer: Arc::new(producer),
        auth,
    }
}

fn fast_config() -> LiveProducerConfig {
    let mut c = LiveProducerConfig::default();
    c.poll_interval = Duration::from_millis(20);
    c.jitter_ratio = 0.0;
    c.initial_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(200);
    c.initial_position = Some((EPOCH - 60) as f64);
    c
}

async fn recv_n(rx: &mut mpsc::Receiver<LiveCallEnvelope>, n: usize) -> Vec<LiveCallEnvelope> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let e = timeout(WAIT, rx.recv())
            .await
            .expect("envelope in time")
            .expect("producer alive");
        out.push(e);
    }
    out
}

fn ids(envs: &[LiveCallEnvelope]) -> Vec<String> {
    envs.iter().map(|e| e.call.call_id().to_string()).collect()
}

/// Asserts the client got every served call exactly once, in the order the sim served them.
fn assert_exactly_served(sim: &SimHandle, got: &[LiveCallEnvelope]) {
    let served: Vec<String> = sim.served_calls().into_iter().map(|c| c.call_id).collect();
    assert_eq!(ids(got), served);
    let ingested = sim.ingested_count();
    assert_eq!(
        served.len() as u64,
        ingested,
        "every ingested call was served"
    );
}

#[tokio::test]
async fn many_talkgroups_in_one_poll_with_own_shard_keys() {
    let groups = [
        (4290, 512),
        (4290, 513),
        (4290, 1536),
        (7001, 1),
        (7001, 2),
        (7001, 3),
    ];
    let sim = sim(&groups, FaultPlan::none()).await;
    let rig = producer_for(&sim, &groups, fast_config());
    sim.ingest(30);
    let (tx, mut rx) = mpsc::channel(64);
    let p = Arc::clone(&rig.producer);
    let task = tokio::spawn(async move { p.run(tx).await });
    let got = recv_n(&mut rx, 30).await;
    rig.producer.stop();
    task.await.unwrap().unwrap();

    assert_exactly_served(&sim, &got);
    let served = sim.served_calls();
    for (env, s) in got.iter().zip(&served) {
        assert_eq!(
            env.shard_key,
            (SystemId::new(s.sid), TalkgroupId::new(s.talkgroup))
        );
    }
    let shards: std::collections::BTreeSet<_> = got.iter().map(|e| e.shard_key).collect();
    assert!(shards.len() > 3, "calls spread over talkgroups: {shards:?}");
    let polls = sim.requests_to(Endpoint::LiveCalls);
    assert!(!polls.is_empty());
    for p in &polls {
        let sent = p.form_values("groups[]");
        assert_eq!(
            sent,
            [
                "4290-512",
                "4290-513",
                "4290-1536",
                "7001-1",
                "7001-2",
                "7001-3"
            ]
        );
        assert_eq!(p.header("x-requested-with"), Some("XMLHttpRequest"));
        assert_eq!(
            p.header("referer"),
            Some(format!("{}calls/", sim.base_url()).as_str())
        );
        assert!(p.header("origin").is_some());
        assert!(p.cookie.is_some());
    }
    assert_eq!(polls[0].form_value("doInit"), Some("1"));
    assert!(
        polls[1..]
            .iter()
            .all(|p| p.form_value("doInit") == Some("0"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn calls_ingested_in_the_second_of_a_poll_are_not_lost() {
    let groups = [(4290, 512), (4290, 513)];
    let sim = sim(&groups, FaultPlan::none()).await;
    let rig = producer_for(&sim, &groups, fast_config());
    let (tx, mut rx) = mpsc::channel(64);
    let p = Arc::clone(&rig.producer);
    let task = tokio::spawn(async move { p.run(tx).await });
    let mut got = Vec::new();
    for round in 0..5 {
        // Two calls in this second; a poll sees them; two more arrive in the SAME second.
        sim.ingest(2);
        got.extend(recv_n(&mut rx, 2).await);
        sim.ingest(2);
        got.extend(recv_n(&mut rx, 2).await);
        assert_eq!(got.len(), 4 * (round + 1));
        sim.advance(Duration::from_secs(1));
    }
    // Polls keep overlapping the last second; nothing more arrives.
    let answered = sim.answered(Endpoint::LiveCalls);
    timeout(WAIT, sim.wait_answered(Endpoint::LiveCalls, answered + 5))
        .await
        .unwrap();
    rig.producer.stop();
    task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "no call twice");
    assert_exactly_served(&sim, &got);
    assert!(
        rig.producer.stats().duplicates > 0,
        "the overlap did return repeats"
    );
    // The cursor overlaps: pos is the newest ts seen, never newest + 1.
    let last = got.last().unwrap().call.ts;
    let polls = sim.requests_to(Endpoint::LiveCalls);
    assert_eq!(
        polls.last().unwrap().form_value("pos"),
        Some(last.to_string().as_str())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_stalled_consumer_pauses_polling_and_every_call_arrives_once_in_order() {
    let groups = [(4290, 512), (4290, 513), (7001, 9)];
    let sim = sim(&groups, FaultPlan::none()).await;
    let mut config = fast_config();
    config.queue_maxsize = 4;
    let rig = producer_for(&sim, &groups, config);
    let (tx, mut rx) = mpsc::channel(4);
    let p = Arc::clone(&rig.producer);
    let task = tokio::spawn(async move { p.run(tx).await });

    sim.ingest(25);
    // The queue fills (4) and the producer holds the 5th: it stops polling.
    timeout(WAIT, sim.wait_served(25)).await.unwrap();
    let stalled_at = sim.answered(Endpoint::LiveCalls);
    // Calls keep coming while the consumer is stalled.
    for _ in 0..5 {
        sim.advance(Duration::from_secs(1));
        sim.ingest(5);
    }
    // 50 poll intervals of nothing: the producer must not have polled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sim.answered(Endpoint::LiveCalls),
        stalled_at,
        "no poll while the queue is full"
    );
    assert!(rig.producer.stats().dispatched <= 5);

    // Resume: drain everything, including what arrived during the stall.
    let got = recv_n(&mut rx, 50).await;
    timeout(WAIT, sim.wait_served(50)).await.unwrap();
    let answered = sim.answered(Endpoint::LiveCalls);
    timeout(WAIT, sim.wait_answered(Endpoint::LiveCalls, answered + 3))
        .await
        .unwrap();
    rig.producer.stop();
    task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err());
    assert_exactly_served(&sim, &got);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_expired_session_mid_stream_logs_in_again_and_loses_nothing() {
    let groups = [(4290, 512)];
    let sim = sim(&groups, FaultPlan::none()).await;
    let mut config = fast_config();
    config.max_retry_attempts = Some(3);
    let rig = producer_for(&sim, &groups, config);
    let (tx, mut rx) = mpsc::channel(64);
    let p = Arc::clone(&rig.producer);
    let task = tokio::spawn(async move { p.run(tx).await });
    sim.ingest(5);
    let mut got = recv_n(&mut rx, 5).await;
    let first_token = rig.auth.current().unwrap();
    sim.expire_sessions();
    sim.advance(Duration::from_secs(1));
    sim.ingest(5);
    got.extend(recv_n(&mut rx, 5).await);
    rig.producer.stop();
    task.await.unwrap().unwrap();
    assert_exactly_served(&sim, &got);
    assert_eq!(rig.producer.stats().relogins, 1);
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 2);
    let second_token = rig.auth.current().unwrap();
    assert_ne!(first_token.expose_secret(), second_token.expose_secret());
    // The dead token was never sent after its logged-out answer.
    let polls = sim.requests_to(Endpoint::LiveCalls);
    let dead = first_token.expose_secret();
    let first_new = polls
        .iter()
        .position(|p| p.cookie.as_deref() == Some(second_token.expose_secret()))
        .unwrap();
    assert!(
        polls[first_new..]
            .iter()
            .all(|p| p.cookie.as_deref() != Some(dead))
    );
    assert_eq!(polls[first_new].form_value("doInit"), Some("1"));
    sim.shutdown().await;
}

#[tokio::test]
async fn hostile_entries_duplicates_and_backwards_last_pos_are_survived() {
    let groups = [(4290, 512), (4290, 513)];
    let faults = FaultPlan::none()
        .nth(Endpoint::LiveCalls, 2, bcfy_sim::Fault::HostileEntries)
        .nth(Endpoint::LiveCalls, 3, bcfy_sim::Fault::DuplicateCalls)
        .nth(Endpoint::LiveCalls, 4, bcfy_sim::Fault::LastPosBackwards)
        .nth(Endpoint::LiveCalls, 5, bcfy_sim::Fault::MalformedJson)
        .nth(
            Endpoint::LiveCalls,
            6,
            bcfy_sim::Fault::too_many_requests_secs(1),
        );
    let sim = sim(&groups, faults).await;
    let rig = producer_for(&sim, &groups, fast_config());
    let (tx, mut rx) = mpsc::channel(64);
    let p = Arc::clone(&rig.producer);
    let task = tokio::spawn(async move { p.run(tx).await });
    let mut got = Vec::new();
    for _ in 0..8 {
        sim.ingest(3);
        got.extend(recv_n(&mut rx, 3).await);
        sim.advance(Duration::from_secs(1));
    }
    let answered = sim.answered(Endpoint::LiveCalls);
    timeout(WAIT, sim.wait_answered(Endpoint::LiveCalls, answered + 3))
        .await
        .unwrap();
    rig.producer.stop();
    task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err());
    assert_exactly_served(&sim, &got);
    let s = rig.producer.stats();
    assert!(s.rejected > 0, "{s:?}");
    assert!(s.rate_limited >= 1 && s.retries >= 1, "{s:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn playlist_system_and_node_subscriptions_receive_their_calls() {
    let groups = [(4290, 512), (4290, 513), (7001, 1)];
    let sim = sim(&groups, FaultPlan::none()).await;
    sim.ingest(12);
    let ingested = sim.ingested_calls();
    let node = ingested[0].node;
    let cases = [
        (Subscription::playlist(PLAYLIST).unwrap(), ingested.len()),
        (
            Subscription::System(SystemId::new(4290)),
            ingested.iter().filter(|c| c.sid == 4290).count(),
        ),
        (
            Subscription::Node(bcfy_proto::NodeId::new(node)),
            ingested.iter().filter(|c| c.node == node).count(),
        ),
    ];
    for (subscription, expected) in cases {
        assert!(expected > 0);
        let rig = producer_with(&sim, subscription.clone(), fast_config());
        let (tx, mut rx) = mpsc::channel(64);
        let p = Arc::clone(&rig.producer);
        let task = tokio::spawn(async move { p.run(tx).await });
        let got = recv_n(&mut rx, expected).await;
        let answered = sim.answered(Endpoint::LiveCalls);
        timeout(WAIT, sim.wait_answered(Endpoint::LiveCalls, answered + 2))
            .await
            .unwrap();
        rig.producer.stop();
        task.await.unwrap().unwrap();
        assert!(rx.try_recv().is_err(), "{subscription:?}: nothing extra");
        let want: Vec<String> = ingested
            .iter()
            .filter(|c| match &subscription {
                Subscription::System(s) => c.sid == s.get(),
                Subscription::Node(n) => c.node == n.get(),
                _ => true,
            })
            .map(|c| c.call_id.clone())
            .collect();
        assert_eq!(ids(&got), want, "{subscription:?}");
    }
    sim.shutdown().await;
}
