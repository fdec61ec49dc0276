//! The `otel` feature: spans and the spec's metrics reach an OTLP/HTTP collector (a local
//! hyper server standing in for one).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy::proto::Subscription;
use bcfy::telemetry::{OtlpConfig, Telemetry};
use bcfy::{Client, Config};
use bcfy_sim::Simulator;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Clone)]
struct Export {
    path: String,
    content_type: String,
    body: Bytes,
}

/// A collector that accepts every export and keeps it.
async fn collector() -> (url::Url, Arc<Mutex<Vec<Export>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let exports = Arc::new(Mutex::new(Vec::new()));
    let store = exports.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let content_type = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        store.lock().unwrap().push(Export {
                            path,
                            content_type,
                            body,
                        });
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, exports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_the_collector() {
    let (endpoint, exports) = collector().await;
    let mut otlp = OtlpConfig::default();
    otlp.endpoint = endpoint;
    otlp.service_name = "bcfy-e2e".into();
    let telemetry = Telemetry::otlp(&otlp).unwrap();
    tracing_subscriber::registry()
        .with(telemetry.layer())
        .init();

    let sim = Simulator::builder()
        .seed(41)
        .groups([(4290, 512)])
        .calls_per_second(20.0)
        .total_calls(Some(3))
        .user("o-user", "o-pass")
        .start()
        .await
        .unwrap();
    let mut config = Config::default();
    config.endpoints.site = sim.base_url();
    config.endpoints.calls_cdn = sim.cdn_url();
    config.live.poll_interval = Duration::from_millis(100);
    let client = Client::builder()
        .config(config)
        .credentials("o-user", SecretString::from("o-pass"))
        .build()
        .unwrap();
    telemetry.instrument(&client);
    let mut stream = client.stream("calls.audio.raw").unwrap();
    client
        .create_live_producer(Subscription::talkgroups(["4290-512".parse().unwrap()]).unwrap())
        .unwrap();
    client.start().await.unwrap();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap();
    }
    let drain = async { while stream.next().await.is_some() {} };
    let (report, ()) = tokio::join!(client.shutdown(Duration::from_secs(10)), drain);
    report.unwrap();

    // Shutting the providers down flushes spans and a final metrics collection.
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.shutdown())
        .await
        .unwrap()
        .unwrap();
    sim.shutdown().await;

    let exports = exports.lock().unwrap().clone();
    let traces: Vec<&Export> = exports.iter().filter(|e| e.path == "/v1/traces").collect();
    let metrics: Vec<&Export> = exports.iter().filter(|e| e.path == "/v1/metrics").collect();
    assert!(!traces.is_empty(), "spans exported: {:?}", paths(&exports));
    assert!(
        !metrics.is_empty(),
        "metrics exported: {:?}",
        paths(&exports)
    );
    for e in traces.iter().chain(&metrics) {
        assert_eq!(e.content_type, "application/x-protobuf");
    }
    // Protobuf keeps strings verbatim: look for the names in the payloads.
    let contains = |set: &[&Export], needle: &str| {
        set.iter()
            .any(|e| e.body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    assert!(contains(&traces, "bcfy.publish"), "the publish spans");
    assert!(contains(&traces, "call_id"), "with the call id");
    assert!(contains(&traces, "bcfy-e2e"), "and the service name");
    for name in [
        "live_producer.dispatched",
        "live_producer.queue_depth",
        "audio.downloaded",
    ] {
        assert!(contains(&metrics, name), "metric {name}");
    }
}

fn paths(exports: &[Export]) -> Vec<&str> {
    exports.iter().map(|e| e.path.as_str()).collect()
}
