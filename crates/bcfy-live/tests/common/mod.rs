//! What the producer's test files share: a producer on the scripted mock transport, and
//! live-calls answers.

#![allow(dead_code, unused_imports)]

pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::time::Duration;

pub(crate) use bcfy_auth::{AuthManager, CredentialSource, Credentials};
pub(crate) use bcfy_live::{LiveCallProducer, LiveErrorKind, ProducerStats};
pub(crate) use bcfy_proto::{
    GroupId, LiveCallEnvelope, LiveProducerConfig, SessionToken, Subscription, SystemId,
    TalkgroupId,
};
pub(crate) use bcfy_transport::TransportErrorKind;
pub(crate) use bcfy_transport::mock::{MockResponse, MockTransport, RecordedRequest};
pub(crate) use http::{Method, StatusCode};
pub(crate) use serde_json::{Value, json};
pub(crate) use tokio::sync::mpsc;
pub(crate) use tokio::time::Instant;
pub(crate) use url::Url;

pub(crate) const LIVE: &str = "/calls/apis/live-calls";
pub(crate) const SITE: &str = "https://www.broadcastify.com";
pub(crate) const START: f64 = 1_758_428_000.0;

pub(crate) fn group(s: &str) -> GroupId {
    s.parse().unwrap()
}

pub(crate) fn call(ts: i64, sid: u64, tg: u64, start: i64) -> Value {
    json!({
        "id": format!("{sid}-{tg}"), "ts": ts, "systemId": 2893, "sid": sid, "call_tg": tg,
        "filename": format!("{start}-{tg}"), "hash": "abcd1234", "enc": "m4a",
        "meta_starttime": start, "meta_stoptime": start + 3, "call_duration": 3,
    })
}

pub(crate) fn answer(calls: &[Value]) -> MockResponse {
    let last = calls.iter().filter_map(|c| c["ts"].as_i64()).max();
    let mut body = json!({ "calls": calls, "serverTime": START as i64 + 10_000 });
    if let Some(last) = last {
        body["lastPos"] = json!(last);
    }
    MockResponse::json(body.to_string())
}

pub(crate) fn config() -> LiveProducerConfig {
    let mut c = LiveProducerConfig::default();
    c.initial_position = Some(START);
    c.jitter_ratio = 0.0;
    c.poll_interval = Duration::from_secs(2);
    c
}

pub(crate) struct Rig {
    pub(crate) mock: MockTransport,
    pub(crate) producer: Arc<LiveCallProducer>,
}

pub(crate) fn rig_with(
    config: LiveProducerConfig,
    subscription: Subscription,
    source: CredentialSource,
) -> Rig {
    let mock = MockTransport::new();
    let site = Url::parse(SITE).unwrap();
    let auth = Arc::new(AuthManager::new(mock.shared(), site.clone(), source));
    let producer = LiveCallProducer::new(mock.shared(), auth, site, subscription, config)
        .unwrap()
        .with_rng_seed(7);
    Rig {
        mock,
        producer: Arc::new(producer),
    }
}

pub(crate) fn rig(config: LiveProducerConfig) -> Rig {
    rig_with(
        config,
        Subscription::talkgroups([group("4290-512")]).unwrap(),
        CredentialSource::Token(SessionToken::new("tok-1")),
    )
}

pub(crate) fn spawn(
    producer: &Arc<LiveCallProducer>,
    capacity: usize,
) -> (
    mpsc::Receiver<LiveCallEnvelope>,
    tokio::task::JoinHandle<Result<(), bcfy_live::LiveError>>,
) {
    let (tx, rx) = mpsc::channel(capacity);
    let p = Arc::clone(producer);
    (rx, tokio::spawn(async move { p.run(tx).await }))
}

pub(crate) fn field(req: &RecordedRequest, name: &str) -> String {
    req.form()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Waits (in paused time) until `n` polls were sent.
pub(crate) async fn polls(mock: &MockTransport, n: usize) -> Vec<RecordedRequest> {
    for _ in 0..10_000 {
        let reqs = mock.requests_to(LIVE);
        if reqs.len() >= n {
            return reqs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {} polls", mock.requests_to(LIVE).len());
}

pub(crate) fn login_ok(token: &str) -> MockResponse {
    MockResponse::new(StatusCode::FOUND)
        .header("location", "https://www.broadcastify.com/")
        .header("set-cookie", format!("bcfyuser1={token}; path=/; HttpOnly"))
}
