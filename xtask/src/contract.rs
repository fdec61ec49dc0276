//! The service contract (`contract/broadcastify.toml`) and its checker.
//!
//! The checker knows nothing of bcfy's crates: it takes what a server observed (requests with
//! their timing and the answer it gave) and reports every rule a request broke. That keeps it
//! usable for the simulator's request log and for a recorded live session alike.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::Value;

/// The contract file, as written in `contract/broadcastify.toml`.
#[derive(Debug, Deserialize)]
pub struct Contract {
    browser: BTreeMap<String, String>,
    forbidden_headers: Forbidden,
    #[serde(rename = "endpoint")]
    endpoints: Vec<Endpoint>,
    pacing: Pacing,
    responses: Responses,
}

#[derive(Debug, Deserialize)]
struct Forbidden {
    names: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Endpoint {
    name: String,
    host: String,
    method: String,
    path: Option<String>,
    path_pattern: Option<String>,
    path_suffix: Option<String>,
    content_type: Option<String>,
    content_type_prefix: Option<String>,
    cookie: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    form: BTreeMap<String, String>,
    #[serde(default)]
    optional_form: BTreeMap<String, String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[allow(clippy::struct_field_names)]
struct Pacing {
    min_poll_interval_secs: f64,
    do_init_first_only: bool,
    max_concurrent_logins: usize,
    login_burst_max: usize,
    login_burst_window_secs: f64,
    honour_retry_after: bool,
    no_dead_token_reuse: bool,
    archive_block_secs: i64,
}

#[derive(Debug, Deserialize)]
struct Responses {
    #[serde(rename = "live-calls")]
    live_calls: TopLevel,
    call: CallShape,
    archive: TopLevel,
}

#[derive(Debug, Deserialize)]
struct TopLevel {
    required: Vec<String>,
    optional: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct CallShape {
    required: BTreeMap<String, String>,
    optional: BTreeMap<String, String>,
}

/// Which service a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// The site (`www.broadcastify.com`).
    Site,
    /// The calls CDN.
    Cdn,
    /// The OpenAI-compatible transcription service.
    Whisper,
}

impl Host {
    fn name(self) -> &'static str {
        match self {
            Host::Site => "site",
            Host::Cdn => "cdn",
            Host::Whisper => "whisper",
        }
    }
}

/// One request as the server saw it, with the answer it gave.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Which service received it.
    pub host: Host,
    /// Seconds since the start of the session when the request arrived.
    pub start: f64,
    /// Seconds since the start when the answer was complete (`start` when unknown).
    pub end: f64,
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Decoded form pairs (url-encoded bodies only).
    pub form: Vec<(String, String)>,
    /// Request headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// HTTP version as "HTTP/1.1" or "HTTP/2.0".
    pub version: String,
    /// Status of the answer.
    pub status: u16,
    /// `Retry-After` of the answer, in seconds, when it carried one.
    pub retry_after: Option<f64>,
    /// The answer said the session is gone (logged-out body, 401/403, redirect to login).
    pub logged_out_answer: bool,
}

impl Observed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn form_value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `bcfyuser1` token the request carried, if any.
    fn token(&self) -> Option<&str> {
        let cookie = self.header("cookie")?;
        cookie
            .split(';')
            .map(str::trim)
            .find_map(|c| c.strip_prefix("bcfyuser1="))
    }

    fn describe(&self, index: usize) -> String {
        format!(
            "request #{index} {} {} ({}, t={:.3}s)",
            self.method,
            self.path,
            self.host.name(),
            self.start
        )
    }
}

/// How long after a gating answer (a Retry-After, a logged-out answer) a request may still
/// arrive without the client having seen that answer, in seconds: it may have been dispatched
/// before (the soak saw audio requests that had passed the gate reach the server 0.4–0.7 s
/// later, after waiting for a pooled connection).
const RETRY_AFTER_GRACE: f64 = 1.0;

/// A broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which request or fixture.
    pub subject: String,
    /// The rule's name.
    pub rule: String,
    /// What was sent or found.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: [{}] {}", self.subject, self.rule, self.detail)
    }
}

