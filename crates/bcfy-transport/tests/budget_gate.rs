//! The rate budget and the Retry-After gate: in-process under paused tokio time, and the gate
//! end to end over a socket with real (short) durations.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bcfy_transport::http::HeaderValue;
use bcfy_transport::{
    GovernorBudget, RateBudget, Request, RequestClass, RetryAfterGate, RetryHint, Transport,
    TransportErrorKind, parse_retry_after,
};
use common::{Mode, config, ok, start, status};
use tokio::time::Instant;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_budget_spaces_requests_under_paused_time() {
    let budget = Arc::new(GovernorBudget::per_minute(nz(60)));
    let start = Instant::now();
    // Five producers share one budget.
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let b = Arc::clone(&budget);
            tokio::spawn(async move {
                let mut at = Vec::new();
                for _ in 0..12 {
                    b.acquire().await;
                    at.push(start.elapsed());
                }
                at
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all.len(), 60);
    // 60 per minute, burst 1: one per second, never two within a second.
    for w in all.windows(2) {
        assert!(
            w[1].saturating_sub(w[0]) >= Duration::from_millis(999),
            "{:?} then {:?}",
            w[0],
            w[1]
        );
    }
    assert!(
        all[59] >= Duration::from_secs(59) && all[59] < Duration::from_secs(61),
        "{:?}",
        all[59]
    );
    // No window of a minute holds more than 60 (+1 at the edge).
    for (i, t) in all.iter().enumerate() {
        let in_window = all[i..]
            .iter()
            .take_while(|u| u.saturating_sub(*t) < Duration::from_mins(1))
            .count();
        assert!(in_window <= 61);
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_goes_at_once_then_the_rate_holds() {
    let budget = GovernorBudget::with_burst(nz(120), nz(10));
    let start = Instant::now();
    for _ in 0..10 {
        budget.acquire().await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the burst is immediate");
    budget.acquire().await;
    assert!(
        start.elapsed() >= Duration::from_millis(499),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_closed_gate_holds_every_waiter_until_it_reopens() {
    let gate = RetryAfterGate::new();
    let start = Instant::now();
    gate.close_for(Duration::from_secs(30));
    assert!(gate.closed_until().is_some());
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let g = gate.clone();
            tokio::spawn(async move {
                g.wait().await;
                start.elapsed()
            })
        })
        .collect();
    // Extended while they wait: they wait for the longer pause.
    tokio::time::sleep(Duration::from_secs(10)).await;
    gate.close_for(Duration::from_secs(40));
    // A shorter pause never shortens it.
    gate.close_for(Duration::from_secs(1));
    for w in waiters {
        assert_eq!(w.await.unwrap(), Duration::from_secs(50));
    }
    assert!(gate.closed_until().is_none());
    gate.wait().await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(50),
        "an open gate does not wait"
    );
}

#[test]
fn retry_after_parses_seconds_and_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let v = |s: &'static str| HeaderValue::from_static(s);
    assert_eq!(parse_retry_after(&v("0"), now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after(&v(" 120 "), now),
        Some(Duration::from_mins(2))
    );
    assert_eq!(
        parse_retry_after(&v("99999999999999999999999"), now),
        Some(Duration::from_secs(u64::MAX))
    );
    let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
    assert_eq!(
        parse_retry_after(&HeaderValue::from_str(&later).unwrap(), now),
        Some(Duration::from_secs(90))
    );
    let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
    assert_eq!(
        parse_retry_after(&HeaderValue::from_str(&past).unwrap(), now),
        Some(Duration::ZERO)
    );
    for bad in ["-1", "1.5", "soon", ""] {
        assert_eq!(parse_retry_after(&v(bad), now), None, "{bad:?}");
    }
}

#[tokio::test]
async fn a_429_pauses_every_caller_of_every_clone() {
    let sent_429 = Arc::new(std::sync::Mutex::new(None));
    let s429 = Arc::clone(&sent_429);
    let server = start(Mode::TlsH2, move |seen| {
        let s429 = Arc::clone(&s429);
        async move {
            if seen.path == "/first" {
                *s429.lock().unwrap() = Some(std::time::Instant::now());
                let mut r = status(429);
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                r
            } else {
                ok("later")
            }
        }
    })
    .await;
    let t = server.client(config());
    let err = t
        .send(Request::get(server.url("/first")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::RateLimited);
    assert_eq!(err.retry_hint(), RetryHint::After(Duration::from_secs(1)));
    assert_eq!(err.status().map(|s| s.as_u16()), Some(429));
    assert!(t.gate().closed_until().is_some());

    let callers: Vec<_> = (0..6)
        .map(|i| {
            let t = t.clone();
            let class = if i % 2 == 0 {
                RequestClass::Api
            } else {
                RequestClass::Audio
            };
            let url = server.url(&format!("/after{i}"));
            tokio::spawn(async move {
                t.send(Request::get(url).class(class))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for c in callers {
        assert_eq!(c.await.unwrap(), "later");
    }
    let first = sent_429.lock().unwrap().unwrap();
    let after: Vec<_> = server
        .stats
        .requests()
        .into_iter()
        .filter(|s| s.path != "/first")
        .collect();
    assert_eq!(after.len(), 6);
    for s in after {
        // The client closed the gate after the server sent the 429, so every later request
        // arrives at least the Retry-After later.
        let waited = s.at.duration_since(first);
        assert!(
            waited >= Duration::from_secs(1),
            "{} arrived after {waited:?}",
            s.path
        );
    }
    assert!(t.gate().closed_until().is_none());
}

#[tokio::test]
async fn a_503_pauses_only_with_retry_after_and_dates_work() {
    let server = start(Mode::Plain, |seen| async move {
        let mut r = status(503);
        if seen.path == "/dated" {
            let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_str(&at).unwrap());
        }
        r
    })
    .await;
    let t = server.client(config());
    let resp = t.send(Request::get(server.url("/plain"))).await.unwrap();
    assert_eq!(
        resp.status(),
        503,
        "a 503 without Retry-After is a response"
    );
    assert!(t.gate().closed_until().is_none());

    let err = t
        .send(Request::get(server.url("/dated")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::RateLimited);
    let RetryHint::After(d) = err.retry_hint() else {
        panic!("{err:?}")
    };
    // HTTP dates have one-second resolution.
    assert!(d > Duration::ZERO && d <= Duration::from_secs(2), "{d:?}");
    assert!(t.gate().closed_until().is_some());
}

#[tokio::test]
async fn a_429_without_retry_after_uses_the_default_and_huge_values_are_capped() {
    let server = start(Mode::Plain, |seen| async move {
        let mut r = status(429);
        if seen.path == "/huge" {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("86400"));
        }
        r
    })
    .await;
    let t = server
        .builder(config())
        .default_retry_after(Duration::from_millis(100))
        .max_retry_after(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = t.send(Request::get(server.url("/bare"))).await.unwrap_err();
    assert_eq!(
        err.retry_hint(),
        RetryHint::After(Duration::from_millis(100))
    );
    let err = t.send(Request::get(server.url("/huge"))).await.unwrap_err();
    assert_eq!(
        err.retry_hint(),
        RetryHint::After(Duration::from_millis(300)),
        "capped"
    );
}

#[test]
fn the_default_cap_is_ten_minutes() {
    assert_eq!(bcfy_transport::MAX_RETRY_AFTER, Duration::from_mins(10));
}

#[tokio::test]
async fn a_request_held_at_the_gate_leaves_with_the_session_current_at_departure() {
    // A token that ends while a request waits at the gate (a logged-out answer, a re-login)
    // must not go out with that request: the cookie is applied after every wait.
    let server = start(Mode::Plain, |_seen| async move { ok("ok") }).await;
    let transport = server.client(config());
    transport
        .session()
        .set(Some(bcfy_transport::SessionToken::new("old-token")));
    transport.gate().close_for(Duration::from_millis(300));
    let waiting = tokio::spawn({
        let t = transport.clone();
        let url = server.url("/held");
        async move { t.send(Request::get(url)).await }
    });
    // Let the request reach the gate (this test runs on one thread), then replace the
    // session while it is held there.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    transport
        .session()
        .set(Some(bcfy_transport::SessionToken::new("new-token")));
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let seen = server.stats.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("cookie"), Some("bcfyuser1=new-token"));
}
