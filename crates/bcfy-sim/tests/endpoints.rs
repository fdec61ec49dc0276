//! Every endpoint of the simulator, over real sockets on 127.0.0.1.

mod common;

use std::time::Duration;

use bcfy_sim::{Endpoint, SimHandle, Simulator};
use common::{Http, audio_url, call_id, form, login, poll, transcribe, url};
use http::{StatusCode, Version};
use serde_json::Value;

const START: i64 = 1_758_430_000;

/// Keys and JSON types of a call in `fixtures/real/live-calls.json` (metadata aside).
const FIXTURE_KEYS: &[(&str, &str)] = &[
    ("descr", "str"),
    ("call_tg", "int"),
    ("call_duration", "int"),
    ("call-ttl", "int"),
    ("call_timediff", "float"),
    ("id", "str"),
    ("siteId", "int"),
    ("systemId", "int"),
    ("display", "str"),
    ("call_type", "int"),
    ("tgId", "int"),
    ("tgCid", "int"),
    ("sid", "int"),
    ("filename", "str"),
    ("meta_starttime", "int"),
    ("call_freq", "float"),
    ("hash", "str"),
    ("meta_stoptime", "int"),
    ("grouping", "str"),
    ("enc", "str"),
    ("call_src_key", "str"),
    ("tag", "int"),
    ("call_src", "int"),
    ("ts", "int"),
];

/// Keys and types of the fixture's trunk-recorder `metadata`.
const METADATA_KEYS: &[(&str, &str)] = &[
    ("freqList", "array"),
    ("stop_time", "int"),
    ("call_length", "int"),
    ("freq", "int"),
    ("emergency", "int"),
    ("duplex", "int"),
    ("mode", "int"),
    ("talkgroup_tag", "str"),
    ("talkgroup_group", "str"),
    ("freq_error", "int"),
    ("noise", "int"),
    ("audio_type", "str"),
    ("signal", "int"),
    ("source_num", "int"),
    ("tdma_slot", "int"),
    ("priority", "int"),
    ("talkgroup_description", "str"),
    ("srcList", "array"),
    ("recorder_num", "int"),
    ("start_time", "int"),
    ("encrypted", "int"),
    ("talkgroup_group_tag", "str"),
    ("short_name", "str"),
    ("phase2_tdma", "int"),
    ("talkgroup", "int"),
];
/// The fixture's first `freqList` and `srcList` entries.
const FREQ_KEYS: &[(&str, &str)] = &[
    ("freq", "int"),
    ("spike_count", "int"),
    ("time", "int"),
    ("len", "float"),
    ("error_count", "int"),
    ("pos", "int"),
];
const SRC_KEYS: &[(&str, &str)] = &[
    ("emergency", "int"),
    ("signal_system", "null"),
    ("time", "int"),
    ("tag", "null"),
    ("src", "int"),
    ("pos", "int"),
];

