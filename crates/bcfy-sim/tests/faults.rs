//! Every fault of a `FaultPlan`, over real sockets.

mod common;

use std::time::{Duration, Instant, SystemTime};

use bcfy_sim::{Endpoint, Fault, FaultPlan, RetryAfter, SimHandle, Simulator};
use common::{Http, audio_url, call_id, login, poll, transcribe};
use http::StatusCode;

const START: i64 = 1_758_430_000;
const G: &[&str] = &["4290-512", "4290-1536"];

async fn sim_with(plan: FaultPlan) -> SimHandle {
    Simulator::builder()
        .seed(11)
        .manual_clock(START)
        .calls_per_second(0.0)
        .late_ingest_probability(0.0)
        .whisper_key("sk-sim")
        .faults(plan)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn scripted_429_with_retry_after_seconds_on_the_third_poll() {
    let sim =
        sim_with(FaultPlan::none().nth(Endpoint::LiveCalls, 3, Fault::too_many_requests_secs(2)))
            .await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(3);
    let statuses: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            let r = poll(&http, &sim, &token, G, "0", false).await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(r.header("retry-after"), Some("2"));
            }
            v.push(r.status);
        }
        v
    };
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::OK
        ]
    );
    let rec = sim.requests_to(Endpoint::LiveCalls);
    assert_eq!(rec[2].status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn retry_after_as_http_date_and_503() {
    let plan = FaultPlan::none()
        .nth(
            Endpoint::LiveCalls,
            1,
            Fault::too_many_requests_date(Duration::from_secs(30)),
        )
        .nth(
            Endpoint::LiveCalls,
            2,
            Fault::Unavailable(Some(RetryAfter::Seconds(7))),
        )
        .nth(Endpoint::LiveCalls, 3, Fault::Unavailable(None))
        .nth(
            Endpoint::Transcription,
            1,
            Fault::Unavailable(Some(RetryAfter::Seconds(1))),
        );
    let sim = sim_with(plan).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    let r = poll(&http, &sim, &token, G, "0", false).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let when = httpdate::parse_http_date(r.header("retry-after").unwrap()).unwrap();
    let ahead = when.duration_since(SystemTime::now()).unwrap();
    assert!(
        ahead > Duration::from_secs(25) && ahead <= Duration::from_secs(31),
        "{ahead:?}"
    );
    let r = poll(&http, &sim, &token, G, "0", false).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("retry-after"), Some("7"));
    let r = poll(&http, &sim, &token, G, "0", false).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_none());
    // Whisper answers OpenAI-style error JSON.
    let id = sim.ingest(1).remove(0);
    let r = transcribe(&http, &sim, "sk-sim", &sim.call_audio(&id).unwrap(), "json").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"]["code"], "service_unavailable");
    let r = transcribe(&http, &sim, "sk-sim", &sim.call_audio(&id).unwrap(), "json").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn reset_mid_body_breaks_the_body_and_serves_nothing() {
    let sim = sim_with(FaultPlan::none().nth(Endpoint::LiveCalls, 1, Fault::ResetMidBody)).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(20);
    let r = poll(&http, &sim, &token, G, "0", false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_err(), "body must break off");
    assert!(sim.served_calls().is_empty());
    let r = poll(&http, &sim, &token, G, "0", false).await;
    assert_eq!(r.json()["calls"].as_array().unwrap().len(), 20);
    assert_eq!(sim.served_calls().len(), 20);
}

#[tokio::test]
async fn slow_headers_and_slow_body_delay_the_answer() {
    let plan = FaultPlan::none()
        .nth(
            Endpoint::LiveCalls,
            1,
            Fault::SlowHeaders(Duration::from_millis(300)),
        )
        .nth(
            Endpoint::LiveCalls,
            2,
            Fault::SlowBody(Duration::from_millis(50)),
        );
    let sim = sim_with(plan).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(10);
    let t = Instant::now();
    let r = poll(&http, &sim, &token, G, "0", false).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.json()["calls"].as_array().unwrap().len(), 10);
    let t = Instant::now();
    let r = poll(&http, &sim, &token, G, "0", false).await;
    // 8 pieces, 7 pauses of 50 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.json()["calls"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn malformed_json_is_unparsable_and_not_counted_as_served() {
    let plan = FaultPlan::none()
        .nth(Endpoint::LiveCalls, 1, Fault::MalformedJson)
        .nth(Endpoint::Archive, 1, Fault::MalformedJson);
    let sim = sim_with(plan).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(4);
    let r = poll(&http, &sim, &token, G, "0", false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(serde_json::from_slice::<serde_json::Value>(r.bytes()).is_err());
    assert!(r.bytes().starts_with(b"{\"calls\":["));
    assert!(sim.served_calls().is_empty());
    let block = START - START.rem_euclid(1800);
    let u = common::url(
        &sim.base_url(),
        &format!("/calls/apis/archivecall.php?group=4290-512&s={block}"),
    );
    let r = http
        .get(&u, &[("cookie", &format!("bcfyuser1={token}"))])
        .await;
    assert!(serde_json::from_slice::<serde_json::Value>(r.bytes()).is_err());
}