/// Options of one consumer-side check.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Overrides the contract's minimum poll interval (a contract run may poll on a shorter,
    /// simulator-only cadence; a live run never goes below the contract's).
    pub min_poll_interval_secs: Option<f64>,
}

impl Contract {
    /// Parses the contract text.
    pub fn parse(text: &str) -> Result<Contract, String> {
        toml::from_str(text).map_err(|e| format!("contract/broadcastify.toml: {e}"))
    }

    /// Loads the repository's contract.
    pub fn load() -> Result<Contract, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../contract/broadcastify.toml");
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Contract::parse(&text)
    }

    fn endpoint_for(&self, r: &Observed) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| {
            e.host == r.host.name()
                && e.method.eq_ignore_ascii_case(&r.method)
                && match (&e.path, &e.path_pattern, &e.path_suffix) {
                    (Some(p), _, _) => *p == r.path,
                    (None, Some(pat), _) if pat == "audio" => is_audio_path(&r.path),
                    (None, None, Some(suffix)) => r.path.ends_with(suffix.as_str()),
                    _ => false,
                }
        })
    }

    /// Checks a request log against every request rule. Requests must be in arrival order.
    pub fn check_requests(&self, log: &[Observed], opts: CheckOptions) -> Vec<Violation> {
        let mut out = Vec::new();
        for (i, r) in log.iter().enumerate() {
            self.check_one(i, r, &mut out);
        }
        self.check_pacing(log, opts, &mut out);
        out
    }

    fn check_one(&self, i: usize, r: &Observed, out: &mut Vec<Violation>) {
        let subject = r.describe(i);
        let mut fail = |rule: &str, detail: String| {
            out.push(Violation {
                subject: subject.clone(),
                rule: rule.to_owned(),
                detail,
            });
        };
        let Some(ep) = self.endpoint_for(r) else {
            fail(
                "known-endpoint",
                "no endpoint of the contract has this method and path".into(),
            );
            return;
        };
        // Browser template: every header on site and CDN requests. The transcription service
        // is not Broadcastify and has its own client: the template is not required there.
        for (name, format) in &self.browser {
            if r.host == Host::Whisper {
                continue;
            }
            if name == "connection" && r.version.starts_with("HTTP/2") {
                continue;
            }
            match r.header(name) {
                None => fail("browser-headers", format!("missing header `{name}`")),
                Some(v) => {
                    if let Err(e) = check_format(format, v) {
                        fail("browser-headers", format!("header `{name}`: {e}"));
                    }
                }
            }
        }
        if r.host != Host::Whisper {
            for name in &self.forbidden_headers.names {
                if r.header(name).is_some() {
                    fail(
                        "forbidden-headers",
                        format!("header `{name}` must not go to Broadcastify"),
                    );
                }
            }
        }
        for (name, format) in &ep.headers {
            match r.header(name) {
                None => fail("endpoint-headers", format!("{}: missing `{name}`", ep.name)),
                Some(v) => {
                    if let Err(e) = check_format(format, v) {
                        fail("endpoint-headers", format!("{}: `{name}` {e}", ep.name));
                    }
                }
            }
        }
        if let Some(ct) = &ep.content_type {
            let got = r.header("content-type").unwrap_or("");
            if !got.starts_with(ct.as_str()) {
                fail(
                    "content-type",
                    format!("{}: expected `{ct}`, got `{got}`", ep.name),
                );
            }
        }
        if let Some(prefix) = &ep.content_type_prefix {
            let got = r.header("content-type").unwrap_or("");
            if !got.starts_with(prefix.as_str()) {
                fail(
                    "content-type",
                    format!("{}: expected `{prefix}…`, got `{got}`", ep.name),
                );
            }
        }
        match ep.cookie.as_deref() {
            Some("required") if r.token().is_none() => {
                fail("cookie", format!("{}: no bcfyuser1 cookie", ep.name));
            }
            Some("forbidden") if r.token().is_some() => {
                fail(
                    "cookie",
                    format!("{}: must not carry a session cookie", ep.name),
                );
            }
            _ => {}
        }
        for (name, format) in &ep.form {
            match r.form_value(name) {
                None => fail("form", format!("{}: missing field `{name}`", ep.name)),
                Some(v) => {
                    if let Err(e) = check_format(format, v) {
                        // The password's value never goes into a report.
                        let e = if name == "password" {
                            format!("does not match {format}")
                        } else {
                            e
                        };
                        fail("form", format!("{}: field `{name}` {e}", ep.name));
                    }
                }
            }
        }
        for (name, value) in &r.form {
            if let Some(format) = ep.optional_form.get(name) {
                if let Err(e) = check_format(format, value) {
                    fail("form", format!("{}: field `{name}` {e}", ep.name));
                }
            } else if !ep.form.contains_key(name) && !ep.form.is_empty() {
                fail("form", format!("{}: unexpected field `{name}`", ep.name));
            }
        }
        for (name, format) in &ep.query {
            match r.query_value(name) {
                None => fail("query", format!("{}: missing parameter `{name}`", ep.name)),
                Some(v) => {
                    if let Err(e) = check_format(format, v) {
                        fail("query", format!("{}: parameter `{name}` {e}", ep.name));
                    }
                }
            }
        }
        if ep.name == "live-calls" {
            check_subscription_mode(r, &mut fail);
        }
        if ep.name == "archive"
            && let Some(s) = r.query_value("s").and_then(|s| s.parse::<i64>().ok())
            && s.rem_euclid(self.pacing.archive_block_secs) != 0
        {
            fail(
                "archive-floored",
                format!(
                    "s={s} is not floored to {} s (expected {})",
                    self.pacing.archive_block_secs,
                    s - s.rem_euclid(self.pacing.archive_block_secs)
                ),
            );
        }
    }

    fn check_pacing(&self, log: &[Observed], opts: CheckOptions, out: &mut Vec<Violation>) {
        let p = &self.pacing;
        let min_poll = opts
            .min_poll_interval_secs
            .unwrap_or(p.min_poll_interval_secs);
        let mut last_poll: HashMap<String, (usize, f64)> = HashMap::new();
        let mut seen_keys: HashSet<String> = HashSet::new();
        let mut logins: Vec<(usize, f64, f64)> = Vec::new();
        let mut gates: HashMap<Host, (usize, f64, f64)> = HashMap::new();
        let mut dead: HashMap<String, (usize, f64)> = HashMap::new();
        for (i, r) in log.iter().enumerate() {
            let subject = r.describe(i);
            let mut fail = |rule: &str, detail: String| {
                out.push(Violation {
                    subject: subject.clone(),
                    rule: rule.to_owned(),
                    detail,
                });
            };
            let name = self.endpoint_for(r).map_or("", |e| e.name.as_str());
            // A request that arrived within RETRY_AFTER_GRACE of the gating answer may have
            // been sent before the client could read that answer: only later ones count.
            if p.honour_retry_after
                && let Some(&(j, answered, until)) = gates.get(&r.host)
                && r.start > answered + RETRY_AFTER_GRACE
                && r.start + 1e-3 < until
            {
                fail(
                    "retry-after",
                    format!(
                        "sent {:.3}s before the Retry-After of request #{j} had passed",
                        until - r.start
                    ),
                );
            }
            if p.no_dead_token_reuse
                && let Some(tok) = r.token()
                && let Some(&(j, ended)) = dead.get(tok)
                && r.start > ended + RETRY_AFTER_GRACE
                && name != "logout"
            {
                fail(
                    "dead-token",
                    format!("reuses the session token that request #{j} ended"),
                );
            }
            match name {
                "live-calls" => {
                    let key = r.form_value("sessionKey").unwrap_or("").to_owned();
                    let init = r.form_value("doInit") == Some("1");
                    if p.do_init_first_only {
                        let first = seen_keys.insert(key.clone());
                        if init && !first {
                            fail("do-init", "doInit=1 on a sessionKey already used".into());
                        }
                        if !init && first {
                            fail(
                                "do-init",
                                "first poll of a sessionKey without doInit=1".into(),
                            );
                        }
                    }
                    if let Some(&(j, t)) = last_poll.get(&key) {
                        let gap = r.start - t;
                        // A retry after an error answer may come sooner (backoff starts at the
                        // configured initial backoff); only healthy cadence is bounded here.
                        let prev_ok = log[j].status < 400 && !log[j].logged_out_answer;
                        if prev_ok && gap + 1e-3 < min_poll {
                            fail(
                                "poll-interval",
                                format!(
                                    "{gap:.3}s after request #{j} on the same sessionKey (minimum {min_poll:.3}s)"
                                ),
                            );
                        }
                    }
                    last_poll.insert(key, (i, r.start));
                }
                "login" => {
                    let overlapping = logins
                        .iter()
                        .filter(|&&(_, s, e)| s <= r.start && r.start < e)
                        .count();
                    if overlapping + 1 > p.max_concurrent_logins {
                        fail(
                            "login-single-flight",
                            "a login started while another was in flight".into(),
                        );
                    }
                    let window = logins
                        .iter()
                        .filter(|&&(_, s, _)| r.start - s < p.login_burst_window_secs)
                        .count();
                    if window + 1 > p.login_burst_max {
                        fail(
                            "login-burst",
                            format!(
                                "{} logins within {:.0}s",
                                window + 1,
                                p.login_burst_window_secs
                            ),
                        );
                    }
                    logins.push((i, r.start, r.end.max(r.start)));
                }
                "logout" => {
                    if let Some(tok) = r.token() {
                        dead.insert(tok.to_owned(), (i, r.end.max(r.start)));
                    }
                }
                _ => {}
            }
            // Only the site speaks for the session: a 401/403 from the CDN or the
            // transcription service says nothing about the Broadcastify token.
            if r.logged_out_answer
                && r.host == Host::Site
                && let Some(tok) = r.token()
            {
                dead.entry(tok.to_owned())
                    .or_insert((i, r.end.max(r.start)));
            }
            if matches!(r.status, 429 | 503)
                && let Some(secs) = r.retry_after
            {
                let answered = r.end.max(r.start);
                gates.insert(r.host, (i, answered, answered + secs));
            }
        }
    }

    /// Checks one response body of `kind` ("live-calls" or "archive"). `strict` demands the
    /// exact JSON types of the real captures; otherwise the tolerated variants pass.
    pub fn check_response(
        &self,
        subject: &str,
        kind: &str,
        body: &Value,
        strict: bool,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut fail = |rule: &str, detail: String| {
            out.push(Violation {
                subject: subject.to_owned(),
                rule: rule.to_owned(),
                detail,
            });
        };
        let shape = match kind {
            "live-calls" => &self.responses.live_calls,
            "archive" => &self.responses.archive,
            other => {
                fail("response-kind", format!("unknown response kind `{other}`"));
                return out;
            }
        };
        let Some(obj) = body.as_object() else {
            fail("response-shape", "the body is not a JSON object".into());
            return out;
        };
        for key in &shape.required {
            if !obj.contains_key(key) {
                fail("response-shape", format!("missing top-level key `{key}`"));
            }
        }
        for key in obj.keys() {
            if !shape.required.contains(key) && !shape.optional.contains(key) {
                fail("response-shape", format!("unknown top-level key `{key}`"));
            }
        }
        if let Some(calls) = obj.get("calls") {
            let Some(calls) = calls.as_array() else {
                fail("response-shape", "`calls` is not an array".into());
                return out;
            };
            for (n, call) in calls.iter().enumerate() {
                let Some(c) = call.as_object() else {
                    fail("call-shape", format!("calls[{n}] is not an object"));
                    continue;
                };
                for (key, ty) in &self.responses.call.required {
                    match c.get(key) {
                        None => fail("call-shape", format!("calls[{n}] lacks `{key}`")),
                        Some(v) => {
                            if !type_ok(ty, v, strict) {
                                fail("call-shape", format!("calls[{n}].{key} is not {ty}: {v}"));
                            }
                        }
                    }
                }
                for (key, v) in c {
                    if let Some(ty) = self.responses.call.optional.get(key) {
                        if !type_ok(ty, v, strict) {
                            fail("call-shape", format!("calls[{n}].{key} is not {ty}: {v}"));
                        }
                    } else if strict && !self.responses.call.required.contains_key(key) {
                        fail("call-shape", format!("calls[{n}] has unknown key `{key}`"));
                    }
                }
                if strict {
                    check_call_semantics(n, c, &mut fail);
                }
            }
        }
        out
    }
}

