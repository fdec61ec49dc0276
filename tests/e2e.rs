//! End-to-end tests of the `bcfy` client against `bcfy-sim` over real sockets (127.0.0.1):
//! every served call arrives exactly once per topic in stage order, graceful shutdown drains
//! what is in flight, back-pressure stops polling, transcription failures are events, health
//! and archives work through the facade.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bcfy::bus::Event;
use bcfy::proto::{GroupId, Subscription, TimeBlock};
use bcfy::{BcfyEvent, Client, ClientBuilder, Config, RunState};
use bcfy_sim::{Endpoint, Fault, FaultPlan, SimHandle, Simulator};
use futures::StreamExt;
use secrecy::SecretString;

const USER: &str = "e2e-user";
const PASSWORD: &str = "e2e-password";

fn groups() -> Vec<GroupId> {
    vec!["4290-512".parse().unwrap(), "4290-1536".parse().unwrap()]
}

fn talkgroups() -> Subscription {
    Subscription::talkgroups(groups()).unwrap()
}

async fn sim(builder: bcfy_sim::SimulatorBuilder) -> SimHandle {
    builder
        .groups([(4290, 512), (4290, 1536)])
        .user(USER, PASSWORD)
        .start()
        .await
        .expect("simulator starts")
}

fn client_for(sim: &SimHandle, transcribe: bool) -> ClientBuilder {
    let mut config = Config::default();
    config.endpoints.site = sim.base_url();
    config.endpoints.calls_cdn = sim.cdn_url();
    config.live.poll_interval = Duration::from_millis(100);
    config.live.initial_backoff = Duration::from_millis(50);
    config.live.max_backoff = Duration::from_millis(200);
    config.audio.initial_backoff = Duration::from_millis(20);
    config.audio.max_backoff = Duration::from_millis(100);
    config.transcription.enabled = transcribe;
    config.transcription.endpoint_url = Some(sim.whisper_url());
    config.transcription.api_key = Some(SecretString::from("sk-e2e"));
    Client::builder()
        .config(config)
        .credentials(USER, SecretString::from(PASSWORD))
}