#[tokio::test]
async fn hostile_entries_are_appended_to_calls() {
    let sim = sim_with(FaultPlan::none().always(Endpoint::LiveCalls, Fault::HostileEntries)).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    let ids = sim.ingest(2);
    let r = poll(&http, &sim, &token, G, "0", false).await;
    let text = String::from_utf8(r.bytes().to_vec()).unwrap();
    for needle in [
        "../../etc/passwd",
        "2893@evil.example",
        "m4a?x=1",
        "\"a/b\"",
        "1e309",
        "\"not an object\"",
        "null",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    // The genuine calls come first and lastPos only counts them.
    let last_ts = sim.ingested_calls().last().unwrap().ts;
    assert!(
        text.ends_with(&format!("\"lastPos\":{last_ts}}}")),
        "{text}"
    );
    assert_eq!(
        sim.served_calls()
            .iter()
            .map(|c| c.call_id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    // Empty poll + hostile: still a well-formed array.
    let r = poll(&http, &sim, &token, G, &(last_ts + 1).to_string(), false).await;
    assert!(r.bytes().starts_with(b"{\"calls\":[{\"id\": \"4290-512\""));
}

#[tokio::test]
async fn truncated_audio_is_shorter_than_content_length() {
    let sim = sim_with(FaultPlan::none().nth(Endpoint::Audio, 1, Fault::TruncatedBody)).await;
    sim.ingest(1);
    let c = &sim.ingested_calls()[0];
    let http = Http::new();
    let r = http.get(&audio_url(&sim, &c.payload), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length").unwrap(), c.audio_len.to_string());
    assert!(r.body.is_err(), "client must see the short body");
    let r = http.get(&audio_url(&sim, &c.payload), &[]).await;
    assert_eq!(r.bytes().len() as u64, c.audio_len);
}

#[tokio::test]
async fn duplicate_calls_reappear_in_a_later_poll() {
    let sim = sim_with(FaultPlan::none().nth(Endpoint::LiveCalls, 2, Fault::DuplicateCalls)).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    let first = sim.ingest(5);
    let r = poll(&http, &sim, &token, G, "0", true).await;
    let last = r.json()["lastPos"].as_i64().unwrap();
    sim.advance(Duration::from_secs(5));
    let second = sim.ingest(2);
    let r = poll(&http, &sim, &token, G, &(last + 1).to_string(), false).await;
    let got: Vec<String> = r.json()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(call_id)
        .collect();
    assert_eq!(got.len(), 5);
    assert_eq!(got[..3], first[2..]);
    assert_eq!(got[3..], second[..]);
    // Served once each, however often they were sent.
    assert_eq!(sim.served_calls().len(), 7);
}

#[tokio::test]
async fn last_pos_goes_backwards() {
    let sim =
        sim_with(FaultPlan::none().nth(Endpoint::LiveCalls, 2, Fault::LastPosBackwards)).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(3);
    let r = poll(&http, &sim, &token, G, "0", true).await;
    let last = r.json()["lastPos"].as_i64().unwrap();
    let r = poll(&http, &sim, &token, G, &(last + 1).to_string(), false).await;
    let back = r.json()["lastPos"].as_i64().unwrap();
    assert!(back < last, "{back} < {last}");
    assert_eq!(back, last + 1 - 60);
}

#[tokio::test]
async fn sessions_expire_after_k_requests() {
    let sim = sim_with(FaultPlan::none().session_expiry_after(2)).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    assert!(poll(&http, &sim, &token, G, "0", true).await.json()["calls"].is_array());
    assert!(poll(&http, &sim, &token, G, "0", false).await.json()["calls"].is_array());
    let j = poll(&http, &sim, &token, G, "0", false).await.json();
    assert_eq!(j["error"], bcfy_sim::LIVE_LOGGED_OUT);
    // Dead for good, and a new login gets a fresh budget.
    assert!(poll(&http, &sim, &token, G, "0", false).await.json()["error"].is_string());
    let token = login(&http, &sim).await;
    assert!(poll(&http, &sim, &token, G, "0", false).await.json()["calls"].is_array());
    sim.expire_sessions();
    assert!(poll(&http, &sim, &token, G, "0", false).await.json()["error"].is_string());
}

#[tokio::test]
async fn same_transmission_uploaded_by_two_nodes() {
    let sim = sim_with(FaultPlan::none().dual_upload(1.0)).await;
    let ids = sim.ingest(3);
    assert_eq!(ids.len(), 6);
    let calls = sim.ingested_calls();
    for pair in calls.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(b.dual_of.as_deref(), Some(a.call_id.as_str()));
        assert_ne!(a.node, b.node);
        assert_ne!(a.call_id, b.call_id);
        assert_ne!(a.hash, b.hash);
        assert_eq!(
            (a.sid, a.talkgroup, a.start_time, a.ts),
            (b.sid, b.talkgroup, b.start_time, b.ts)
        );
        assert_eq!(a.transcript, b.transcript);
        assert_ne!(a.audio_sha256, b.audio_sha256);
        assert!(a.payload.get("metadata").is_some() || b.payload.get("metadata").is_none());
    }
}

#[tokio::test]
async fn late_ingest_reuses_the_last_served_second() {
    let sim = Simulator::builder()
        .manual_clock(START)
        .calls_per_second(0.0)
        .late_ingest_probability(1.0)
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(1);
    let r = poll(&http, &sim, &token, G, "0", true).await;
    let last = r.json()["lastPos"].as_i64().unwrap();
    sim.advance(Duration::from_secs(4));
    let late = sim.ingest(1).remove(0);
    let c = sim
        .ingested_calls()
        .into_iter()
        .find(|c| c.call_id == late)
        .unwrap();
    assert!(c.late);
    assert_eq!(c.ts, last);
    // `lastPos + 1` misses it; overlapping by a second gets it.
    let r = poll(&http, &sim, &token, G, &(last + 1).to_string(), false).await;
    assert!(r.json()["calls"].as_array().unwrap().is_empty());
    let r = poll(&http, &sim, &token, G, &last.to_string(), false).await;
    let got: Vec<String> = r.json()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(call_id)
        .collect();
    assert!(got.contains(&late));
}

#[tokio::test]
async fn probabilistic_faults_follow_the_seed() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let sim = Simulator::builder()
            .seed(seed)
            .manual_clock(START)
            .calls_per_second(0.0)
            .faults(FaultPlan::none().random(Endpoint::LiveCalls, 0.5, Fault::Unavailable(None)))
            .start()
            .await
            .unwrap();
        let http = Http::new();
        let token = login(&http, &sim).await;
        let mut v = Vec::new();
        for _ in 0..24 {
            v.push(
                poll(&http, &sim, &token, G, "0", false)
                    .await
                    .status
                    .as_u16(),
            );
        }
        v
    }
    let a = pattern(5).await;
    assert_eq!(a, pattern(5).await);
    assert!(a.contains(&200) && a.contains(&503), "{a:?}");
    assert_ne!(a, pattern(6).await);
}

#[tokio::test]
async fn fault_plan_parses_from_the_cli_syntax() {
    let plan: FaultPlan = "live:429=2@3,audio:truncate~0.25,session-expiry=4"
        .parse()
        .unwrap();
    let sim = sim_with(plan).await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    let s: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                poll(&http, &sim, &token, G, "0", false)
                    .await
                    .status
                    .as_u16(),
            );
        }
        v
    };
    assert_eq!(s, [200, 200, 429]);
}

