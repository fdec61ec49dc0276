//! `cargo xtask contract --live`: a short, polite, read-only session against the real service
//! (one login, at most three polls at least 10 s apart, one archive block, one audio file,
//! logout), checked against the same contract as the simulator runs. `--record DIR` saves the
//! answers as new fixtures with tokens, cookies and account data scrubbed.
//!
//! The real service cannot be observed from its side, so requests are recorded on ours: a
//! `Transport` decorator sees each request before the transport sends it and adds what the
//! transport adds on the wire (the header template and the session cookie, the same
//! `HeaderTemplate` the transport applies).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bcfy::archive::{ArchiveClient, MemoryCache};
use bcfy::audio::{AudioConsumer, AudioOutcome};
use bcfy::auth::{AuthManager, CredentialSource, Credentials};
use bcfy::live::LiveCallProducer;
use bcfy::proto::{
    AudioConfig, GroupId, LiveCallsResponse, LiveProducerConfig, Subscription, TimeBlock,
    TransportConfig,
};
use bcfy::transport::{
    Body, CookiePolicy, HeaderTemplate, HttpTransport, Request, Response, SessionSlot,
    SharedTransport, Transport, TransportError, http,
};
use url::Url;

use crate::contract::{Host, Observed};

/// Where and what the live session talks to.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The site (default Broadcastify's).
    pub site: Url,
    /// The calls CDN.
    pub cdn: Url,
    /// The talkgroup polled.
    pub group: GroupId,
    /// Seconds between polls (never below 10).
    pub poll_interval: Duration,
    /// Save scrubbed answers here.
    pub record: Option<PathBuf>,
}

/// What the session did.
#[derive(Debug, Default)]
pub struct LiveSummary {
    /// Live-calls polls made.
    pub polls: usize,
    /// Calls received.
    pub calls: usize,
    /// Whether one audio file was downloaded.
    pub audio: bool,
    /// The archive fetch's outcome (archives need a premium account).
    pub archive: String,
    /// Files written by `--record`.
    pub recorded: Vec<PathBuf>,
}

/// Replaces secrets and account data in a recorded answer.
#[derive(Debug, Clone)]
pub struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    /// A scrubber for these exact secret strings (username, password, tokens).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 3).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// Adds a secret learned during the session (a session token).
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 3 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Scrubs a body: JSON bodies have account-looking keys blanked and every string
    /// scrubbed; any other text has cookies, bearer keys and e-mail addresses replaced.
    pub fn scrub(&self, body: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(mut v) => {
                self.scrub_value(&mut v);
                serde_json::to_vec_pretty(&v).unwrap_or_default()
            }
            Err(_) => self.scrub_text(&String::from_utf8_lossy(body)).into_bytes(),
        }
    }

    fn scrub_value(&self, v: &mut serde_json::Value) {
        const ACCOUNT_KEYS: [&str; 8] = [
            "username", "user", "email", "uid", "userid", "user_id", "account", "password",
        ];
        match v {
            serde_json::Value::String(s) => *s = self.scrub_text(s),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.scrub_value(x)),
            serde_json::Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if ACCOUNT_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                        *x = serde_json::Value::String("[scrubbed]".into());
                    } else {
                        self.scrub_value(x);
                    }
                }
            }
            _ => {}
        }
    }

    /// Scrubs free text.
    pub fn scrub_text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "[scrubbed]");
        }
        out = replace_after(&out, "bcfyuser1=", |c| {
            c == ';' || c.is_whitespace() || c == '"'
        });
        out = replace_after(&out, "Bearer ", |c| c.is_whitespace() || c == '"');
        scrub_emails(&out)
    }
}

/// Replaces the value after each `marker` up to a char matching `end`.
fn replace_after(text: &str, marker: &str, end: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        let after = &rest[i + marker.len()..];
        let stop = after.find(&end).unwrap_or(after.len());
        out.push_str("[scrubbed]");
        rest = &after[stop..];
    }
    out.push_str(rest);
    out
}

