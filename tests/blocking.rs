//! The `blocking` adapter from plain threads: build, authenticate, iterate events, shut down.

use std::time::Duration;

use bcfy::proto::Subscription;
use bcfy::{BcfyEvent, Client, Config};
use bcfy_sim::Simulator;
use secrecy::SecretString;

#[test]
fn blocking_client_runs_the_pipeline_without_async_code() {
    // The simulator lives on its own runtime; the blocking client brings its own.
    let sim_rt = tokio::runtime::Runtime::new().unwrap();
    let sim = sim_rt
        .block_on(
            Simulator::builder()
                .seed(21)
                .groups([(4290, 512)])
                .calls_per_second(20.0)
                .total_calls(Some(6))
                .user("b-user", "b-pass")
                .start(),
        )
        .unwrap();

    let mut config = Config::default();
    config.endpoints.site = sim.base_url();
    config.endpoints.calls_cdn = sim.cdn_url();
    config.live.poll_interval = Duration::from_millis(100);
    config.transcription.enabled = true;
    config.transcription.endpoint_url = Some(sim.whisper_url());
    config.transcription.api_key = Some(SecretString::from("sk-b"));
    let client = bcfy::blocking::Client::new(
        Client::builder()
            .config(config)
            .credentials("b-user", SecretString::from("b-pass")),
    )
    .unwrap();

    client.authenticate().unwrap();
    let mut events = client.events("transcription.>").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    client
        .register_consumer("calls.live", move |event| {
            let _ = tx.send(event.payload.call_id().to_string());
        })
        .unwrap();
    client
        .create_live_producer(Subscription::talkgroups(["4290-512".parse().unwrap()]).unwrap())
        .unwrap();
    client.start().unwrap();

    let mut transcripts = Vec::new();
    while transcripts.len() < 6 {
        let event = events
            .next_timeout(Duration::from_secs(30))
            .expect("a transcript within 30 s")
            .expect("the stream is open");
        match event.payload {
            BcfyEvent::Transcript(t) => transcripts.push(t),
            other => panic!("unexpected {:?}", other.topic()),
        }
    }
    drop(events); // an unread iterator would hold the drain until the timeout
    let report = client.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(report.counts.transcripts, 6);

    let live: Vec<String> = rx.try_iter().collect();
    assert_eq!(live.len(), 6, "the synchronous handler saw every call");
    for t in &transcripts {
        assert_eq!(
            t.text.trim(),
            sim.transcript_for(t.call_id.as_str()).unwrap().trim()
        );
    }
    sim_rt.block_on(sim.shutdown());
}