/// Meaning the real captures always show: the group key, the filename's form, the hash.
fn check_call_semantics(
    n: usize,
    c: &serde_json::Map<String, Value>,
    fail: &mut impl FnMut(&str, String),
) {
    let int = |k: &str| c.get(k).and_then(Value::as_i64);
    if let (Some(id), Some(sid), Some(tg)) = (
        c.get("id").and_then(Value::as_str),
        int("sid"),
        int("call_tg"),
    ) && id != format!("{sid}-{tg}")
    {
        fail(
            "call-semantics",
            format!("calls[{n}].id `{id}` is not `{sid}-{tg}`"),
        );
    }
    if let (Some(f), Some(start), Some(tg)) = (
        c.get("filename").and_then(Value::as_str),
        int("meta_starttime"),
        int("call_tg"),
    ) && f != format!("{start}-{tg}")
    {
        fail(
            "call-semantics",
            format!("calls[{n}].filename `{f}` is not `{start}-{tg}`"),
        );
    }
    if let Some(h) = c.get("hash").and_then(Value::as_str)
        && !(h.len() == 8
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    {
        fail(
            "call-semantics",
            format!("calls[{n}].hash `{h}` is not 8 lowercase alphanumerics"),
        );
    }
    if let (Some(ts), Some(stop)) = (int("ts"), int("meta_stoptime"))
        && !(0..=120).contains(&(ts - stop))
    {
        fail(
            "call-semantics",
            format!("calls[{n}].ts {ts} is not shortly after meta_stoptime {stop}"),
        );
    }
}

fn type_ok(ty: &str, v: &Value, strict: bool) -> bool {
    let tolerant_num = |v: &Value| {
        !strict && (v.is_null() || v.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok()))
    };
    match ty {
        "string" => v.is_string() || (!strict && v.is_null()),
        "int" => v.is_i64() || v.is_u64() || tolerant_num(v),
        "number" => v.is_number() || tolerant_num(v),
        // Tolerated: a non-object `metadata` (kept as-is by the client).
        "object" => v.is_object() || !strict,
        _ => false,
    }
}

