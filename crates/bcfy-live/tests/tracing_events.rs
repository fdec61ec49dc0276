//! The producer's tracing output: metrics events and secret hygiene. A file of its own: in
//! a test binary whose other tests emit the same events with no subscriber, a callsite first
//! registered on another thread can cache "not interested" while this test's scoped subscriber
//! is being set, and the first event is lost (seen in CI). Here the tests also take turns.

#![allow(clippy::field_reassign_with_default)]

mod common;
use common::*;

/// The tests of this file run one at a time (each sets a thread-scoped subscriber).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Fields = Vec<(String, u64)>;

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, Fields)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct V(Vec<(String, u64)>);
        impl tracing::field::Visit for V {
            fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
                self.0.push((f.name().to_owned(), v));
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut v = V(Vec::new());
        event.record(&mut v);
        self.0
            .lock()
            .unwrap()
            .push((event.metadata().name().to_owned(), v.0));
    }
}

impl Events {
    fn named(&self, name: &str) -> Vec<Fields> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

fn value(fields: &[(String, u64)], name: &str) -> u64 {
    fields.iter().find(|(n, _)| n == name).unwrap().1
}

#[tokio::test(start_paused = true)]
async fn metrics_are_emitted_as_named_tracing_events() {
    let _serial = SERIAL.lock().await;
    use tracing_subscriber::layer::SubscriberExt;
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    let mut c = config();
    c.metrics_interval = Duration::from_secs(10);
    let r = rig(c);
    let t = START as i64;
    r.mock.on(
        Method::POST,
        LIVE,
        answer(&[call(t + 1, 4290, 512, t - 9), call(t + 2, 4290, 512, t - 8)]),
    );
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (_rx, task) = spawn(&r.producer, 8);
    // 25 s: polls every 2 s, queue depth sampled at 10 s and 20 s.
    tokio::time::sleep(Duration::from_secs(25)).await;
    r.producer.stop();
    task.await.unwrap().unwrap();
    let dispatched = events.named("live_producer.dispatched");
    assert!(dispatched.len() >= 10, "one per poll: {}", dispatched.len());
    assert_eq!(value(&dispatched[0], "dispatched"), 2);
    assert_eq!(value(&dispatched[1], "dispatched"), 0);
    let depth = events.named("live_producer.queue_depth");
    assert_eq!(depth.len(), 2);
    // Nobody reads the queue: both calls are still in it.
    assert_eq!(value(&depth[0], "queue_depth"), 2);
    assert_eq!(r.producer.stats().queue_depth, 2);
    assert!(r.producer.stats().last_poll_latency.is_some());
}

#[tokio::test(start_paused = true)]
async fn no_secret_reaches_a_log_line() {
    let _serial = SERIAL.lock().await;
    use tracing_subscriber::layer::SubscriberExt;
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let b = Arc::clone(&buf);
    let writer = move || Writer(Arc::clone(&b));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false),
        ),
    );
    let mut c = config();
    c.max_retry_attempts = Some(2);
    let r = rig_with(
        c,
        Subscription::talkgroups([group("4290-512")]).unwrap(),
        CredentialSource::Both {
            credentials: Credentials::new("user", "hunter2-secret"),
            token: SessionToken::new("old-token-secret"),
        },
    );
    r.mock
        .on(Method::POST, "/login/", login_ok("new-token-secret"));
    r.mock.on(
        Method::POST,
        LIVE,
        MockResponse::new(StatusCode::UNAUTHORIZED),
    );
    r.mock.on(
        Method::POST,
        LIVE,
        MockResponse::new(StatusCode::INTERNAL_SERVER_ERROR)
            .body("Cookie: bcfyuser1=new-token-secret; echo"),
    );
    let (_rx, task) = spawn(&r.producer, 8);
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), LiveErrorKind::RetriesExhausted);
    let logs = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("live poll failed"), "{logs}");
    for secret in ["hunter2-secret", "old-token-secret", "new-token-secret"] {
        assert!(!logs.contains(secret), "{secret} leaked: {logs}");
        assert!(!format!("{err}{err:?}").contains(secret));
    }
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
