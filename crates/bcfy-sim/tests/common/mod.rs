//! A tiny HTTP client for the simulator's own tests (127.0.0.1 only).
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub version: Version,
    /// `Err` when the body broke off (reset, short body).
    pub body: Result<Bytes, String>,
}

impl Resp {
    pub fn bytes(&self) -> &Bytes {
        self.body.as_ref().expect("complete body")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.bytes()).expect("JSON body")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new() -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        let resp = self.client.request(req).await.expect("response headers");
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .map_err(|e| format!("{e:?}"));
        Resp {
            status: parts.status,
            headers: parts.headers,
            version: parts.version,
            body,
        }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut b = Request::get(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::new(Bytes::new())).unwrap()).await
    }

    pub async fn post_form(&self, url: &str, form: String, headers: &[(&str, &str)]) -> Resp {
        let mut b = Request::post(url).header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Full::new(Bytes::from(form))).unwrap())
            .await
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn url(base: &url::Url, path: &str) -> String {
    base.join(path).unwrap().to_string()
}

/// Logs in as demo/demo-password and returns the `bcfyuser1` token.
pub async fn login(http: &Http, sim: &bcfy_sim::SimHandle) -> String {
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
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("bcfyuser1="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .expect("bcfyuser1 cookie")
}

/// One live-calls poll for `groups` from `pos`.
pub async fn poll(
    http: &Http,
    sim: &bcfy_sim::SimHandle,
    token: &str,
    groups: &[&str],
    pos: &str,
    init: bool,
) -> Resp {
    let mut pairs: Vec<(&str, &str)> = groups.iter().map(|g| ("groups[]", *g)).collect();
    pairs.extend([
        ("pos", pos),
        ("doInit", if init { "1" } else { "0" }),
        ("systemId", "0"),
        ("sid", "0"),
        ("sessionKey", "0a1b2c3d-beef"),
    ]);
    let cookie = format!("bcfyuser1={token}");
    http.post_form(
        &url(&sim.base_url(), "/calls/apis/live-calls"),
        form(&pairs),
        &[("cookie", &cookie), ("x-requested-with", "XMLHttpRequest")],
    )
    .await
}

/// The CDN URL of a served call (payload-style).
pub fn audio_url(sim: &bcfy_sim::SimHandle, call: &serde_json::Value) -> String {
    let node = call["systemId"].as_u64().unwrap();
    let file = call["filename"].as_str().unwrap();
    let enc = call["enc"].as_str().unwrap();
    match call.get("hash").and_then(|h| h.as_str()) {
        Some(h) => url(&sim.cdn_url(), &format!("/{h}/{node}/{file}.{enc}")),
        None => url(&sim.cdn_url(), &format!("/{node}/{file}.{enc}")),
    }
}

/// The client's call id for a payload object.
pub fn call_id(call: &serde_json::Value) -> String {
    let node = call["systemId"].as_u64().unwrap();
    let file = call["filename"].as_str().unwrap();
    match call.get("hash").and_then(|h| h.as_str()) {
        Some(h) => format!("{node}-{file}-{h}"),
        None => format!("{node}-{file}"),
    }
}

/// A multipart body for `/v1/audio/transcriptions`.
pub fn multipart(file: &[u8], fields: &[(&str, &str)]) -> (String, Bytes) {
    let boundary = "----bcfysimboundary7";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"call.m4a\"\r\nContent-Type: audio/mp4\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={boundary}"),
        Bytes::from(body),
    )
}

pub async fn transcribe(
    http: &Http,
    sim: &bcfy_sim::SimHandle,
    key: &str,
    file: &[u8],
    format: &str,
) -> Resp {
    let (ct, body) = multipart(
        file,
        &[
            ("model", "whisper-1"),
            ("language", "en"),
            ("response_format", format),
        ],
    );
    let req = Request::post(format!("{}/audio/transcriptions", sim.whisper_url()))
        .header("content-type", ct)
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(body))
        .unwrap();
    http.send(req).await
}
