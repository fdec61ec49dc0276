//! gzip, deflate and br bodies are decoded; a corrupt one is a `Decode` error.

mod common;

use std::io::Write;

use bcfy_transport::{Request, Transport, TransportErrorKind};
use bytes::Bytes;
use common::{Mode, config, full, start};

fn payload() -> Vec<u8> {
    (0..30_000u32)
        .flat_map(|i| format!("call {i};").into_bytes())
        .collect()
}

fn encode(encoding: &str, data: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2).
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).unwrap();
            }
            out
        }
        other => panic!("unknown encoding {other}"),
    }
}

async fn server_for(encoding: &'static str, body: Vec<u8>) -> common::Server {
    let body = Bytes::from(body);
    start(Mode::TlsH2, move |seen| {
        let body = body.clone();
        async move {
            // The server only encodes what the client said it accepts.
            let accepted = seen.header("accept-encoding").unwrap_or("").to_owned();
            assert!(accepted.contains(encoding), "client accepts {accepted}");
            let mut r = http::Response::new(full(body));
            r.headers_mut()
                .insert("content-encoding", encoding.parse().unwrap());
            r
        }
    })
    .await
}

#[tokio::test]
async fn each_encoding_decodes() {
    let data = payload();
    for encoding in ["gzip", "deflate", "br"] {
        let encoded = encode(encoding, &data);
        assert!(
            encoded.len() < data.len() / 4,
            "{encoding} actually compresses"
        );
        let server = server_for(encoding, encoded).await;
        let t = server.client(config());
        let resp = t.send(Request::get(server.url("/z"))).await.unwrap();
        assert!(
            resp.headers().get("content-encoding").is_none(),
            "{encoding}: header removed"
        );
        let body = resp.bytes().await.unwrap();
        assert_eq!(body.len(), data.len(), "{encoding}");
        assert!(body == data, "{encoding}: body differs");
    }
}

#[tokio::test]
async fn decoded_bodies_stream_in_chunks() {
    use futures::StreamExt;
    let data = payload();
    let server = server_for("gzip", encode("gzip", &data)).await;
    let t = server.client(config());
    let resp = t.send(Request::get(server.url("/z"))).await.unwrap();
    let mut chunks = resp.into_chunks(8192);
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while let Some(c) = chunks.next().await {
        let c = c.unwrap();
        sizes.push(c.len());
        got.extend_from_slice(&c);
    }
    assert!(got == data);
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 8192),
        "full chunks but the last"
    );
}

#[tokio::test]
async fn a_corrupt_body_is_a_decode_error() {
    let mut bad = encode("gzip", &payload());
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let server = server_for("gzip", bad).await;
    let t = server.client(config());
    let resp = t.send(Request::get(server.url("/z"))).await.unwrap();
    let err = resp.bytes().await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Decode, "{err}");
}