/// Reads `stream` until `done` says so (or 60 s pass, which fails the test).
async fn collect_until(
    stream: &mut bcfy::bus::SubscriptionStream<BcfyEvent>,
    seen: &mut Vec<Event<BcfyEvent>>,
    mut done: impl FnMut(&[Event<BcfyEvent>]) -> bool,
) {
    tokio::time::timeout(Duration::from_mins(1), async {
        while !done(seen) {
            match stream.next().await {
                Some(e) => seen.push(e),
                None => panic!("stream ended early after {} events", seen.len()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out after {} events", seen.len()));
}

/// Shuts down while draining the stream into `seen` (the bus drains into it).
async fn shutdown_draining(
    client: &Client,
    stream: &mut bcfy::bus::SubscriptionStream<BcfyEvent>,
    seen: &mut Vec<Event<BcfyEvent>>,
) -> bcfy::ShutdownReport {
    let drain = async {
        while let Some(e) = stream.next().await {
            seen.push(e);
        }
    };
    let (report, ()) = tokio::join!(client.shutdown(Duration::from_secs(30)), drain);
    report.expect("graceful shutdown within the timeout")
}

fn count(seen: &[Event<BcfyEvent>], topic: &str) -> usize {
    seen.iter().filter(|e| e.topic() == topic).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_call_arrives_exactly_once_per_topic_in_stage_order() {
    const TOTAL: usize = 40;
    let sim = sim(Simulator::builder()
        .seed(11)
        .calls_per_second(40.0)
        .total_calls(Some(TOTAL as u64)))
    .await;
    let client = client_for(&sim, true).build().unwrap();
    let mut stream = client.stream(">").unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();

    let mut seen = Vec::new();
    collect_until(&mut stream, &mut seen, |s| {
        count(s, "transcription.complete") + count(s, "transcription.failed") >= TOTAL
    })
    .await;
    let report = shutdown_draining(&client, &mut stream, &mut seen).await;

    let served = sim.served_calls();
    assert_eq!(served.len(), TOTAL, "the sim served its whole feed");
    assert_eq!(report.counts.live, TOTAL as u64);
    assert_eq!(report.counts.audio, TOTAL as u64);
    assert_eq!(report.counts.transcripts, TOTAL as u64);
    let audio = client
        .stats()
        .audio
        .expect("the audio stage reports its stats");
    assert_eq!(audio.downloaded, TOTAL as u64);
    assert_eq!(
        report.counts.audio_failed + report.counts.transcription_failed,
        0
    );

    // Positions of each (topic, call) in the single ordered stream.
    let mut positions: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, e) in seen.iter().enumerate() {
        positions
            .entry((e.topic().to_owned(), e.payload.call_id().to_string()))
            .or_default()
            .push(i);
    }
    for call in &served {
        let id = call.call_id.as_str();
        let (sid, tg) = (call.sid, call.talkgroup);
        let stages = [
            "calls.live".to_owned(),
            format!("calls.live.{sid}.{tg}"),
            "calls.audio.raw".to_owned(),
            format!("calls.audio.raw.{id}"),
            "transcription.complete".to_owned(),
        ];
        let mut last = None;
        for topic in &stages {
            let at = positions
                .get(&(topic.clone(), id.to_owned()))
                .unwrap_or_else(|| panic!("{id} never reached {topic}"));
            assert_eq!(at.len(), 1, "{id} on {topic} {} times", at.len());
            assert!(last < Some(at[0]), "{id}: {topic} out of order");
            last = Some(at[0]);
        }
    }
    // Nothing else arrived: 5 events per served call.
    assert_eq!(seen.len(), 5 * TOTAL);

    for e in &seen {
        match &e.payload {
            BcfyEvent::Audio(a) => {
                let call = served
                    .iter()
                    .find(|c| c.call_id == a.call_id.as_str())
                    .unwrap();
                assert_eq!(bcfy::event::sha256_hex(&a.payload), call.audio_sha256);
            }
            BcfyEvent::Transcript(t) => {
                let expected = sim.transcript_for(t.call_id.as_str()).unwrap();
                assert_eq!(t.text.trim(), expected.trim());
            }
            _ => {}
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_every_call_in_flight() {
    // Slow audio (about 0.3 s a call) so calls are mid-pipeline when shutdown begins.
    let sim = sim(Simulator::builder()
        .seed(12)
        .calls_per_second(50.0)
        .total_calls(Some(60))
        .audio_padding(8 * 1024)
        .audio_throttle(Some(32 * 1024)))
    .await;
    let client = client_for(&sim, true).build().unwrap();
    let mut stream = client.stream(">").unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();

    let mut seen = Vec::new();
    collect_until(&mut stream, &mut seen, |s| count(s, "calls.live") >= 10).await;
    let transcripts_before = count(&seen, "transcription.complete");
    let report = shutdown_draining(&client, &mut stream, &mut seen).await;

    let live = count(&seen, "calls.live");
    assert!(live >= 10);
    assert!(
        transcripts_before < live,
        "calls were in flight when shutdown began ({transcripts_before} of {live} done)"
    );
    assert_eq!(
        count(&seen, "calls.audio.raw"),
        live,
        "every polled call got its audio"
    );
    assert_eq!(
        count(&seen, "transcription.complete"),
        live,
        "and its transcript"
    );
    assert_eq!(report.counts.live, live as u64);
    assert_eq!(report.counts.transcripts, live as u64);
    assert_eq!(client.health().state, RunState::Stopped);
    assert!(client.start().await.is_err(), "no restart after shutdown");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcription_failures_are_events_not_fake_transcripts() {
    // The Whisper endpoint wants another key: every transcription is a 401.
    let sim = sim(Simulator::builder()
        .seed(13)
        .calls_per_second(20.0)
        .total_calls(Some(5))
        .whisper_key("sk-the-right-one"))
    .await;
    let client = client_for(&sim, true).build().unwrap();
    let mut stream = client.stream(">").unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();
    let mut seen = Vec::new();
    collect_until(&mut stream, &mut seen, |s| {
        count(s, "transcription.failed") >= 5
    })
    .await;
    let report = shutdown_draining(&client, &mut stream, &mut seen).await;

    assert_eq!(count(&seen, "transcription.complete"), 0);
    assert_eq!(count(&seen, "transcription.failed"), 5);
    assert_eq!(count(&seen, "calls.audio.raw"), 5, "audio still flows");
    assert_eq!(report.counts.transcription_failed, 5);
    for e in &seen {
        if let BcfyEvent::TranscriptFailed(f) = &e.payload {
            assert!(!f.error.is_empty());
            assert!(
                !f.error.contains("sk-e2e"),
                "no API key in errors: {}",
                f.error
            );
            let json = e.payload.to_json();
            assert_eq!(json["topic"], "transcription.failed");
            assert!(json["error"].is_string());
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_failures_are_events_and_do_not_stop_the_pipeline() {
    // Every audio download is truncated: each call ends on calls.audio.failed.
    let sim = sim(Simulator::builder()
        .seed(14)
        .calls_per_second(20.0)
        .total_calls(Some(3))
        .faults(FaultPlan::none().always(Endpoint::Audio, Fault::TruncatedBody)))
    .await;
    let client = client_for(&sim, true).build().unwrap();
    let mut stream = client.stream(">").unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();
    let mut seen = Vec::new();
    collect_until(&mut stream, &mut seen, |s| {
        count(s, "calls.audio.failed") >= 3
    })
    .await;
    let report = shutdown_draining(&client, &mut stream, &mut seen).await;
    assert_eq!(count(&seen, "calls.audio.raw"), 0);
    assert_eq!(
        count(&seen, "transcription.complete"),
        0,
        "no transcript without audio"
    );
    assert_eq!(report.counts.audio_failed, 3);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_stops_polling_and_loses_nothing() {
    let sim = sim(Simulator::builder().seed(15).calls_per_second(50.0)).await;
    let client = client_for(&sim, false)
        .bus_capacity(2)
        .live_config(bcfy::proto::LiveProducerConfig {
            poll_interval: Duration::from_millis(50),
            queue_maxsize: 4,
            ..Default::default()
        })
        .build()
        .unwrap();
    let mut stream = client.stream("calls.live").unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();

    // Nobody reads: queues fill up to the live queue, then polling stops.
    tokio::time::timeout(Duration::from_mins(1), async {
        while client.backlog() < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the live queue fills");
    assert_eq!(client.health().backlog, 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let polls_a = sim.requests_to(Endpoint::LiveCalls).len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls_b = sim.requests_to(Endpoint::LiveCalls).len();
    assert_eq!(polls_a, polls_b, "a blocked pipeline does not poll");

    // Reading resumes the flow; nothing was lost meanwhile.
    let mut seen = Vec::new();
    collect_until(&mut stream, &mut seen, |s| s.len() >= 200).await;
    let polls_c = sim.requests_to(Endpoint::LiveCalls).len();
    assert!(polls_c > polls_b, "polling resumed");
    let _ = shutdown_draining(&client, &mut stream, &mut seen).await;
    let served = sim.served_calls();
    let got: std::collections::HashSet<String> = seen
        .iter()
        .map(|e| e.payload.call_id().to_string())
        .collect();
    assert_eq!(got.len(), seen.len(), "no duplicates");
    // Every call the service answered before the end was dispatched.
    for call in &served {
        assert!(
            got.contains(&call.call_id),
            "{} served but lost",
            call.call_id
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_lifecycle() {
    let sim = sim(Simulator::builder().seed(16).calls_per_second(5.0)).await;
    let client = client_for(&sim, false).build().unwrap();
    let h = client.health();
    assert_eq!(h.state, RunState::Idle);
    assert!(h.live && !h.ready);
    assert_eq!(h.backlog_threshold, 192, "three quarters of 256 by default");

    let mut stream = client.stream("calls.live").unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();
    let h = client.health();
    assert_eq!(h.state, RunState::Running);
    assert!(h.live && h.ready, "{h:?}");
    let mut seen = Vec::new();
    collect_until(&mut stream, &mut seen, |s| !s.is_empty()).await;
    assert!(client.health().counts.live >= 1);
    shutdown_draining(&client, &mut stream, &mut seen).await;
    let h = client.health();
    assert_eq!(h.state, RunState::Stopped);
    assert!(!h.live && !h.ready);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_archives_and_logout_through_the_facade() {
    let sim = sim(Simulator::builder()
        .seed(17)
        .calls_per_second(0.2)
        .backfill(Duration::from_hours(4)))
    .await;
    let client = client_for(&sim, false).build().unwrap();
    let token = client.authenticate().await.unwrap();
    assert!(!format!("{token:?}").contains(token.expose_secret()));

    let group: GroupId = "4290-512".parse().unwrap();
    let block = TimeBlock::containing(sim.now() as i64 - 3600);
    let result = client.get_archived_calls(group, block).await.unwrap();
    let window = block.window();
    let expected: Vec<String> = sim
        .ingested_calls()
        .into_iter()
        .filter(|c| c.group == "4290-512" && c.ts >= block.epoch_secs() && c.ts < window.end)
        .map(|c| c.call_id)
        .collect();
    assert!(!expected.is_empty(), "the block has calls");
    let mut got: Vec<String> = result
        .calls
        .iter()
        .map(|c| c.call_id().to_string())
        .collect();
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(!result.cache_hit);
    let again = client.get_archived_calls(group, block).await.unwrap();
    assert!(again.cache_hit, "the second fetch is served by the cache");

    client.logout().await.unwrap();
    assert_eq!(sim.requests_to(Endpoint::Logout).len(), 1);
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_an_authentication_error() {
    let sim = sim(Simulator::builder().seed(18).calls_per_second(0.0)).await;
    let mut config = Config::default();
    config.endpoints.site = sim.base_url();
    let client = Client::builder()
        .config(config)
        .credentials(USER, SecretString::from("wrong-password"))
        .build()
        .unwrap();
    let err = client.authenticate().await.unwrap_err();
    assert_eq!(err.kind(), bcfy::ErrorKind::Authentication);
    assert_eq!(err.retry_hint(), bcfy::proto::RetryHint::Never);
    assert!(!err.to_string().contains("wrong-password"));
    assert!(!format!("{err:?}").contains("wrong-password"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_and_producers_added_after_start_see_every_call_once() {
    const TOTAL: usize = 12;
    let sim = sim(Simulator::builder()
        .seed(19)
        .calls_per_second(0.0)
        .total_calls(Some(TOTAL as u64)))
    .await;
    let client = client_for(&sim, false).build().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    client
        .register_consumer("calls.audio.raw", move |event: Event<BcfyEvent>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event.payload.call_id().to_string());
            }
        })
        .unwrap()
        .detach();
    let mut stream = client.stream("calls.live.>").unwrap();
    // One producer per talkgroup, the second created once the client runs.
    client
        .create_live_producer(Subscription::talkgroups([groups()[0]]).unwrap())
        .unwrap();
    client.start().await.unwrap();
    client
        .create_live_producer(Subscription::talkgroups([groups()[1]]).unwrap())
        .unwrap();
    let ids = sim.ingest(TOTAL);
    assert_eq!(ids.len(), TOTAL);

    let mut seen = Vec::new();
    collect_until(&mut stream, &mut seen, |s| s.len() >= TOTAL).await;
    let report = shutdown_draining(&client, &mut stream, &mut seen).await;
    assert_eq!(report.counts.live, TOTAL as u64);
    let mut live: Vec<String> = seen
        .iter()
        .map(|e| e.payload.call_id().to_string())
        .collect();
    let mut audio: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    let mut want = ids;
    live.sort();
    audio.sort();
    want.sort();
    assert_eq!(
        live, want,
        "each shard topic carried its talkgroup's calls once"
    );
    assert_eq!(
        audio, want,
        "the handler saw every audio once, drained before shutdown returned"
    );
    for e in &seen {
        let (sid, tg) = e.payload.call().shard_key();
        assert_eq!(e.topic(), format!("calls.live.{}.{}", sid.get(), tg.get()));
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_runs_over_tls_and_http2() {
    let sim = sim(Simulator::builder()
        .seed(20)
        .calls_per_second(20.0)
        .total_calls(Some(3))
        .tls(true))
    .await;
    assert_eq!(sim.base_url().scheme(), "https");
    let cert = bcfy::transport::rustls::pki_types::CertificateDer::from(
        sim.tls_certificate_der()
            .expect("a generated certificate")
            .to_vec(),
    );
    let client = client_for(&sim, true)
        .root_certificates([cert])
        .build()
        .unwrap();
    let mut stream = client.stream(">").unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();
    let mut seen = Vec::new();
    collect_until(&mut stream, &mut seen, |s| {
        count(s, "transcription.complete") >= 3
    })
    .await;
    shutdown_draining(&client, &mut stream, &mut seen).await;
    assert_eq!(count(&seen, "calls.audio.raw"), 3);

    let site = sim.requests_to(Endpoint::LiveCalls);
    let audio = sim.requests_to(Endpoint::Audio);
    assert!(!site.is_empty() && !audio.is_empty());
    for r in site.iter().chain(&audio) {
        assert_eq!(
            r.version,
            http::Version::HTTP_2,
            "ALPN chose h2 for {}",
            r.path
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_gives_up_makes_the_client_not_live() {
    let sim = sim(Simulator::builder()
        .seed(22)
        .calls_per_second(5.0)
        .faults(FaultPlan::none().always(Endpoint::LiveCalls, Fault::Unavailable(None))))
    .await;
    let client = client_for(&sim, false)
        .live_config(bcfy::proto::LiveProducerConfig {
            poll_interval: Duration::from_millis(50),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            max_retry_attempts: Some(2),
            ..Default::default()
        })
        .build()
        .unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();
    tokio::time::timeout(Duration::from_mins(1), async {
        while client.health().live {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the producer gives up");
    let health = client.health();
    assert!(!health.ready);
    assert_eq!(health.counts.producer_errors, 1);
    let last = health.last_error.expect("the error is kept");
    assert!(last.contains("live producer"), "{last}");
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_client_stops_its_producers() {
    let sim = sim(Simulator::builder().seed(23).calls_per_second(5.0)).await;
    let client = client_for(&sim, false).build().unwrap();
    let producer = client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();
    drop(client);
    // The run ended: its task let go of the producer, so this test holds the last reference.
    // (Not `handle().stopped()`: the stop is consumed when the run it ended returns, which
    // can happen before this task looks.) Nothing signals a dropped task, hence the polling.
    tokio::time::timeout(Duration::from_secs(10), async {
        while Arc::strong_count(&producer) > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the producer's run ended");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_its_timeout_when_a_subscriber_never_reads() {
    let sim = sim(Simulator::builder().seed(24).calls_per_second(50.0)).await;
    let client = client_for(&sim, false)
        .bus_capacity(1)
        .live_config(bcfy::proto::LiveProducerConfig {
            poll_interval: Duration::from_millis(50),
            queue_maxsize: 2,
            ..Default::default()
        })
        .build()
        .unwrap();
    let _never_read = client.stream("calls.live").unwrap();
    client.create_live_producer(talkgroups()).unwrap();
    client.start().await.unwrap();
    tokio::time::timeout(Duration::from_mins(1), async {
        while client.backlog() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pipeline stalls");
    let started = std::time::Instant::now();
    let err = client
        .shutdown(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), bcfy::ErrorKind::ShutdownTimeout);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.health().state, RunState::Stopped);
    sim.shutdown().await;
}
