//! The request log records what the simulator answered, as the contract checker needs it:
//! when the answer was ready, its Retry-After, and whether it said the session is gone.

mod common;

use bcfy_sim::{Endpoint, Fault, FaultPlan, RetryAfter, Simulator};
use common::{Http, login, poll};
use http::StatusCode;

const G: &[&str] = &["4290-512"];

#[tokio::test]
async fn the_log_records_retry_after_and_logged_out_answers() {
    let sim = Simulator::builder()
        .seed(3)
        .manual_clock(1_758_430_000)
        .calls_per_second(0.0)
        .faults(
            FaultPlan::none()
                .nth(Endpoint::LiveCalls, 2, Fault::too_many_requests_secs(7))
                .nth(
                    Endpoint::LiveCalls,
                    3,
                    Fault::Unavailable(Some(RetryAfter::HttpDate(std::time::Duration::from_secs(
                        30,
                    )))),
                ),
        )
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let token = login(&http, &sim).await;
    sim.ingest(2);
    assert_eq!(
        poll(&http, &sim, &token, G, "0", true).await.status,
        StatusCode::OK
    );
    assert_eq!(
        poll(&http, &sim, &token, G, "0", false).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        poll(&http, &sim, &token, G, "0", false).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A poll with a token the simulator never issued gets the logged-out answer.
    assert_eq!(
        poll(&http, &sim, "not-a-token", G, "0", false).await.status,
        StatusCode::OK
    );

    let polls = sim.requests_to(Endpoint::LiveCalls);
    assert_eq!(polls.len(), 4);
    assert_eq!(polls[0].retry_after, None);
    assert!(!polls[0].logged_out);
    assert_eq!(polls[1].retry_after, Some(7.0));
    let date = polls[2]
        .retry_after
        .expect("an HTTP-date Retry-After is recorded");
    assert!((28.0..=31.0).contains(&date), "{date}");
    assert!(polls[3].logged_out);
    for p in &polls {
        assert!(p.answered_at >= p.time);
    }
    sim.shutdown().await;
}