fn scrub_emails(text: &str) -> String {
    let bytes = text.as_bytes();
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let domain = |b: u8| b.is_ascii_alphanumeric() || b".-".contains(&b);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices('@') {
        if at < copied {
            continue;
        }
        let mut start = at;
        while start > copied && local(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && domain(bytes[end]) {
            end += 1;
        }
        let host = text[at + 1..end].trim_end_matches('.');
        if start < at && host.contains('.') {
            out.push_str(&text[copied..start]);
            out.push_str("[scrubbed]");
            copied = at + 1 + host.len();
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// A `Transport` that records what goes on the wire and, optionally, saves scrubbed answers.
#[derive(Debug)]
pub struct RecordingTransport {
    inner: SharedTransport,
    template: HeaderTemplate,
    site: (String, Option<u16>),
    cdn: (String, Option<u16>),
    started: Instant,
    log: Mutex<Vec<Observed>>,
    record: Option<PathBuf>,
    scrubber: Mutex<Scrubber>,
    recorded: Mutex<Vec<PathBuf>>,
}

impl RecordingTransport {
    /// Wraps `inner`; `config` must be the one `inner` was built with.
    pub fn new(
        inner: SharedTransport,
        config: &TransportConfig,
        site: &Url,
        cdn: &Url,
        record: Option<PathBuf>,
        scrubber: Scrubber,
    ) -> Result<Self, String> {
        Ok(Self {
            inner,
            template: HeaderTemplate::new(config).map_err(|e| e.to_string())?,
            site: (
                site.host_str().unwrap_or("").to_owned(),
                site.port_or_known_default(),
            ),
            cdn: (
                cdn.host_str().unwrap_or("").to_owned(),
                cdn.port_or_known_default(),
            ),
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
            record,
            scrubber: Mutex::new(scrubber),
            recorded: Mutex::new(Vec::new()),
        })
    }

    /// The requests so far.
    pub fn log(&self) -> Vec<Observed> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Polls recorded so far.
    pub fn polls(&self) -> usize {
        self.log()
            .iter()
            .filter(|r| r.path.ends_with("/calls/apis/live-calls"))
            .count()
    }

    fn host_of(&self, url: &Url) -> Host {
        let here = (url.host_str().unwrap_or(""), url.port_or_known_default());
        if here == (self.cdn.0.as_str(), self.cdn.1) {
            Host::Cdn
        } else if here == (self.site.0.as_str(), self.site.1) && !url.path().starts_with("/v1/") {
            Host::Site
        } else {
            Host::Whisper
        }
    }

    fn save(&self, path: &str, status: u16, body: &[u8]) {
        let Some(dir) = &self.record else { return };
        let Ok(mut names) = self.recorded.lock() else {
            return;
        };
        let stem = path.trim_matches('/').replace(['/', '.'], "_");
        let is_audio = std::path::Path::new(path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("m4a") || e.eq_ignore_ascii_case("mp3"));
        let (file, bytes) = if is_audio {
            (
                dir.join(format!("live-{:02}-{stem}", names.len())),
                body.to_vec(),
            )
        } else {
            let scrubbed = self
                .scrubber
                .lock()
                .map(|s| s.scrub(body))
                .unwrap_or_default();
            (
                dir.join(format!("live-{:02}-{stem}-{status}.json", names.len())),
                scrubbed,
            )
        };
        if std::fs::write(&file, bytes).is_ok() {
            names.push(file);
        }
    }
}

#[async_trait::async_trait]
impl Transport for RecordingTransport {
    async fn send(&self, req: Request) -> Result<Response, TransportError> {
        let start = self.started.elapsed().as_secs_f64();
        let url = req.url().clone();
        let host = self.host_of(&url);
        let mut headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        for (k, v) in self.template.headers() {
            if k == http::header::ACCEPT && req.headers().contains_key(http::header::ACCEPT) {
                continue;
            }
            headers.retain(|(n, _)| n != k.as_str());
            headers.push((
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
        if req.cookie_policy() == CookiePolicy::Session
            && let Some(token) = self.inner.session().get()
        {
            if let Ok(mut s) = self.scrubber.lock() {
                s.add(token.expose_secret());
            }
            headers.push((
                "cookie".into(),
                format!("bcfyuser1={}", token.expose_secret()),
            ));
        }
        let is_form = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| {
                v.as_bytes()
                    .starts_with(b"application/x-www-form-urlencoded")
            });
        let form = if is_form {
            url::form_urlencoded::parse(req.body_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        } else {
            Vec::new()
        };
        let query = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let method = req.method().as_str().to_owned();
        let path = url.path().to_owned();
        let result = self.inner.send(req).await;
        let (status, retry_after, logged_out, version, out) = match result {
            Ok(resp) => {
                let (status, version, resp_headers, body) = resp.into_parts();
                let bytes = Response::new(status, resp_headers.clone(), body)
                    .bytes()
                    .await;
                let retry_after = resp_headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok());
                match bytes {
                    Ok(bytes) => {
                        let logged_out = bcfy::auth::is_logged_out(status, &resp_headers)
                            || (path.ends_with("/live-calls")
                                && LiveCallsResponse::from_slice(&bytes)
                                    .err()
                                    .is_some_and(|e| e.is_logged_out()));
                        self.save(&path, status.as_u16(), &bytes);
                        let rebuilt = Response::new(status, resp_headers, Body::from_bytes(bytes))
                            .with_version(version);
                        (
                            status.as_u16(),
                            retry_after,
                            logged_out,
                            version,
                            Ok(rebuilt),
                        )
                    }
                    Err(e) => (status.as_u16(), retry_after, false, version, Err(e)),
                }
            }
            Err(e) => {
                let status = e.status().map_or(0, |s| s.as_u16());
                let retry_after = match e.retry_hint() {
                    bcfy::proto::RetryHint::After(d) => Some(d.as_secs_f64()),
                    _ => None,
                };
                (status, retry_after, false, http::Version::HTTP_11, Err(e))
            }
        };
        let end = self.started.elapsed().as_secs_f64();
        if let Ok(mut log) = self.log.lock() {
            log.push(Observed {
                host,
                start,
                end,
                method,
                path,
                query,
                form,
                headers,
                version: format!("{version:?}"),
                status,
                retry_after,
                logged_out_answer: logged_out,
            });
        }
        out
    }

    fn session(&self) -> &SessionSlot {
        self.inner.session()
    }
}

/// Runs the live session. Returns `Ok(None)` (skipped) without `BCFY_USERNAME` and
/// `BCFY_PASSWORD`.
pub fn run(opts: &LiveOptions) -> Result<Option<(Vec<Observed>, LiveSummary)>, String> {
    let (Ok(username), Ok(password)) = (
        std::env::var("BCFY_USERNAME"),
        std::env::var("BCFY_PASSWORD"),
    ) else {
        return Ok(None);
    };
    if std::env::var_os("CI").is_some() {
        return Err("--live never runs in CI".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(session(opts, username, password)).map(Some)
}

/// The live session itself, against any Broadcastify-compatible `opts.site` (the simulator in
/// this module's test).
pub async fn session_with(
    opts: &LiveOptions,
    username: String,
    password: String,
) -> Result<(Vec<Observed>, LiveSummary), String> {
    session(opts, username, password).await
}

// The proto configs are `#[non_exhaustive]`: they can only be built from `Default`.
#[allow(clippy::field_reassign_with_default)]
async fn session(
    opts: &LiveOptions,
    username: String,
    password: String,
) -> Result<(Vec<Observed>, LiveSummary), String> {
    if let Some(dir) = &opts.record {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let config = TransportConfig::default();
    let inner = HttpTransport::builder()
        .config(config.clone())
        .crypto_provider(Arc::new(rustls_provider()))
        .build()
        .map_err(|e| format!("transport: {e}"))?;
    let scrubber = Scrubber::new([username.clone(), password.clone()]);
    let recording = Arc::new(RecordingTransport::new(
        Arc::new(inner),
        &config,
        &opts.site,
        &opts.cdn,
        opts.record.clone(),
        scrubber,
    )?);
    let transport: SharedTransport = recording.clone();
    let auth = Arc::new(AuthManager::new(
        transport.clone(),
        opts.site.clone(),
        CredentialSource::Credentials(Credentials::new(username, password)),
    ));
    auth.ensure_session()
        .await
        .map_err(|e| format!("login: {e}"))?;

    let mut live = LiveProducerConfig::default();
    live.poll_interval = opts.poll_interval.max(Duration::from_secs(10));
    live.jitter_ratio = 0.0;
    live.max_retry_attempts = Some(1);
    let producer = Arc::new(
        LiveCallProducer::new(
            transport.clone(),
            auth.clone(),
            opts.site.clone(),
            Subscription::talkgroups([opts.group]).map_err(|e| e.to_string())?,
            live,
        )
        .map_err(|e| e.to_string())?,
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let task = tokio::spawn({
        let producer = producer.clone();
        async move { producer.run(tx).await }
    });
    // At most three polls: stop as soon as the third one is on the wire.
    let deadline = Instant::now() + Duration::from_secs(90);
    while recording.polls() < 3 && Instant::now() < deadline && !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producer.stop();
    let _ = task.await;
    let mut calls = Vec::new();
    while let Ok(env) = rx.try_recv() {
        calls.push(env.call);
    }
    let mut summary = LiveSummary {
        polls: recording.polls(),
        calls: calls.len(),
        ..LiveSummary::default()
    };
    if let Some(call) = calls.last().cloned() {
        let consumer =
            AudioConsumer::new(transport.clone(), opts.cdn.clone(), AudioConfig::default())
                .map_err(|e| e.to_string())?
                .with_site(&opts.site);
        summary.audio = matches!(consumer.download(call).await, AudioOutcome::Ok(_));
    }
    let archive = ArchiveClient::new(
        transport.clone(),
        auth.clone(),
        opts.site.clone(),
        Arc::new(MemoryCache::default()),
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    summary.archive = match archive
        .fetch(opts.group, TimeBlock::containing(now - 3600))
        .await
    {
        Ok(r) => format!("{} calls", r.calls.len()),
        Err(e) => format!("failed: {e}"),
    };
    auth.logout().await.map_err(|e| format!("logout: {e}"))?;
    summary.recorded = recording
        .recorded
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    Ok((recording.log(), summary))
}

fn rustls_provider() -> bcfy::transport::rustls::crypto::CryptoProvider {
    bcfy::transport::rustls::crypto::aws_lc_rs::default_provider()
}

/// Default options for the real service.
pub fn default_options(group: GroupId, record: Option<&Path>) -> Result<LiveOptions, String> {
    Ok(LiveOptions {
        site: Url::parse("https://www.broadcastify.com").map_err(|e| e.to_string())?,
        cdn: Url::parse("https://calls.broadcastify.com").map_err(|e| e.to_string())?,
        group,
        poll_interval: Duration::from_secs(10),
        record: record.map(Path::to_path_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole live path (recording transport, three polls at least 10 s apart, audio,
    /// archive, logout, scrubbed recordings) against the simulator, checked by the contract.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_live_session_keeps_the_contract_and_records_scrubbed_answers() {
        let sim = bcfy_sim::Simulator::builder()
            .seed(5)
            .groups([(4290, 512)])
            .calls_per_second(1.0)
            .user("live-user", "live-password-77")
            .start()
            .await
            .expect("simulator");
        let dir = std::env::temp_dir().join(format!("bcfy-live-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = LiveOptions {
            site: sim.base_url(),
            cdn: sim.cdn_url(),
            group: "4290-512".parse().expect("group"),
            poll_interval: Duration::from_secs(10),
            record: Some(dir.clone()),
        };
        let (log, summary) = session_with(&opts, "live-user".into(), "live-password-77".into())
            .await
            .expect("session");
        let tokens: Vec<String> = sim
            .requests()
            .iter()
            .filter_map(|r| r.cookie.clone())
            .collect();
        sim.shutdown().await;
        assert_eq!(summary.polls, 3, "{summary:?}");
        assert!(summary.audio, "{summary:?}");
        let contract = crate::contract::Contract::load().expect("contract");
        let violations = contract.check_requests(
            &log,
            crate::contract::CheckOptions {
                min_poll_interval_secs: None,
            },
        );
        assert!(violations.is_empty(), "{violations:#?}");
        assert!(log.iter().any(|r| r.path == "/login/"));
        assert!(log.iter().any(|r| r.path == "/account/"));
        assert!(!summary.recorded.is_empty());
        for file in &summary.recorded {
            let text =
                String::from_utf8_lossy(&std::fs::read(file).expect("recorded file")).into_owned();
            assert!(!text.contains("live-password-77"), "{}", file.display());
            for t in &tokens {
                assert!(!text.contains(t.as_str()), "token in {}", file.display());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_scrubber_removes_tokens_credentials_and_account_data() {
        let mut s = Scrubber::new(["alice-user".to_owned(), "hunter2-password".to_owned()]);
        s.add("tok3n-value-123");
        let body = br#"{"calls":[{"descr":"login alice-user","ts":1}],
            "user":{"name":"x"},"email":"alice@example.org",
            "note":"Set-Cookie: bcfyuser1=abcdef0123; path=/ and Bearer sk-live-999 and tok3n-value-123",
            "nested":{"Username":"alice-user","pw":"hunter2-password","contact":"mail alice@example.org now"}}"#;
        let out = String::from_utf8(s.scrub(body)).expect("utf-8");
        for secret in [
            "alice-user",
            "hunter2-password",
            "tok3n-value-123",
            "abcdef0123",
            "sk-live-999",
            "alice@example.org",
        ] {
            assert!(!out.contains(secret), "{secret} survived: {out}");
        }
        // What is not a secret survives, so the fixture stays useful.
        let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(v["calls"][0]["ts"], 1);
        assert_eq!(v["user"], "[scrubbed]");
        assert!(out.contains("bcfyuser1=[scrubbed]; path=/"));
        // Non-JSON bodies are scrubbed as text.
        let text = s.scrub(b"<html>alice-user bcfyuser1=zzz; alice@example.org</html>");
        let text = String::from_utf8(text).expect("utf-8");
        assert_eq!(
            text,
            "<html>[scrubbed] bcfyuser1=[scrubbed]; [scrubbed]</html>"
        );
    }
}