fn check_subscription_mode(r: &Observed, fail: &mut impl FnMut(&str, String)) {
    let groups = r.form.iter().filter(|(k, _)| k == "groups[]").count();
    let playlist = r.form_value("playlist_uuid").is_some();
    let sid = r.form_value("sid").unwrap_or("0") != "0";
    let node = r.form_value("systemId").unwrap_or("0") != "0";
    let modes =
        usize::from(groups > 0) + usize::from(playlist) + usize::from(sid) + usize::from(node);
    if modes != 1 {
        fail(
            "subscription-mode",
            format!(
                "exactly one of groups[] ({groups}), playlist_uuid, sid>0, systemId>0 must be set"
            ),
        );
    }
}

fn is_audio_path(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let (node, file) = match parts.as_slice() {
        [hash, node, file] if safe(hash) => (*node, *file),
        [node, file] => (*node, *file),
        _ => return false,
    };
    let Some((stem, enc)) = file.rsplit_once('.') else {
        return false;
    };
    !node.is_empty()
        && node.bytes().all(|b| b.is_ascii_digit())
        && safe(stem)
        && !enc.is_empty()
        && enc.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks `value` against a format of the contract.
fn check_format(format: &str, value: &str) -> Result<(), String> {
    check_format_inner(format, value).map_err(|shown| shown.replace(value, &redact(value)))
}

fn check_format_inner(format: &str, value: &str) -> Result<(), String> {
    let ok = if let Some(expected) = format.strip_prefix("eq:") {
        value == expected
    } else if let Some(options) = format.strip_prefix("oneof:") {
        options.split('|').any(|o| o == value)
    } else {
        match format {
            "any" => true,
            "nonempty" => !value.trim().is_empty(),
            "uint" => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
            "number" => value.parse::<f64>().is_ok_and(f64::is_finite),
            "group" => value.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            }),
            "session_key" => value.split_once('-').is_some_and(|(a, b)| {
                a.len() == 8
                    && b.len() == 4
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_hexdigit())
            }),
            "uuid" => {
                let parts: Vec<&str> = value.split('-').collect();
                parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
                    && parts
                        .iter()
                        .all(|p| p.bytes().all(|c| c.is_ascii_hexdigit()))
            }
            "url" => value.starts_with("https://") || value.starts_with("http://"),
            other => return Err(format!("unknown format `{other}` in the contract")),
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` does not match {format}", redact(value)))
    }
}

/// Keeps secrets out of reports: values that may be secrets are masked, long ones are cut.
fn redact(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    if lower.contains("bcfyuser1") || lower.starts_with("bearer ") {
        "[redacted]".to_owned()
    } else if value.len() > 80 {
        format!("{}…", &value[..value.floor_char_boundary(80)])
    } else {
        value.to_owned()
    }
}

/// Turns the simulator's request log into what the checker reads. Times are seconds since
/// `t0` (usually the first request's arrival).
pub fn from_sim(records: &[bcfy_sim::RecordedRequest]) -> Vec<Observed> {
    let Some(t0) = records.iter().map(|r| r.time).min() else {
        return Vec::new();
    };
    let secs = |t: std::time::SystemTime| t.duration_since(t0).map_or(0.0, |d| d.as_secs_f64());
    records
        .iter()
        .map(|r| {
            let host = match r.endpoint {
                bcfy_sim::Endpoint::Audio => Host::Cdn,
                bcfy_sim::Endpoint::Transcription => Host::Whisper,
                _ => Host::Site,
            };
            let query = r.query.as_deref().map_or_else(Vec::new, |q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            });
            let form = if host == Host::Whisper {
                Vec::new()
            } else {
                r.form.clone()
            };
            let headers = r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Observed {
                host,
                start: secs(r.time),
                end: secs(r.answered_at),
                method: r.method.as_str().to_owned(),
                path: r.path.clone(),
                query,
                form,
                headers,
                version: format!("{:?}", r.version),
                status: r.status.as_u16(),
                retry_after: r.retry_after,
                logged_out_answer: r.logged_out,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

    fn contract() -> Contract {
        Contract::load().expect("the repository's contract parses")
    }

    fn browser() -> Vec<(String, String)> {
        vec![
            ("user-agent".into(), UA.into()),
            ("accept".into(), "text/html,*/*;q=0.8".into()),
            ("accept-language".into(), "en-US,en;q=0.9".into()),
            ("accept-encoding".into(), "gzip, deflate, br".into()),
            ("connection".into(), "keep-alive".into()),
        ]
    }

    fn req(host: Host, t: f64, method: &str, path: &str) -> Observed {
        Observed {
            host,
            start: t,
            end: t + 0.01,
            method: method.into(),
            path: path.into(),
            query: vec![],
            form: vec![],
            headers: browser(),
            version: "HTTP/1.1".into(),
            status: 200,
            retry_after: None,
            logged_out_answer: false,
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
    }

    fn login(t: f64) -> Observed {
        let mut r = req(Host::Site, t, "POST", "/login/");
        r.headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        r.form = pairs(&[
            ("username", "demo"),
            ("password", "pw"),
            ("action", "auth"),
            ("redirect", "https://www.broadcastify.com"),
        ]);
        r.status = 302;
        r
    }

    fn with_cookie(mut r: Observed, token: &str) -> Observed {
        r.headers
            .push(("cookie".into(), format!("bcfyuser1={token}")));
        r
    }

    fn poll(t: f64, key: &str, init: bool) -> Observed {
        let mut r = req(Host::Site, t, "POST", "/calls/apis/live-calls");
        r.headers.extend(pairs(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-requested-with", "XMLHttpRequest"),
            ("origin", "https://www.broadcastify.com"),
            ("referer", "https://www.broadcastify.com/calls/"),
        ]));
        r.form = pairs(&[
            ("groups[]", "4290-512"),
            ("groups[]", "4290-1536"),
            ("pos", "1758428000"),
            ("doInit", if init { "1" } else { "0" }),
            ("systemId", "0"),
            ("sid", "0"),
            ("sessionKey", key),
        ]);
        with_cookie(r, "tok1")
    }

    fn archive(t: f64, s: &str) -> Observed {
        let mut r = req(Host::Site, t, "GET", "/calls/apis/archivecall.php");
        r.query = pairs(&[("group", "4290-512"), ("s", s)]);
        with_cookie(r, "tok1")
    }

    fn good_session() -> Vec<Observed> {
        let mut audio = with_cookie(
            req(Host::Cdn, 0.6, "GET", "/qwh9zivk/2893/1758428366-512.m4a"),
            "tok1",
        );
        audio.headers.push((
            "referer".into(),
            "https://www.broadcastify.com/calls/".into(),
        ));
        let mut logout = with_cookie(req(Host::Site, 20.0, "GET", "/account/"), "tok1");
        logout.query = pairs(&[("action", "logout")]);
        vec![
            login(0.0),
            poll(0.5, "0a1b2c3d-9f9f", true),
            audio,
            poll(5.5, "0a1b2c3d-9f9f", false),
            archive(6.0, "1758427200"),
            poll(10.5, "0a1b2c3d-9f9f", false),
            logout,
        ]
    }

    fn rules(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|v| v.rule.as_str()).collect()
    }

    const OPTS: CheckOptions = CheckOptions {
        min_poll_interval_secs: None,
    };

    #[test]
    fn a_polite_session_passes() {
        let v = contract().check_requests(&good_session(), OPTS);
        assert!(v.is_empty(), "{v:#?}");
    }

    #[test]
    fn a_dropped_header_fails() {
        let mut log = good_session();
        log[3].headers.retain(|(k, _)| k != "accept-encoding");
        log[2].headers.retain(|(k, _)| k != "user-agent");
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["browser-headers", "browser-headers"], "{v:#?}");
        assert!(v[0].subject.contains("#2") && v[0].detail.contains("user-agent"));
        assert!(v[1].subject.contains("#3") && v[1].detail.contains("accept-encoding"));
    }

    #[test]
    fn a_missing_xhr_header_fails() {
        let mut log = good_session();
        log[1].headers.retain(|(k, _)| k != "x-requested-with");
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["endpoint-headers"], "{v:#?}");
    }

    #[test]
    fn polling_too_fast_fails() {
        let mut log = good_session();
        log[3].start = 2.0; // 1.5 s after the first poll
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["poll-interval"], "{v:#?}");
        // A looser floor given for a simulator run accepts it.
        let v = contract().check_requests(
            &log,
            CheckOptions {
                min_poll_interval_secs: Some(1.0),
            },
        );
        assert!(v.is_empty(), "{v:#?}");
    }

    #[test]
    fn a_second_do_init_fails() {
        let mut log = good_session();
        log[3] = poll(5.5, "0a1b2c3d-9f9f", true);
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["do-init"], "{v:#?}");
    }

    #[test]
    fn two_logins_at_once_fail() {
        let mut log = good_session();
        let mut second = login(0.005);
        second.end = 0.2;
        log.insert(1, second);
        let v = contract().check_requests(&log, OPTS);
        assert!(rules(&v).contains(&"login-single-flight"), "{v:#?}");
    }

    #[test]
    fn a_login_storm_fails() {
        let log: Vec<Observed> = (0..3).map(|i| login(f64::from(i))).collect();
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["login-burst"], "{v:#?}");
    }

    #[test]
    fn reusing_a_dead_token_fails() {
        let mut log = good_session();
        let after = poll(25.0, "0a1b2c3d-9f9f", false);
        log.push(after);
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["dead-token"], "{v:#?}");

        // A logged-out answer kills the token too.
        let mut log = good_session();
        log.truncate(4);
        log[3].logged_out_answer = true;
        log.push(poll(10.0, "0a1b2c3d-9f9f", false));
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["dead-token"], "{v:#?}");
    }

    #[test]
    fn an_unfloored_archive_block_fails() {
        let mut log = good_session();
        log[4] = archive(6.0, "1758428366");
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["archive-floored"], "{v:#?}");
        assert!(v[0].detail.contains("expected 1758427200"));
    }

    #[test]
    fn ignoring_retry_after_fails() {
        let mut log = good_session();
        log[3].status = 429;
        log[3].retry_after = Some(3.0);
        log[4].start = 7.0;
        let v = contract().check_requests(&log, OPTS);
        // The archive request 1.5 s later came too early; the poll 5 s later is fine.
        assert_eq!(rules(&v), ["retry-after"], "{v:#?}");
        assert!(v[0].subject.contains("#4"), "{v:#?}");
    }

    #[test]
    fn a_traceparent_header_fails() {
        let mut log = good_session();
        log[1]
            .headers
            .push(("traceparent".into(), "00-abc-def-01".into()));
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["forbidden-headers"], "{v:#?}");
    }

    #[test]
    fn two_subscription_modes_fail() {
        let mut log = good_session();
        log[1].form.push((
            "playlist_uuid".into(),
            "1d6a0a4e-0000-4000-8000-000000000000".into(),
        ));
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["subscription-mode"], "{v:#?}");
    }

    #[test]
    fn an_unknown_endpoint_fails() {
        let mut log = good_session();
        log.push(req(Host::Cdn, 30.0, "GET", "/../etc/passwd"));
        let v = contract().check_requests(&log, OPTS);
        assert_eq!(rules(&v), ["known-endpoint"], "{v:#?}");
    }

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../crates/bcfy-proto/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
    }

    #[test]
    fn the_real_captures_pass_strictly() {
        let c = contract();
        let v = c.check_response(
            "live-calls.json",
            "live-calls",
            &fixture("real/live-calls.json"),
            true,
        );
        assert!(v.is_empty(), "{v:#?}");
        let v = c.check_response(
            "archivecall.json",
            "archive",
            &fixture("real/archivecall.json"),
            true,
        );
        assert!(v.is_empty(), "{v:#?}");
    }

    #[test]
    fn the_tolerated_variants_pass_loosely_but_not_strictly() {
        let c = contract();
        let body = fixture("live-calls-variants.json");
        assert!(
            c.check_response("variants", "live-calls", &body, false)
                .is_empty()
        );
        assert!(
            !c.check_response("variants", "live-calls", &body, true)
                .is_empty()
        );
    }

    #[test]
    fn an_unknown_shape_fails_the_provider_side() {
        let c = contract();
        let v = c.check_response(
            "x",
            "live-calls",
            &serde_json::json!({"items": [], "serverTime": 1}),
            true,
        );
        assert_eq!(rules(&v), ["response-shape"], "{v:#?}");
        let v = c.check_response("x", "archive", &fixture("archive-missing-calls.json"), true);
        assert_eq!(rules(&v), ["response-shape"], "{v:#?}");
        let v = c.check_response(
            "x",
            "live-calls",
            &serde_json::json!({"calls": [{"id": 5, "ts": "soon"}]}),
            true,
        );
        assert!(
            v.iter().all(|v| v.rule == "call-shape") && v.len() >= 3,
            "{v:#?}"
        );
    }
}