fn assert_types(obj: &Value, want: &[(&str, &str)]) {
    let obj = obj.as_object().unwrap();
    assert_eq!(obj.len(), want.len(), "keys of {obj:?}");
    for (k, t) in want {
        assert_eq!(json_type(&obj[*k]), *t, "type of {k}");
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Asserts a live call has exactly the fixture's keys and types, and the identity rules.
fn assert_fixture_shape(c: &Value) {
    let obj = c.as_object().unwrap();
    for (k, t) in FIXTURE_KEYS {
        let v = obj.get(*k).unwrap_or_else(|| panic!("missing {k} in {c}"));
        assert_eq!(json_type(v), *t, "type of {k} in {c}");
    }
    let extra: Vec<&String> = obj
        .keys()
        .filter(|k| k.as_str() != "metadata" && !FIXTURE_KEYS.iter().any(|(f, _)| f == k))
        .collect();
    assert!(extra.is_empty(), "unexpected keys {extra:?}");
    if let Some(m) = obj.get("metadata") {
        assert_types(m, METADATA_KEYS);
        assert_types(&m["freqList"][0], FREQ_KEYS);
        assert_types(&m["srcList"][0], SRC_KEYS);
        assert_eq!(m["talkgroup"], c["call_tg"]);
        assert_eq!(m["start_time"], c["meta_starttime"]);
    }
    let ts = c["ts"].as_i64().unwrap();
    let start = c["meta_starttime"].as_i64().unwrap();
    let stop = c["meta_stoptime"].as_i64().unwrap();
    assert_eq!(c["id"], format!("{}-{}", c["sid"], c["call_tg"]));
    assert_eq!(c["filename"], format!("{start}-{}", c["call_tg"]));
    assert_eq!(c["call-ttl"].as_i64().unwrap(), ts + 365 * 86_400);
    assert!((5..=6).contains(&(ts - stop)), "ts - stop = {}", ts - stop);
    assert_eq!(c["call_duration"].as_i64().unwrap(), stop - start);
    let decimals = |v: &Value| v.to_string().split_once('.').map_or(0, |(_, f)| f.len());
    assert!(decimals(&c["call_freq"]) <= 4, "{}", c["call_freq"]);
    let hz = (c["call_freq"].as_f64().unwrap() * 1e6).round() as u64;
    assert_eq!(hz % 12_500, 0, "channel step of {}", c["call_freq"]);
    if let Some(m) = c.get("metadata") {
        assert_eq!(m["freq"].as_u64().unwrap(), hz);
    }
    assert!(decimals(&c["call_timediff"]) <= 3, "{}", c["call_timediff"]);
    let diff = c["call_timediff"].as_f64().unwrap();
    assert!((diff - (ts - stop) as f64).abs() < 0.5);
    let hash = c["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 8);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_ne!(c["systemId"], c["sid"]);
}

async fn manual_sim() -> SimHandle {
    Simulator::builder()
        .seed(7)
        .groups([(4290, 512), (4290, 1536), (7001, 100)])
        .calls_per_second(0.0)
        .manual_clock(START)
        .late_ingest_probability(0.0)
        .whisper_key("sk-sim")
        .playlist("3c0a5f9e-1111-4222-8333-944445555666", [(4290, 1536)])
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_success_sets_bcfyuser1_and_redirects() {
    let sim = manual_sim().await;
    let http = Http::new();
    let r = http
        .post_form(
            &url(&sim.base_url(), "/login/"),
            form(&[
                ("username", "demo"),
                ("password", "demo-password"),
                ("action", "auth"),
                ("redirect", "https://www.broadcastify.com"),
            ]),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), Some("https://www.broadcastify.com"));
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(cookies.len() >= 2, "{cookies:?}");
    let bcfy: Vec<&&str> = cookies
        .iter()
        .filter(|c| c.starts_with("bcfyuser1="))
        .collect();
    assert_eq!(bcfy.len(), 1);
    assert!(
        bcfy[0].ends_with("; path=/; domain=127.0.0.1; secure; HttpOnly"),
        "{}",
        bcfy[0]
    );
    let rec = &sim.requests_to(Endpoint::Login)[0];
    assert_eq!(rec.form_value("username"), Some("demo"));
    assert!(
        !format!("{rec:?}").contains("demo-password"),
        "Debug leaks the password"
    );
}

#[tokio::test]
async fn login_failure_redirects_with_failed_1_and_no_cookie() {
    let sim = manual_sim().await;
    let http = Http::new();
    for (u, p) in [("demo", "wrong"), ("nobody", "demo-password")] {
        let r = http
            .post_form(
                &url(&sim.base_url(), "/login/"),
                form(&[
                    ("username", u),
                    ("password", p),
                    ("action", "auth"),
                    ("redirect", "x"),
                ]),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(
            r.header("location").unwrap(),
            format!("{}login/?failed=1", sim.base_url())
        );
        assert!(
            !r.headers
                .get_all("set-cookie")
                .iter()
                .any(|v| v.to_str().unwrap().starts_with("bcfyuser1="))
        );
    }
}

#[tokio::test]
async fn live_calls_requires_a_valid_cookie() {
    let sim = manual_sim().await;
    sim.ingest(3);
    let http = Http::new();
    for token in ["", "not-a-token"] {
        let r = poll(&http, &sim, token, &["4290-512"], "0", true).await;
        assert_eq!(r.status, StatusCode::OK);
        let j = r.json();
        assert_eq!(j["error"], bcfy_sim::LIVE_LOGGED_OUT);
        assert_eq!(j["serverTime"], START);
        assert!(j.get("calls").is_none());
    }
    assert!(sim.served_calls().is_empty());
}

#[tokio::test]
async fn live_calls_serves_fixture_shaped_calls_with_ts_ge_pos() {
    let sim = manual_sim().await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    let ids = sim.ingest(6);
    sim.advance(Duration::from_secs(3));
    let ids2 = sim.ingest(6);
    let groups = ["4290-512", "4290-1536", "7001-100"];
    let r = poll(
        &http,
        &sim,
        &token,
        &groups,
        &(START - 300).to_string(),
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    let calls = j["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 12);
    let got: Vec<String> = calls.iter().map(call_id).collect();
    let want: Vec<String> = ids.iter().chain(&ids2).cloned().collect();
    assert_eq!(got, want);
    for c in calls {
        assert_fixture_shape(c);
    }
    // Several calls share a second.
    assert_eq!(calls[0]["ts"], calls[5]["ts"]);
    assert_eq!(j["serverTime"], START + 3);
    assert_eq!(j["lastPos"], START + 3);
    assert_eq!(json_type(&j["lastPos"]), "int");
    // Some calls carry metadata, some do not.
    assert!(calls.iter().any(|c| c.get("metadata").is_some()));
    assert!(calls.iter().any(|c| c.get("metadata").is_none()));

    // ts >= pos: asking from the last second again returns that second's calls.
    let r = poll(
        &http,
        &sim,
        &token,
        &groups,
        &(START + 3).to_string(),
        false,
    )
    .await;
    assert_eq!(r.json()["calls"].as_array().unwrap().len(), 6);
    // Nothing new: lastPos = ceil(pos) - 1.
    let r = poll(
        &http,
        &sim,
        &token,
        &groups,
        &(START + 4).to_string(),
        false,
    )
    .await;
    let j = r.json();
    assert_eq!(j["calls"].as_array().unwrap().len(), 0);
    assert_eq!(j["lastPos"], START + 3);

    let served = sim.served_calls();
    assert_eq!(
        served.iter().map(|s| s.call_id.clone()).collect::<Vec<_>>(),
        want
    );
    let first = &served[0];
    assert_eq!(first.payload, calls[0]);
    assert_eq!(
        sim.call_audio(&first.call_id).unwrap().len() as u64,
        first.audio_len
    );
    let rec = sim.requests_to(Endpoint::LiveCalls);
    assert_eq!(rec.len(), 3);
    assert_eq!(rec[0].form_values("groups[]"), groups);
    assert_eq!(rec[0].cookie.as_deref(), Some(token.as_str()));
    assert_eq!(rec[0].version, Version::HTTP_11);
    assert_eq!(rec[0].header("x-requested-with"), Some("XMLHttpRequest"));
}

#[tokio::test]
async fn live_calls_filters_by_groups_playlist_sid_and_node() {
    let sim = manual_sim().await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(60);
    let all = sim.ingested_calls();
    let count =
        |pred: &dyn Fn(&bcfy_sim::ServedCall) -> bool| all.iter().filter(|c| pred(c)).count();
    let cookie = format!("bcfyuser1={token}");
    let live = |pairs: Vec<(&'static str, String)>| {
        let http = http.clone();
        let cookie = cookie.clone();
        let u = url(&sim.base_url(), "/calls/apis/live-calls");
        async move {
            let mut p: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            p.push(("pos", "0"));
            p.push(("doInit", "0"));
            http.post_form(&u, form(&p), &[("cookie", &cookie)])
                .await
                .json()
        }
    };
    let n = |j: Value| j["calls"].as_array().unwrap().len();
    assert_eq!(
        n(live(vec![("groups[]", "4290-512".into())]).await),
        count(&|c| c.group == "4290-512")
    );
    assert_eq!(
        n(live(vec![
            ("groups[]", "4290-512".into()),
            ("groups[]", "7001-100".into())
        ])
        .await),
        count(&|c| c.group != "4290-1536")
    );
    assert_eq!(
        n(live(vec![(
            "playlist_uuid",
            "3c0a5f9e-1111-4222-8333-944445555666".into()
        )])
        .await),
        count(&|c| c.group == "4290-1536")
    );
    assert_eq!(
        n(live(vec![("sid", "4290".into()), ("systemId", "0".into())]).await),
        count(&|c| c.sid == 4290)
    );
    let node = all.iter().find(|c| c.sid == 7001).unwrap().node;
    assert_eq!(
        n(live(vec![("sid", "0".into()), ("systemId", node.to_string())]).await),
        count(&|c| c.node == node)
    );
    let unknown = live(vec![("playlist_uuid", "nope".into())]).await;
    assert!(unknown["error"].is_string());
    for c in &all {
        assert!(count(&|_| true) == 60 && c.node != c.sid);
    }
}

#[tokio::test]
async fn do_init_honours_the_history_limit() {
    let sim = Simulator::builder()
        .manual_clock(START)
        .calls_per_second(0.0)
        .init_history_limit(Some(4))
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let token = login(&http, &sim).await;
    let ids = sim.ingest(10);
    let r = poll(&http, &sim, &token, &["4290-512", "4290-1536"], "0", true).await;
    let got: Vec<String> = r.json()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(call_id)
        .collect();
    assert_eq!(got, ids[6..]);
    let r = poll(&http, &sim, &token, &["4290-512", "4290-1536"], "0", false).await;
    assert_eq!(r.json()["calls"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn logout_invalidates_the_token() {
    let sim = manual_sim().await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    let r = poll(&http, &sim, &token, &["4290-512"], "0", true).await;
    assert!(r.json()["calls"].is_array());
    let cookie = format!("bcfyuser1={token}");
    let r = http
        .get(
            &url(&sim.base_url(), "/account/?action=logout"),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let r = poll(&http, &sim, &token, &["4290-512"], "0", false).await;
    assert_eq!(r.json()["error"], bcfy_sim::LIVE_LOGGED_OUT);
    // A new login works again.
    let token2 = login(&http, &sim).await;
    assert_ne!(token, token2);
    assert!(
        poll(&http, &sim, &token2, &["4290-512"], "0", false)
            .await
            .json()["calls"]
            .is_array()
    );
}

#[tokio::test]
async fn archive_serves_blocks_with_etag_and_304() {
    let block = START - START.rem_euclid(1800);
    let sim = Simulator::builder()
        .seed(3)
        .manual_clock(block + 10)
        .calls_per_second(0.0)
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let token = login(&http, &sim).await;
    let cookie = format!("bcfyuser1={token}");
    let ids = sim.ingest(8);
    let u = url(
        &sim.base_url(),
        &format!("/calls/apis/archivecall.php?group=4290-512&s={block}"),
    );
    let r = http.get(&u, &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["start"], block - 1);
    assert_eq!(j["end"], block + 1800);
    assert_eq!(j["serverTime"], block + 10);
    let calls = j["calls"].as_array().unwrap();
    let want: Vec<String> = sim
        .ingested_calls()
        .into_iter()
        .filter(|c| c.group == "4290-512")
        .map(|c| c.call_id)
        .collect();
    assert!(!want.is_empty() && want.len() < ids.len());
    assert_eq!(calls.iter().map(call_id).collect::<Vec<_>>(), want);
    for c in calls {
        assert_eq!(c["score"], c["ts"]);
        let mut c = c.clone();
        c.as_object_mut().unwrap().remove("score");
        assert_fixture_shape(&c);
    }
    let etag = r.header("etag").unwrap().to_owned();
    let lm = r.header("last-modified").unwrap().to_owned();
    let r = http
        .get(&u, &[("cookie", &cookie), ("if-none-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.bytes().is_empty());
    let r = http
        .get(&u, &[("cookie", &cookie), ("if-modified-since", &lm)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // New calls in the block change the ETag.
    sim.ingest(8);
    let r = http
        .get(&u, &[("cookie", &cookie), ("if-none-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.header("etag").unwrap(), etag);
    // Other blocks are empty.
    let u2 = url(
        &sim.base_url(),
        &format!(
            "/calls/apis/archivecall.php?group=4290-512&s={}",
            block - 1800
        ),
    );
    assert_eq!(
        http.get(&u2, &[("cookie", &cookie)]).await.json()["calls"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Unaligned s and missing cookie are rejected.
    let bad = url(
        &sim.base_url(),
        &format!("/calls/apis/archivecall.php?group=4290-512&s={}", block + 1),
    );
    let r = http.get(&bad, &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("30-minute"));
    let r = http.get(&u, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], bcfy_sim::ARCHIVE_LOGGED_OUT);
}

#[tokio::test]
async fn cdn_serves_each_calls_m4a() {
    let sim = Simulator::builder()
        .manual_clock(START)
        .calls_per_second(0.0)
        .hashless_probability(0.5)
        .start()
        .await
        .unwrap();
    sim.ingest(10);
    let http = Http::new();
    let calls = sim.ingested_calls();
    assert!(calls.iter().any(|c| c.hash.is_none()) && calls.iter().any(|c| c.hash.is_some()));
    let mut sizes = std::collections::HashSet::new();
    for c in &calls {
        let r = http.get(&audio_url(&sim, &c.payload), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", c.call_id);
        let body = r.bytes();
        assert_eq!(&body[4..8], b"ftyp");
        assert_eq!(body, &sim.call_audio(&c.call_id).unwrap());
        assert_eq!(r.header("content-length").unwrap(), body.len().to_string());
        assert_eq!(r.header("content-type"), Some("audio/mp4"));
        assert_eq!(hex_sha(body), c.audio_sha256);
        sizes.insert(body.len());
    }
    assert!(sizes.len() > 5, "sizes differ per call");
    let r = http
        .get(&url(&sim.cdn_url(), "/abcdefgh/2893/1-512.m4a"), &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The site does not serve audio.
    let r = http
        .get(
            &audio_url(&sim, &calls[0].payload)
                .replace(sim.cdn_url().as_str(), sim.base_url().as_str()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let sim = Simulator::builder()
        .manual_clock(START)
        .calls_per_second(0.0)
        .audio_content_type(None)
        .start()
        .await
        .unwrap();
    sim.ingest(1);
    let c = &sim.ingested_calls()[0];
    let r = http.get(&audio_url(&sim, &c.payload), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").is_none());
}

fn hex_sha(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

#[tokio::test]
async fn audio_throttle_limits_bytes_per_second() {
    let sim = Simulator::builder()
        .manual_clock(START)
        .calls_per_second(0.0)
        .audio_throttle(Some(100_000))
        .start()
        .await
        .unwrap();
    sim.ingest(1);
    let c = &sim.ingested_calls()[0];
    let http = Http::new();
    let t = std::time::Instant::now();
    let r = http.get(&audio_url(&sim, &c.payload), &[]).await;
    let took = t.elapsed();
    assert_eq!(r.bytes().len() as u64, c.audio_len);
    // ~15-17 KB at 100 KB/s: at least 0.1 s (a lower bound only; never assert speed).
    assert!(took >= Duration::from_millis(100), "{took:?}");
}

#[tokio::test]
async fn whisper_transcribes_served_audio() {
    let sim = manual_sim().await;
    let ids = sim.ingest(2);
    let http = Http::new();
    let audio = sim.call_audio(&ids[0]).unwrap();
    let want = sim.transcript_for(&ids[0]).unwrap();
    assert!(!want.is_empty());

    let r = transcribe(&http, &sim, "sk-sim", &audio, "json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!({ "text": want }));

    let r = transcribe(&http, &sim, "sk-sim", &audio, "text").await;
    assert_eq!(std::str::from_utf8(r.bytes()).unwrap(), format!("{want}\n"));

    let r = transcribe(&http, &sim, "sk-sim", &audio, "verbose_json").await;
    let j = r.json();
    assert_eq!(j["text"], want);
    assert_eq!(j["language"], "english");
    assert!(j["duration"].as_f64().unwrap() > 0.0);
    let segs = j["segments"].as_array().unwrap();
    assert!(!segs.is_empty());
    assert!(
        segs.iter()
            .all(|s| s["avg_logprob"].as_f64().unwrap() < 0.0)
    );
    let joined: String = segs.iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert_eq!(joined.trim(), want);

    // Another call, another transcript.
    let other = sim.call_audio(&ids[1]).unwrap();
    let r = transcribe(&http, &sim, "sk-sim", &other, "json").await;
    assert_eq!(r.json()["text"], sim.transcript_for(&ids[1]).unwrap());

    let r = transcribe(&http, &sim, "sk-wrong", &audio, "json").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert!(!String::from_utf8_lossy(r.bytes()).contains("sk-"));

    let mut tampered = audio.to_vec();
    tampered[100] ^= 1;
    let r = transcribe(&http, &sim, "sk-sim", &tampered, "json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].is_string());

    let rec = sim.requests_to(Endpoint::Transcription);
    assert_eq!(rec[0].form_value("model"), Some("whisper-1"));
    assert_eq!(rec[0].form_value("response_format"), Some("json"));
    assert!(
        !format!("{:?}", rec[0]).contains("sk-sim"),
        "Debug leaks the key"
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_recorded() {
    let sim = manual_sim().await;
    let http = Http::new();
    let r = http.get(&url(&sim.base_url(), "/nothing?x=1"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let rec = sim.requests();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].endpoint, Endpoint::Other);
    assert_eq!(rec[0].query.as_deref(), Some("x=1"));
    assert_eq!(rec[0].status, StatusCode::NOT_FOUND);
    assert!(rec[0].connection_id > 0);
}

#[tokio::test]
async fn waiters_wake_on_served_calls_and_answers() {
    let sim = manual_sim().await;
    sim.ingest(3);
    let http = Http::new();
    let token = login(&http, &sim).await;
    assert_eq!(sim.answered(Endpoint::Login), 1);
    let (s2, h2) = (sim.clone(), http.clone());
    let poller = tokio::spawn(async move {
        poll(
            &h2,
            &s2,
            &token,
            &["4290-512", "4290-1536", "7001-100"],
            "0",
            true,
        )
        .await
        .status
    });
    tokio::time::timeout(Duration::from_secs(10), sim.wait_served(3))
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        sim.wait_answered(Endpoint::LiveCalls, 1),
    )
    .await
    .unwrap();
    assert_eq!(poller.await.unwrap(), StatusCode::OK);
    assert_eq!(sim.served_calls().len(), 3);
}

#[tokio::test]
async fn head_on_audio_gives_length_without_body() {
    let sim = manual_sim().await;
    sim.ingest(1);
    let c = &sim.ingested_calls()[0];
    let req = http::Request::head(audio_url(&sim, &c.payload))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = Http::new().send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length").unwrap(), c.audio_len.to_string());
    assert!(r.bytes().is_empty());
}

#[tokio::test]
async fn recorded_requests_redact_secrets_in_debug() {
    let sim = manual_sim().await;
    let http = Http::new();
    let token = login(&http, &sim).await;
    poll(&http, &sim, &token, &["4290-512"], "0", true).await;
    transcribe(&http, &sim, "sk-sim", b"not audio", "json").await;
    let rec = sim.requests();
    assert_eq!(rec.len(), 3);
    let dump = format!("{rec:?}");
    for secret in [token.as_str(), "demo-password", "sk-sim"] {
        assert!(!dump.contains(secret), "Debug leaks {secret}");
    }
    // The values themselves stay available to assertions.
    assert_eq!(rec[1].cookie.as_deref(), Some(token.as_str()));
    assert_eq!(rec[2].header("authorization"), Some("Bearer sk-sim"));
}

#[test]
fn builder_debug_redacts_secrets() {
    let b = Simulator::builder()
        .user("alice", "hunter2-secret")
        .whisper_key("sk-very-secret");
    let d = format!("{b:?}");
    assert!(d.contains("alice"));
    assert!(
        !d.contains("hunter2-secret") && !d.contains("sk-very-secret"),
        "{d}"
    );
}
