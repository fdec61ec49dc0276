//! No password, session token or API key in any log line (TRACE, every crate) or `Debug`
//! output while the whole pipeline runs, including a failed login and a rejected API key.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy::proto::Subscription;
use bcfy::{Client, Config};
use bcfy_sim::Simulator;
use futures::StreamExt;
use secrecy::SecretString;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PASSWORD: &str = "pw-Zq8vX1-secret";
const API_KEY: &str = "sk-Zq8vX1-api-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_or_debug() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let sim = Simulator::builder()
        .seed(31)
        .groups([(4290, 512)])
        .calls_per_second(20.0)
        .total_calls(Some(4))
        .user("s-user", PASSWORD)
        .whisper_key("sk-another-key")
        .start()
        .await
        .unwrap();
    let mut config = Config::default();
    config.endpoints.site = sim.base_url();
    config.endpoints.calls_cdn = sim.cdn_url();
    config.live.poll_interval = Duration::from_millis(100);
    config.transcription.enabled = true;
    config.transcription.endpoint_url = Some(sim.whisper_url());
    config.transcription.api_key = Some(SecretString::from(API_KEY));

    // A failed login first.
    let bad = Client::builder()
        .config(config.clone())
        .credentials("s-user", SecretString::from(format!("{PASSWORD}-wrong")))
        .build()
        .unwrap();
    let err = bad.authenticate().await.unwrap_err();
    let mut outputs = vec![format!("{err}"), format!("{err:?}"), format!("{bad:?}")];

    let client = Client::builder()
        .config(config)
        .credentials("s-user", SecretString::from(PASSWORD))
        .build()
        .unwrap();
    let mut stream = client.stream(">").unwrap();
    client
        .create_live_producer(Subscription::talkgroups(["4290-512".parse().unwrap()]).unwrap())
        .unwrap();
    client.start().await.unwrap();
    let token = client
        .auth()
        .current()
        .expect("a session")
        .expose_secret()
        .to_owned();
    let mut failed = 0;
    while failed < 4 {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap();
        if event.topic() == "transcription.failed" {
            failed += 1;
        }
        outputs.push(format!("{:?}", event.payload));
        outputs.push(event.payload.to_json_line());
    }
    outputs.push(format!("{client:?}"));
    outputs.push(format!("{:?}", client.health()));
    let drain = async { while stream.next().await.is_some() {} };
    let (report, ()) = tokio::join!(client.shutdown(Duration::from_secs(10)), drain);
    report.unwrap();
    sim.shutdown().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.len() > 1000, "TRACE logging captured something");
    outputs.push(logs);
    let all = outputs.join("\n");
    for secret in [PASSWORD, API_KEY, token.as_str()] {
        assert!(!all.contains(secret), "a secret leaked: {secret}");
    }
}