#[tokio::test]
async fn status_faults_apply_to_every_endpoint() {
    let mut plan = FaultPlan::none();
    for ep in [
        Endpoint::Login,
        Endpoint::Logout,
        Endpoint::Archive,
        Endpoint::Audio,
    ] {
        plan = plan.nth(ep, 1, Fault::too_many_requests_secs(1));
    }
    let sim = sim_with(plan).await;
    let http = Http::new();
    let base = sim.base_url();
    let login_form = common::form(&[
        ("username", "demo"),
        ("password", "demo-password"),
        ("action", "auth"),
        ("redirect", "x"),
    ]);
    let r = http
        .post_form(&common::url(&base, "/login/"), login_form, &[])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let token = login(&http, &sim).await;
    let cookie = format!("bcfyuser1={token}");
    let block = START - START.rem_euclid(1800);
    let archive = common::url(
        &base,
        &format!("/calls/apis/archivecall.php?group=4290-512&s={block}"),
    );
    assert_eq!(
        http.get(&archive, &[("cookie", &cookie)]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        http.get(&archive, &[("cookie", &cookie)]).await.status,
        StatusCode::OK
    );
    sim.ingest(1);
    let c = &sim.ingested_calls()[0];
    assert_eq!(
        http.get(&audio_url(&sim, &c.payload), &[]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        http.get(&audio_url(&sim, &c.payload), &[]).await.status,
        StatusCode::OK
    );
    let logout = common::url(&base, "/account/?action=logout");
    assert_eq!(
        http.get(&logout, &[("cookie", &cookie)]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The faulted logout did not log out.
    assert!(poll(&http, &sim, &token, G, "0", false).await.json()["calls"].is_array());
    assert_eq!(
        http.get(&logout, &[("cookie", &cookie)]).await.status,
        StatusCode::FOUND
    );
    assert!(poll(&http, &sim, &token, G, "0", false).await.json()["error"].is_string());
}

#[tokio::test]
async fn a_client_that_gives_up_during_slow_headers_was_not_served() {
    let sim = sim_with(FaultPlan::none().nth(
        Endpoint::LiveCalls,
        1,
        Fault::SlowHeaders(Duration::from_millis(400)),
    ))
    .await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(3);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        poll(&http, &sim, &token, G, "0", false),
    )
    .await;
    assert!(gave_up.is_err());
    // A negative: give the server well past its 400 ms to (not) serve; nothing to await.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sim.served_count(), 0);
    let r = poll(&http, &sim, &token, G, "0", false).await;
    assert_eq!(r.json()["calls"].as_array().unwrap().len(), 3);
    assert_eq!(sim.served_count(), 3);
}
