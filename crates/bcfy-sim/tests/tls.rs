//! TLS with the generated certificate: ALPN h2 gives HTTP/2, http/1.1 gives HTTP/1.1.

use std::sync::Arc;

use bcfy_sim::{Endpoint, Simulator};
use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

fn connector(cert: &[u8], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test]
async fn tls_offers_h2_and_http11() {
    let sim = Simulator::builder().tls(true).start().await.unwrap();
    assert_eq!(sim.base_url().scheme(), "https");
    assert!(
        sim.tls_certificate_pem()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let cert = sim.tls_certificate_der().unwrap().to_vec();
    let addr = format!("127.0.0.1:{}", sim.base_url().port().unwrap());
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();

    // h2 via ALPN.
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let tls = connector(&cert, &[b"h2", b"http/1.1"])
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let form = "username=demo&password=demo-password&action=auth&redirect=x";
    let req = Request::post(format!("{}login/", sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.version(), Version::HTTP_2);

    // http/1.1 via ALPN.
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let tls = connector(&cert, &[b"http/1.1"])
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("{}nothing", sim.base_url()))
        .header("host", addr.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.version(), Version::HTTP_11);
    let _ = resp.into_body().collect().await.unwrap();

    let rec = sim.requests();
    assert_eq!(rec.len(), 2);
    assert_eq!(
        (rec[0].endpoint, rec[0].version),
        (Endpoint::Login, Version::HTTP_2)
    );
    assert_eq!(
        (rec[1].endpoint, rec[1].version),
        (Endpoint::Other, Version::HTTP_11)
    );
    assert_ne!(rec[0].connection_id, rec[1].connection_id);
    sim.shutdown().await;
}

#[tokio::test]
async fn plain_http2_prior_knowledge_works_too() {
    let sim = Simulator::builder().start().await.unwrap();
    let addr = format!("127.0.0.1:{}", sim.base_url().port().unwrap());
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get(format!("{}nothing", sim.base_url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
    }
    let rec = sim.requests();
    assert_eq!(rec.len(), 3);
    assert!(rec.iter().all(|r| r.connection_id == rec[0].connection_id));
}

#[tokio::test]
async fn broken_bodies_are_broken_over_h2_too() {
    use bcfy_sim::{Fault, FaultPlan};
    let sim = Simulator::builder()
        .tls(true)
        .manual_clock(1_758_430_000)
        .calls_per_second(0.0)
        .faults(
            FaultPlan::none()
                .nth(Endpoint::Audio, 1, Fault::TruncatedBody)
                .nth(Endpoint::Audio, 2, Fault::ResetMidBody),
        )
        .start()
        .await
        .unwrap();
    sim.ingest(1);
    let c = sim.ingested_calls().remove(0);
    let cert = sim.tls_certificate_der().unwrap().to_vec();
    let addr = format!("127.0.0.1:{}", sim.cdn_url().port().unwrap());
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let tls = connector(&cert, &[b"h2"]).connect(name, tcp).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let url = format!(
        "{}{}/{}/{}.m4a",
        sim.cdn_url(),
        c.hash.clone().unwrap(),
        c.node,
        c.filename
    );
    for _ in 0..2 {
        let resp = send
            .send_request(
                Request::get(url.as_str())
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        let got = resp.into_body().collect().await.map(|b| b.to_bytes().len());
        assert!(
            got.as_ref().map_or(true, |n| (*n as u64) < c.audio_len),
            "broken body must not look complete: {got:?}"
        );
    }
    let resp = send
        .send_request(
            Request::get(url.as_str())
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes().len() as u64,
        c.audio_len
    );
}
