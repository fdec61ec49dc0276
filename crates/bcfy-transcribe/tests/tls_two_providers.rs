//! HTTPS in a binary that links both rustls crypto providers (this crate's dev-dependencies
//! enable rustls' `ring` and `aws-lc-rs` features), the configuration in which
//! `rustls::ClientConfig::builder()` panics for want of a process default.

mod common;

use std::sync::Arc;

use bcfy_transcribe::{OpenAiTranscriber, TranscribeRequest, Transcriber, TranscriptionErrorKind};
use bytes::Bytes;
use common::{Stub, call_id_of, echo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    // The server uses ring, the client aws-lc-rs by default: both providers really run.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert)
}

#[tokio::test]
async fn https_works_with_two_providers_linked() {
    // The hazard is real in this binary: the implicit builder cannot pick a provider.
    let implicit = std::panic::catch_unwind(rustls::ClientConfig::builder);
    assert!(
        implicit.is_err(),
        "both providers must be compiled in for this test to mean anything"
    );
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "nothing installed a default"
    );

    let (acceptor, cert) = tls_acceptor();
    let stub = Stub::start_tls(echo, acceptor).await;
    let endpoint = format!("https://localhost:{}/v1", stub.addr.port());

    // Default provider (aws-lc-rs), the test CA added to the webpki roots.
    let whisper = OpenAiTranscriber::builder(&stub.config())
        .endpoint(endpoint.clone())
        .add_root_certificate(cert.clone())
        .build()
        .unwrap();
    let request = TranscribeRequest::m4a(call_id_of(1), Bytes::from_static(b"over tls"));
    assert_eq!(
        whisper.transcribe(request.clone()).await.unwrap().text,
        "over tls"
    );

    // An explicitly chosen provider (ring), as the umbrella passes the transport's.
    let whisper = OpenAiTranscriber::builder(&stub.config())
        .endpoint(endpoint.clone())
        .add_root_certificate(cert)
        .crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build()
        .unwrap();
    assert_eq!(
        whisper.transcribe(request.clone()).await.unwrap().text,
        "over tls"
    );

    // Certificates are verified: without the test CA the handshake fails (a network error).
    let whisper = OpenAiTranscriber::builder(&stub.config())
        .endpoint(endpoint)
        .build()
        .unwrap();
    let error = whisper.transcribe(request).await.unwrap_err();
    assert_eq!(error.kind(), TranscriptionErrorKind::Network, "{error}");
    assert_eq!(
        stub.uploads().len(),
        2,
        "the untrusted server got no upload"
    );

    // A plain reqwest client also builds here: reqwest 0.13 passes a provider explicitly
    // (the process default, else aws-lc-rs) instead of calling `ClientConfig::builder()`.
    assert!(reqwest::Client::builder().build().is_ok());
}
