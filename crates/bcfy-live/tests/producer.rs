//! Unit tests of the poll loop: paused tokio time and the transport's scripted mock.

#![allow(
    clippy::float_cmp,
    clippy::many_single_char_names,
    clippy::field_reassign_with_default,
    clippy::duration_suboptimal_units
)]
mod common;
use common::*;

#[tokio::test(start_paused = true)]
async fn first_poll_form_and_xhr_headers_are_exact() {
    let r = rig(config());
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (_rx, task) = spawn(&r.producer, 8);
    let reqs = polls(&r.mock, 1).await;
    let req = &reqs[0];
    let key = field(req, "sessionKey");
    assert_eq!(
        req.body_str(),
        format!("groups%5B%5D=4290-512&pos=1758428000&doInit=1&systemId=0&sid=0&sessionKey={key}")
    );
    let (a, b) = key.split_once('-').unwrap();
    assert!(a.len() == 8 && b.len() == 4, "{key}");
    assert!(key.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    assert_eq!(req.method, Method::POST);
    assert_eq!(
        req.url.as_str(),
        "https://www.broadcastify.com/calls/apis/live-calls"
    );
    assert_eq!(req.header("x-requested-with"), Some("XMLHttpRequest"));
    assert_eq!(req.header("origin"), Some("https://www.broadcastify.com"));
    assert_eq!(
        req.header("referer"),
        Some("https://www.broadcastify.com/calls/tg/4290/512")
    );
    assert_eq!(req.header("cookie"), Some("bcfyuser1=tok-1"));
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // The browser template is still there under the XHR headers.
    assert!(req.header("user-agent").unwrap().contains("Chrome/126"));
    assert_eq!(req.header("accept-encoding"), Some("gzip, deflate, br"));
    r.producer.stop();
    assert!(task.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn many_talkgroups_go_in_one_request_with_the_calls_page_referer() {
    let groups = ["4290-512", "4290-513", "7001-1", "7001-2"].map(group);
    let r = rig_with(
        config(),
        Subscription::talkgroups(groups).unwrap(),
        CredentialSource::Token(SessionToken::new("tok-1")),
    );
    r.mock.on(
        Method::POST,
        LIVE,
        answer(&[
            call(1_758_428_010, 4290, 513, 1_758_428_001),
            call(1_758_428_011, 7001, 2, 1_758_428_002),
        ]),
    );
    let (mut rx, task) = spawn(&r.producer, 8);
    let a = rx.recv().await.unwrap();
    let b = rx.recv().await.unwrap();
    // Each envelope carries its own call's shard key, not the subscription's first group.
    assert_eq!(a.shard_key, (SystemId::new(4290), TalkgroupId::new(513)));
    assert_eq!(b.shard_key, (SystemId::new(7001), TalkgroupId::new(2)));
    let reqs = polls(&r.mock, 1).await;
    let form = reqs[0].form();
    let sent: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "groups[]")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(sent, ["4290-512", "4290-513", "7001-1", "7001-2"]);
    assert_eq!(
        reqs[0].header("referer"),
        Some("https://www.broadcastify.com/calls/")
    );
    r.producer.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn cursor_follows_the_newest_ts_and_do_init_is_only_first() {
    let r = rig(config());
    let t = START as i64;
    for batch in [
        vec![call(t + 5, 4290, 512, t), call(t + 9, 4290, 512, t + 3)],
        vec![],
        vec![call(t + 30, 4290, 512, t + 20)],
        vec![
            call(t + 31, 4290, 512, t + 25),
            call(t + 40, 4290, 512, t + 33),
        ],
        vec![],
    ] {
        r.mock.on(Method::POST, LIVE, answer(&batch));
    }
    let (mut rx, task) = spawn(&r.producer, 64);
    let reqs = polls(&r.mock, 6).await;
    let pos: Vec<String> = reqs.iter().map(|q| field(q, "pos")).collect();
    // pos = the newest ts dispatched (the page would send +1: we overlap by a second).
    let want = [t, t + 9, t + 9, t + 30, t + 40, t + 40].map(|p| p.to_string());
    assert_eq!(pos, want);
    let inits: Vec<String> = reqs.iter().map(|q| field(q, "doInit")).collect();
    assert_eq!(inits, ["1", "0", "0", "0", "0", "0"]);
    let keys: std::collections::HashSet<String> =
        reqs.iter().map(|q| field(q, "sessionKey")).collect();
    assert_eq!(keys.len(), 1, "one sessionKey per session");
    let mut got = Vec::new();
    while let Ok(e) = rx.try_recv() {
        got.push((e.call.ts, e.cursor));
    }
    assert_eq!(
        got,
        vec![
            (t + 5, Some((t + 5) as f64)),
            (t + 9, Some((t + 9) as f64)),
            (t + 30, Some((t + 30) as f64)),
            (t + 31, Some((t + 31) as f64)),
            (t + 40, Some((t + 40) as f64)),
        ]
    );
    assert_eq!(r.producer.cursor(), (t + 40) as f64);
    // Polls are spaced by the poll interval.
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert_eq!(r.producer.stats().dispatched, 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_init_poll_is_retried_in_a_new_session_and_later_failures_keep_it() {
    let r = rig(config());
    let t = START as i64;
    // Poll 1 (doInit=1) fails; poll 2 opens a new session; poll 3 fails after the session
    // started, so poll 4 keeps its key and doInit=0.
    r.mock.on(
        Method::POST,
        LIVE,
        MockResponse::new(StatusCode::BAD_GATEWAY),
    );
    r.mock
        .on(Method::POST, LIVE, answer(&[call(t + 5, 4290, 512, t)]));
    r.mock.on(
        Method::POST,
        LIVE,
        MockResponse::new(StatusCode::BAD_GATEWAY),
    );
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (_rx, task) = spawn(&r.producer, 16);
    let reqs = polls(&r.mock, 4).await;
    let inits: Vec<String> = reqs.iter().map(|q| field(q, "doInit")).collect();
    assert_eq!(inits, ["1", "1", "0", "0"]);
    let keys: Vec<String> = reqs.iter().map(|q| field(q, "sessionKey")).collect();
    assert_ne!(
        keys[0], keys[1],
        "a failed init poll's key is never used again"
    );
    assert_eq!(keys[1], keys[2]);
    assert_eq!(keys[2], keys[3]);
    r.producer.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_answer_over_the_cap_restarts_at_now_minus_history_instead_of_wedging() {
    let mock = MockTransport::new();
    let site = Url::parse(SITE).unwrap();
    let auth = Arc::new(AuthManager::new(
        mock.shared(),
        site.clone(),
        CredentialSource::Token(SessionToken::new("tok-1")),
    ));
    let now = START as u64 + 86_400;
    let clock: bcfy_live::Clock =
        Arc::new(move || std::time::UNIX_EPOCH + Duration::from_secs(now));
    let producer = Arc::new(
        LiveCallProducer::new(
            mock.shared(),
            auth,
            site,
            Subscription::talkgroups([group("4290-512")]).unwrap(),
            config(),
        )
        .unwrap()
        .with_rng_seed(7)
        .with_clock(clock)
        .with_max_answer_bytes(4096),
    );
    // A day of backlog since the cursor: the answer is over the cap.
    let t = START as i64;
    let huge: Vec<Value> = (0..200)
        .map(|i| call(t + i, 4290, 512, t + i - 5))
        .collect();
    r#use(&mock, answer(&huge));
    r#use(
        &mock,
        answer(&[call(now as i64 - 10, 4290, 512, now as i64 - 15)]),
    );
    r#use(&mock, answer(&[]));
    let (mut rx, task) = spawn(&producer, 16);
    let got = rx.recv().await.unwrap();
    assert_eq!(got.call.ts, now as i64 - 10);
    let reqs = polls(&mock, 2).await;
    assert_eq!(field(&reqs[0], "pos"), t.to_string());
    // The retry starts over at now - history (300 s) in a new session.
    assert_eq!(field(&reqs[1], "pos"), (now - 300).to_string());
    assert_eq!(field(&reqs[1], "doInit"), "1");
    assert_ne!(field(&reqs[0], "sessionKey"), field(&reqs[1], "sessionKey"));
    producer.stop();
    task.await.unwrap().unwrap();
    assert_eq!(producer.stats().backlog_skipped, 1);
}

#[tokio::test(start_paused = true)]
async fn a_second_busier_than_the_dedup_capacity_is_not_delivered_twice() {
    // 5,000 calls/s against 4,096 remembered ids, in small: 5 calls in one second, 2 ids.
    let mut c = config();
    c.dedup_capacity = 2;
    let r = rig(c);
    let t = START as i64 + 60;
    let first: Vec<Value> = (0..5).map(|i| call(t, 4290, 512, t - 20 + i)).collect();
    let mut second = first.clone();
    second.push(call(t, 4290, 512, t - 1));
    r.mock.on(Method::POST, LIVE, answer(&first));
    r.mock.on(Method::POST, LIVE, answer(&second));
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (mut rx, task) = spawn(&r.producer, 16);
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(rx.recv().await.unwrap().call.filename.clone());
    }
    polls(&r.mock, 3).await;
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "no call twice: {got:?}");
    let s = r.producer.stats();
    assert_eq!((s.dispatched, s.duplicates), (6, 5));
}

fn r#use(mock: &MockTransport, response: MockResponse) {
    mock.on(Method::POST, LIVE, response);
}

#[tokio::test(start_paused = true)]
async fn same_second_call_after_a_poll_is_not_lost_and_repeats_are_dropped() {
    let r = rig(config());
    let t = START as i64 + 60;
    // Poll 1 sees A at second t. Then B is ingested in the same second t: poll 2 (pos = t)
    // returns A again and B; only B is new.
    r.mock
        .on(Method::POST, LIVE, answer(&[call(t, 4290, 512, t - 10)]));
    r.mock.on(
        Method::POST,
        LIVE,
        answer(&[call(t, 4290, 512, t - 10), call(t, 4290, 512, t - 5)]),
    );
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (mut rx, task) = spawn(&r.producer, 16);
    let a = rx.recv().await.unwrap();
    let b = rx.recv().await.unwrap();
    assert_eq!(a.call.filename, format!("{}-512", t - 10));
    assert_eq!(b.call.filename, format!("{}-512", t - 5));
    // Each envelope carries its entry exactly as served.
    assert_eq!(
        Value::Object(a.raw_payload.to_map()),
        call(t, 4290, 512, t - 10)
    );
    assert_eq!(
        Value::Object(b.raw_payload.to_map()),
        call(t, 4290, 512, t - 5)
    );
    let reqs = polls(&r.mock, 3).await;
    assert_eq!(field(&reqs[1], "pos"), t.to_string());
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "A must not be dispatched twice");
    let s = r.producer.stats();
    assert_eq!((s.dispatched, s.duplicates), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn the_do_init_backlog_is_capped_to_the_newest_calls() {
    let mut c = config();
    c.initial_position = None;
    c.max_init_backlog = 2;
    let r = rig(c);
    let t = 1_758_428_000;
    let backlog: Vec<Value> = (0..5).map(|i| call(t + i, 4290, 512, t - 10 + i)).collect();
    r.mock.on(Method::POST, LIVE, answer(&backlog));
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (mut rx, task) = spawn(&r.producer, 16);
    assert_eq!(rx.recv().await.unwrap().call.ts, t + 3);
    assert_eq!(rx.recv().await.unwrap().call.ts, t + 4);
    polls(&r.mock, 2).await;
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert_eq!(r.producer.stats().backlog_skipped, 3);
}

#[tokio::test(start_paused = true)]
async fn starts_from_now_minus_history_without_initial_position() {
    let mut c = config();
    c.initial_position = None;
    c.history = Duration::from_secs(300);
    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mock = MockTransport::new();
    let site = Url::parse(SITE).unwrap();
    let auth = Arc::new(AuthManager::new(
        mock.shared(),
        site.clone(),
        CredentialSource::Token(SessionToken::new("t")),
    ));
    let producer = Arc::new(
        LiveCallProducer::new(
            mock.shared(),
            auth,
            site,
            Subscription::talkgroups([group("1-2")]).unwrap(),
            c,
        )
        .unwrap()
        .with_clock(Arc::new(move || now)),
    );
    mock.on(Method::POST, LIVE, answer(&[]));
    let (_rx, task) = spawn(&producer, 4);
    let reqs = polls(&mock, 1).await;
    assert_eq!(field(&reqs[0], "pos"), "1799999700");
    producer.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn hostile_entries_are_counted_and_do_not_hold_the_cursor() {
    let r = rig(config());
    let t = START as i64 + 100;
    let body = json!({
        "calls": [
            call(t - 50, 4290, 512, t - 60),
            {"id": "4290-512", "ts": t, "systemId": 2893, "call_tg": 512, "filename": "../../etc/passwd"},
            {"id": "4290-512", "ts": t, "systemId": "x", "call_tg": 512, "filename": "1-512", "hash": "a/b"},
        ],
        "serverTime": t + 5,
        "lastPos": t,
    });
    r.mock
        .on(Method::POST, LIVE, MockResponse::json(body.to_string()));
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (mut rx, task) = spawn(&r.producer, 16);
    assert_eq!(rx.recv().await.unwrap().call.ts, t - 50);
    let reqs = polls(&r.mock, 2).await;
    assert_eq!(
        field(&reqs[1], "pos"),
        t.to_string(),
        "lastPos moves the cursor"
    );
    r.producer.stop();
    task.await.unwrap().unwrap();
    let s = r.producer.stats();
    assert_eq!((s.dispatched, s.rejected), (1, 2));
}

/// Answers polls with `responses` in turn (the last one repeats) and records the (paused)
/// time of every poll.
fn timed(mock: &MockTransport, responses: Vec<MockResponse>) -> Arc<Mutex<Vec<Instant>>> {
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = Arc::clone(&times);
    let queue = Mutex::new(std::collections::VecDeque::from(responses));
    mock.on_fn(move |req| {
        (req.path() == LIVE).then(|| {
            t.lock().unwrap().push(Instant::now());
            let mut q = queue.lock().unwrap();
            if q.len() > 1 {
                q.pop_front().unwrap()
            } else {
                q[0].clone()
            }
        })
    });
    times
}

fn gaps(times: &[Instant]) -> Vec<f64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_and_exhaust_the_budget() {
    let mut c = config();
    c.poll_interval = Duration::from_millis(500);
    c.initial_backoff = Duration::from_secs(1);
    c.max_backoff = Duration::from_secs(8);
    c.max_retry_attempts = Some(5);
    let r = rig(c);
    let times = timed(
        &r.mock,
        vec![MockResponse::new(StatusCode::INTERNAL_SERVER_ERROR).body("<html>oops</html>")],
    );
    let (_rx, task) = spawn(&r.producer, 4);
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), LiveErrorKind::RetriesExhausted);
    assert_eq!(err.category(), bcfy_proto::ErrorCategory::LiveSession);
    assert_eq!(err.attempts(), 6);
    assert!(err.to_string().contains("500"), "{err}");
    // One first try + 5 retries, waiting 1, 2, 4, 8 (capped), 8 s.
    assert_eq!(times.lock().unwrap().len(), 6);
    assert_eq!(gaps(&times.lock().unwrap()), vec![1.0, 2.0, 4.0, 8.0, 8.0]);
    assert_eq!(r.producer.stats().retries, 5);
}

#[tokio::test(start_paused = true)]
async fn backoff_is_jittered_within_bounds_and_resets_after_success() {
    let mut c = config();
    c.poll_interval = Duration::from_millis(100);
    c.jitter_ratio = 0.2;
    c.initial_backoff = Duration::from_secs(4);
    c.max_backoff = Duration::from_secs(30);
    let r = rig(c);
    let times = timed(
        &r.mock,
        vec![
            MockResponse::error(TransportErrorKind::Connect),
            MockResponse::error(TransportErrorKind::Timeout),
            answer(&[]),
            MockResponse::new(StatusCode::BAD_GATEWAY),
            answer(&[]),
        ],
    );
    let (_rx, task) = spawn(&r.producer, 4);
    polls(&r.mock, 5).await;
    r.producer.stop();
    task.await.unwrap().unwrap();
    let g = gaps(&times.lock().unwrap()[..5]);
    let within = |x: f64, base: f64| x >= base * 0.8 - 1e-9 && x <= base * 1.2 + 1e-9;
    assert!(within(g[0], 4.0), "{g:?}");
    assert!(within(g[1], 8.0), "{g:?}");
    assert!(within(g[2], 0.1), "{g:?}");
    assert!(within(g[3], 4.0), "backoff restarts after a success: {g:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_out_without_spending_the_budget() {
    let mut c = config();
    // Two refusals in a row would exhaust a budget of one retry if they counted.
    c.max_retry_attempts = Some(1);
    let r = rig(c);
    r.mock.enforce_gate(true);
    let times = timed(
        &r.mock,
        vec![
            MockResponse::new(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "7"),
            MockResponse::new(StatusCode::SERVICE_UNAVAILABLE).header("retry-after", "1"),
            answer(&[call(START as i64 + 1, 4290, 512, START as i64)]),
        ],
    );
    let (mut rx, task) = spawn(&r.producer, 4);
    assert!(rx.recv().await.is_some());
    let g = gaps(&times.lock().unwrap()[..3]);
    // Retry-After 7 s is waited out; a 1 s one still keeps the 2 s poll cadence.
    assert!(
        (g[0] - 7.0).abs() < 1e-6 && (g[1] - 2.0).abs() < 1e-6,
        "{g:?}"
    );
    r.producer.stop();
    task.await.unwrap().unwrap();
    let s = r.producer.stats();
    assert_eq!((s.rate_limited, s.retries), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn session_expiry_logs_in_again_and_retries_in_a_new_session() {
    let mut c = config();
    c.max_retry_attempts = Some(1);
    let r = rig_with(
        c,
        Subscription::talkgroups([group("4290-512")]).unwrap(),
        CredentialSource::Both {
            credentials: Credentials::new("user", "hunter2"),
            token: SessionToken::new("old-token"),
        },
    );
    let t = START as i64;
    r.mock.on(Method::POST, "/login/", login_ok("new-token"));
    r.mock
        .on(Method::POST, LIVE, answer(&[call(t + 1, 4290, 512, t - 5)]));
    r.mock
        .on(Method::POST, LIVE, MockResponse::new(StatusCode::FORBIDDEN));
    r.mock
        .on(Method::POST, LIVE, answer(&[call(t + 2, 4290, 512, t - 4)]));
    let (mut rx, task) = spawn(&r.producer, 8);
    assert_eq!(rx.recv().await.unwrap().call.ts, t + 1);
    assert_eq!(rx.recv().await.unwrap().call.ts, t + 2);
    let reqs = r.mock.requests();
    let paths: Vec<&str> = reqs.iter().map(RecordedRequest::path).collect();
    assert_eq!(paths, [LIVE, LIVE, "/login/", LIVE]);
    assert_eq!(reqs[1].header("cookie"), Some("bcfyuser1=old-token"));
    assert_eq!(reqs[3].header("cookie"), Some("bcfyuser1=new-token"));
    // The re-login starts a new live session; the cursor is kept.
    assert_eq!(field(&reqs[3], "doInit"), "1");
    assert_ne!(field(&reqs[3], "sessionKey"), field(&reqs[0], "sessionKey"));
    assert_eq!(field(&reqs[3], "pos"), (t + 1).to_string());
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert_eq!(r.producer.stats().relogins, 1);
}

#[tokio::test(start_paused = true)]
async fn a_logged_out_error_body_also_triggers_a_login() {
    let r = rig_with(
        config(),
        Subscription::talkgroups([group("4290-512")]).unwrap(),
        CredentialSource::Both {
            credentials: Credentials::new("user", "hunter2"),
            token: SessionToken::new("old-token"),
        },
    );
    r.mock.on(Method::POST, "/login/", login_ok("new-token"));
    r.mock.on(
        Method::POST,
        LIVE,
        MockResponse::json(r#"{"error":"You must be logged in to access this resource"}"#),
    );
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (_rx, task) = spawn(&r.producer, 8);
    let reqs = polls(&r.mock, 2).await;
    assert_eq!(reqs[1].header("cookie"), Some("bcfyuser1=new-token"));
    r.producer.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_dead_token_without_credentials_ends_the_run() {
    let r = rig(config());
    r.mock.on(
        Method::POST,
        LIVE,
        MockResponse::new(StatusCode::UNAUTHORIZED),
    );
    let (_rx, task) = spawn(&r.producer, 8);
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), LiveErrorKind::Authentication);
    // The dead token was never sent again.
    assert_eq!(r.mock.requests_to(LIVE).len(), 1);
    assert!(!format!("{err:?}{err}").contains("tok-1"));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_stops_polling_and_nothing_is_skipped_after() {
    let r = rig(config());
    let t = START as i64;
    let mut next = t;
    // Each poll answers every call since pos (ts >= pos), like the service.
    let feed: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    for i in 0..6 {
        next += 1;
        feed.lock()
            .unwrap()
            .push(call(next, 4290, 512, t - 100 + i));
    }
    let f = Arc::clone(&feed);
    r.mock.on_fn(move |req| {
        (req.path() == LIVE).then(|| {
            let pos: f64 = field(req, "pos").parse().unwrap();
            let calls: Vec<Value> = f
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c["ts"].as_i64().unwrap() as f64 >= pos)
                .cloned()
                .collect();
            answer(&calls)
        })
    });
    let (mut rx, task) = spawn(&r.producer, 2);
    // The first poll brings 6 calls; 2 fit, the producer waits on the third.
    polls(&r.mock, 1).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        r.mock.requests_to(LIVE).len(),
        1,
        "no poll while the queue is full"
    );
    assert_eq!(r.producer.cursor(), (t + 2) as f64);
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(rx.recv().await.unwrap().call.ts);
    }
    assert_eq!(got, (1..=6).map(|i| t + i).collect::<Vec<_>>());
    // Stalled again: the queue fills with new calls, polling stops again.
    {
        let mut f = feed.lock().unwrap();
        for i in 0..3 {
            f.push(call(t + 7 + i, 4290, 512, t - 50 + i));
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let n = r.mock.requests_to(LIVE).len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        r.mock.requests_to(LIVE).len(),
        n,
        "stalled consumer: no polls"
    );
    for i in 0..3 {
        assert_eq!(rx.recv().await.unwrap().call.ts, t + 7 + i);
    }
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err());
    assert_eq!(r.producer.stats().dispatched, 9);
}

#[tokio::test(start_paused = true)]
async fn stop_ends_a_run_awaited_elsewhere() {
    let r = rig(config());
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let handle = r.producer.handle();
    let (_rx, task) = spawn(&r.producer, 4);
    polls(&r.mock, 2).await;
    handle.stop();
    assert!(task.await.unwrap().is_ok());
    assert!(
        !handle.is_stopped(),
        "the stop was consumed by the run it ended"
    );
    // A stop with no active run ends the next run at once.
    handle.stop();
    let (tx, _rx) = mpsc::channel(1);
    let before = r.mock.requests_to(LIVE).len();
    assert!(r.producer.run(tx).await.is_ok());
    assert_eq!(r.mock.requests_to(LIVE).len(), before);
}

#[tokio::test(start_paused = true)]
async fn a_stop_mid_batch_keeps_the_cursor_on_the_last_delivered_call_and_a_new_run_resumes() {
    let r = rig(config());
    let t = START as i64;
    let feed: Vec<Value> = (1..=3)
        .map(|i| call(t + i, 4290, 512, t - 10 + i))
        .collect();
    let f = feed.clone();
    r.mock.on_fn(move |req| {
        (req.path() == LIVE).then(|| {
            let pos: f64 = field(req, "pos").parse().unwrap();
            let calls: Vec<Value> = f
                .iter()
                .filter(|c| c["ts"].as_i64().unwrap() as f64 >= pos)
                .cloned()
                .collect();
            answer(&calls)
        })
    });
    let (mut rx, task) = spawn(&r.producer, 1);
    polls(&r.mock, 1).await;
    // One call fits the queue; the producer waits to put the second.
    tokio::time::sleep(Duration::from_secs(5)).await;
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert_eq!(r.producer.cursor(), (t + 1) as f64);
    assert_eq!(rx.recv().await.unwrap().call.ts, t + 1);
    assert!(rx.recv().await.is_none(), "the first run's sender is gone");

    // Run again: a new session from the cursor; call 1 comes back (overlap) and is dropped.
    let (mut rx, task) = spawn(&r.producer, 8);
    assert_eq!(rx.recv().await.unwrap().call.ts, t + 2);
    assert_eq!(rx.recv().await.unwrap().call.ts, t + 3);
    let reqs = polls(&r.mock, 3).await;
    assert_eq!(field(&reqs[1], "pos"), (t + 1).to_string());
    assert_eq!(field(&reqs[1], "doInit"), "1");
    assert_ne!(field(&reqs[1], "sessionKey"), field(&reqs[0], "sessionKey"));
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err());
    assert_eq!(r.producer.stats().dispatched, 3);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_receiver_ends_the_run() {
    let r = rig(config());
    r.mock.on(
        Method::POST,
        LIVE,
        answer(&[call(START as i64 + 1, 4290, 512, 1)]),
    );
    let (rx, task) = spawn(&r.producer, 4);
    polls(&r.mock, 1).await;
    drop(rx);
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), LiveErrorKind::QueueClosed);
}

#[tokio::test(start_paused = true)]
async fn run_twice_at_once_is_refused() {
    let r = rig(config());
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (_rx, task) = spawn(&r.producer, 4);
    polls(&r.mock, 1).await;
    let (tx, _rx2) = mpsc::channel(1);
    let err = r.producer.run(tx).await.unwrap_err();
    assert_eq!(err.kind(), LiveErrorKind::AlreadyRunning);
    r.producer.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn other_subscription_modes_send_their_own_fields() {
    for (sub, expect) in [
        (
            Subscription::playlist("0c7f1a4e-8d4b-4f4a-9e57-2f7d6b1c3a90").unwrap(),
            ("playlist_uuid", "0c7f1a4e-8d4b-4f4a-9e57-2f7d6b1c3a90"),
        ),
        (Subscription::System(SystemId::new(4290)), ("sid", "4290")),
        (
            Subscription::Node(bcfy_proto::NodeId::new(2893)),
            ("systemId", "2893"),
        ),
    ] {
        let r = rig_with(
            config(),
            sub,
            CredentialSource::Token(SessionToken::new("t")),
        );
        r.mock.on(Method::POST, LIVE, answer(&[]));
        let (_rx, task) = spawn(&r.producer, 4);
        let reqs = polls(&r.mock, 1).await;
        assert_eq!(field(&reqs[0], expect.0), expect.1);
        assert!(field(&reqs[0], "groups[]").is_empty());
        assert_eq!(
            reqs[0].header("referer"),
            Some("https://www.broadcastify.com/calls/")
        );
        r.producer.stop();
        task.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limit_per_minute_spaces_polls() {
    let mut c = config();
    c.poll_interval = Duration::from_secs(1);
    c.rate_limit_per_minute = Some(6);
    let r = rig(c);
    let times = timed(&r.mock, vec![answer(&[])]);
    let (_rx, task) = spawn(&r.producer, 4);
    polls(&r.mock, 3).await;
    r.producer.stop();
    task.await.unwrap().unwrap();
    assert_eq!(gaps(&times.lock().unwrap()[..3]), vec![10.0, 10.0]);
}

#[test]
fn stats_default_is_zero() {
    let s = ProducerStats::default();
    assert_eq!((s.polls, s.dispatched), (0, 0));
}

/// Collects `(event name, u64 fields)` of every tracing event.
#[tokio::test(start_paused = true)]
async fn a_ts_from_the_future_does_not_carry_the_cursor_past_the_server_clock() {
    let r = rig(config());
    let now = START as i64 + 50;
    let body = json!({
        "calls": [call(now - 5, 4290, 512, now - 20), call(now + 1_000_000, 4290, 512, now - 10)],
        "serverTime": now,
        "lastPos": now + 1_000_000,
    });
    r.mock
        .on(Method::POST, LIVE, MockResponse::json(body.to_string()));
    r.mock.on(Method::POST, LIVE, answer(&[]));
    let (mut rx, task) = spawn(&r.producer, 8);
    assert_eq!(rx.recv().await.unwrap().call.ts, now - 5);
    assert_eq!(rx.recv().await.unwrap().call.ts, now + 1_000_000);
    let reqs = polls(&r.mock, 2).await;
    assert_eq!(field(&reqs[1], "pos"), now.to_string());
    r.producer.stop();
    task.await.unwrap().unwrap();
}
