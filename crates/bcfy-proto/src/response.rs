//! Live-calls and archive responses.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::call::{Call, CallError, RawCall, entry_call_id};
use crate::error::{ErrorCategory, RetryHint};
use crate::ids::CallId;
use crate::time::TimeWindow;

/// Length cap of snippets kept in parse errors.
const SNIPPET_MAX: usize = 200;

/// A whole response body that cannot be used. (One bad call is a [`RejectedCall`], not this.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not JSON (empty, HTML, truncated, ...).
    #[error("response is not JSON: {message}; body starts {snippet:?}")]
    NotJson {
        /// The parser's message.
        message: String,
        /// Sanitized start of the body.
        snippet: String,
    },
    /// The body is JSON but not an object.
    #[error("response is not a JSON object; body starts {snippet:?}")]
    NotAnObject {
        /// Sanitized start of the body.
        snippet: String,
    },
    /// The service answered with an `error` key.
    #[error("service error: {message}")]
    Service {
        /// The service's message (sanitized, capped).
        message: String,
    },
    /// A required key is absent (an archive response without `calls`).
    #[error("response has no `{0}`")]
    MissingField(&'static str),
    /// A key has an unusable shape (e.g. `calls` is not an array).
    #[error("response field `{field}` is invalid: {snippet:?}")]
    InvalidField {
        /// The key.
        field: &'static str,
        /// Sanitized value.
        snippet: String,
    },
}

/// The kind of a [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// See [`ParseError::NotJson`].
    NotJson,
    /// See [`ParseError::NotAnObject`].
    NotAnObject,
    /// See [`ParseError::Service`].
    Service,
    /// See [`ParseError::MissingField`].
    MissingField,
    /// See [`ParseError::InvalidField`].
    InvalidField,
}

impl ParseError {
    /// The kind of error.
    pub fn kind(&self) -> ParseErrorKind {
        match self {
            Self::NotJson { .. } => ParseErrorKind::NotJson,
            Self::NotAnObject { .. } => ParseErrorKind::NotAnObject,
            Self::Service { .. } => ParseErrorKind::Service,
            Self::MissingField(_) => ParseErrorKind::MissingField,
            Self::InvalidField { .. } => ParseErrorKind::InvalidField,
        }
    }

    /// A sanitized, length-capped piece of the payload, when there is one.
    pub fn snippet(&self) -> Option<&str> {
        match self {
            Self::NotJson { snippet, .. }
            | Self::NotAnObject { snippet }
            | Self::InvalidField { snippet, .. } => Some(snippet),
            Self::Service { message } => Some(message),
            Self::MissingField(_) => None,
        }
    }

    /// Whether a [`ParseError::Service`] message says the session is gone (re-authenticate).
    pub fn is_logged_out(&self) -> bool {
        const MARKERS: &[&str] = &[
            "logged in",
            "log in",
            "login",
            "logged out",
            "not authorized",
            "unauthorized",
            "authenticat",
            "session",
        ];
        match self {
            Self::Service { message } => {
                let m = message.to_ascii_lowercase();
                MARKERS.iter().any(|k| m.contains(k))
            }
            _ => false,
        }
    }

    /// Back off and retry: a bad body is often a transient server state.
    pub fn retry_hint(&self) -> RetryHint {
        RetryHint::Backoff
    }

    /// Always [`ErrorCategory::ResponseParsing`].
    pub fn category(&self) -> ErrorCategory {
        ErrorCategory::ResponseParsing
    }
}

/// One entry of a `calls` array that was not accepted, with why and what it was.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedCall {
    /// Position in the `calls` array.
    pub index: usize,
    /// Why it was rejected.
    pub error: CallError,
    /// The entry as sent. An entry that cannot be held as a `Value` (a number beyond `f64`,
    /// like `1e309`) is kept as a string of its sanitized, capped text.
    pub raw: Value,
}

/// The top level of a response, borrowed from the body: every key but `calls` as raw JSON, so
/// one out-of-range number in one call does not fail the whole body, and `calls` already cut
/// into its entries (one pass over the body, not one for the top and one for the array).
struct RawTop<'a> {
    fields: HashMap<String, &'a RawValue>,
    calls: Calls<'a>,
}

/// What the `calls` key holds.
enum Calls<'a> {
    Absent,
    Null,
    Entries(Vec<&'a RawValue>),
    /// Not an array: why (a snippet of it), once known.
    Invalid(Option<String>),
}

impl<'de> serde::Deserialize<'de> for RawTop<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct CallsSeed;
        impl<'de> serde::de::DeserializeSeed<'de> for CallsSeed {
            type Value = Calls<'de>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Calls<'de>, D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for CallsSeed {
            type Value = Calls<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of calls")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Calls<'de>, A::Error> {
                let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(64));
                while let Some(entry) = seq.next_element::<&'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(Calls::Entries(entries))
            }
            fn visit_unit<E>(self) -> Result<Calls<'de>, E> {
                Ok(Calls::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Calls<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Calls::Invalid(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Calls<'de>, E> {
                Ok(Calls::Invalid(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Calls<'de>, E> {
                Ok(Calls::Invalid(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Calls<'de>, E> {
                Ok(Calls::Invalid(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Calls<'de>, E> {
                Ok(Calls::Invalid(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Calls<'de>, E> {
                Ok(Calls::Invalid(None))
            }
        }
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = RawTop<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTop<'de>, A::Error> {
                let mut top = RawTop {
                    fields: HashMap::new(),
                    calls: Calls::Absent,
                };
                // The last of duplicate keys counts, as in a map.
                while let Some(key) = map.next_key::<String>()? {
                    if key == "calls" {
                        top.calls = map.next_value_seed(CallsSeed)?;
                    } else {
                        top.fields.insert(key, map.next_value()?);
                    }
                }
                Ok(top)
            }
        }
        d.deserialize_map(Top)
    }
}

impl<'a> RawTop<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.get(key).copied()
    }

    /// The slower reading, key by key, that can say what is wrong with `calls`; also the one
    /// that takes a `calls` the one-pass reading refuses (a number beyond `f64`).
    fn by_key(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        let mut fields: HashMap<String, &'a RawValue> = serde_json::from_slice(bytes)?;
        let calls = match fields.remove("calls") {
            None => Calls::Absent,
            Some(raw) if raw.get().trim() == "null" => Calls::Null,
            Some(raw) => match serde_json::from_str(raw.get()) {
                Ok(entries) => Calls::Entries(entries),
                Err(_) => Calls::Invalid(Some(raw_snippet(raw))),
            },
        };
        Ok(Self { fields, calls })
    }
}

fn parse_top(bytes: &[u8]) -> Result<RawTop<'_>, ParseError> {
    // PHP pages sometimes emit a UTF-8 byte order mark, which JSON parsers refuse.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        // Valid JSON of another type, or not JSON at all: tell which.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ParseError::NotAnObject {
                    snippet: crate::snippet(bytes, SNIPPET_MAX),
                },
                Err(e) => ParseError::NotJson {
                    message: e.to_string(),
                    snippet: crate::snippet(bytes, SNIPPET_MAX),
                },
            },
        );
    }
    match serde_json::from_slice::<RawTop<'_>>(bytes) {
        Ok(top) if !matches!(top.calls, Calls::Invalid(_)) => Ok(top),
        _ => RawTop::by_key(bytes).map_err(|e| ParseError::NotJson {
            message: e.to_string(),
            snippet: crate::snippet(bytes, SNIPPET_MAX),
        }),
    }
}

fn raw_snippet(raw: &RawValue) -> String {
    crate::snippet(raw.get().as_bytes(), SNIPPET_MAX)
}

/// Reads a top-level value as a `Value`; `None` when absent, null, or beyond `f64`.
fn top_value(top: &RawTop<'_>, key: &str) -> Option<Value> {
    top.get(key)
        .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .filter(|v| !v.is_null())
}

fn top_i64(top: &RawTop<'_>, key: &str) -> Option<i64> {
    top_f64(top, key).and_then(|f| {
        let f = f.floor();
        (f.abs() < 9.0e18).then_some(f as i64)
    })
}

fn top_f64(top: &RawTop<'_>, key: &str) -> Option<f64> {
    match top_value(top, key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

fn check_service_error(top: &RawTop<'_>) -> Result<(), ParseError> {
    match top_value(top, "error") {
        // `"error": false` / `""` / `0` say "no error".
        None | Some(Value::Bool(false)) => Ok(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(()),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(()),
        Some(v) => {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            Err(ParseError::Service {
                message: crate::snippet(text.as_bytes(), SNIPPET_MAX),
            })
        }
    }
}

/// The entries of the `calls` array, each as raw JSON; `Ok(None)` when `calls` is absent or
/// null.
fn call_entries<'a>(top: &mut RawTop<'a>) -> Result<Option<Vec<&'a RawValue>>, ParseError> {
    match std::mem::replace(&mut top.calls, Calls::Absent) {
        Calls::Absent | Calls::Null => Ok(None),
        Calls::Entries(entries) => Ok(Some(entries)),
        Calls::Invalid(snippet) => Err(ParseError::InvalidField {
            field: "calls",
            snippet: snippet.unwrap_or_default(),
        }),
    }
}

/// An entry that is valid JSON only as text (a number beyond `f64`): why, and the text kept.
fn unrepresentable(index: usize, entry: &RawValue, e: &serde_json::Error) -> RejectedCall {
    RejectedCall {
        index,
        error: unrepresentable_entry(entry, e),
        raw: Value::String(raw_snippet(entry)),
    }
}

/// Why an entry that is not a readable JSON object was rejected, and what it was.
fn reject_entry(index: usize, entry: &RawValue) -> RejectedCall {
    match serde_json::from_str::<Value>(entry.get()) {
        Ok(v) => RejectedCall {
            index,
            // Not an object (`from_value` says which type): an object would have been read.
            error: Call::from_value(&v)
                .err()
                .unwrap_or(CallError::NotAnObject { found: "object" }),
            raw: v,
        },
        Err(e) => unrepresentable(index, entry, &e),
    }
}

/// Reads a `calls` array entry by entry. `Ok(None)` when `calls` is absent or null.
/// The parsed entries, the rejected ones, and every entry as a `Value` (for `raw`).
type ParsedCalls = (Vec<Call>, Vec<RejectedCall>, Vec<Value>);

fn parse_calls(top: &mut RawTop<'_>) -> Result<Option<ParsedCalls>, ParseError> {
    let Some(entries) = call_entries(top)? else {
        return Ok(None);
    };
    let mut calls = Vec::with_capacity(entries.len());
    let mut rejected = Vec::new();
    let mut values = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        match serde_json::from_str::<Value>(entry.get()) {
            Ok(v) => {
                match Call::from_value(&v) {
                    Ok(c) => calls.push(c),
                    Err(error) => rejected.push(RejectedCall {
                        index,
                        error,
                        raw: v.clone(),
                    }),
                }
                values.push(v);
            }
            Err(e) => {
                let r = unrepresentable(index, entry, &e);
                values.push(r.raw.clone());
                rejected.push(r);
            }
        }
    }
    Ok(Some((calls, rejected, values)))
}

/// Names the key of an entry that is valid JSON but not representable (a number beyond `f64`).
fn unrepresentable_entry(entry: &RawValue, err: &serde_json::Error) -> CallError {
    // BTreeMap: the first offending key in a stable (sorted) order.
    if let Ok(fields) =
        serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(entry.get())
        && let Some((key, raw)) = fields
            .into_iter()
            .find(|(_, raw)| serde_json::from_str::<Value>(raw.get()).is_err())
    {
        return CallError::OutOfRange {
            field: crate::snippet::cap_chars(&key, 64),
            value: crate::snippet(raw.get().as_bytes(), 64),
        };
    }
    CallError::InvalidJson {
        message: crate::snippet(err.to_string().as_bytes(), SNIPPET_MAX),
    }
}

/// A `live-calls` answer: `{"calls": [...], "serverTime": int, "lastPos": int}`.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCallsResponse {
    /// The calls that parsed, in payload order.
    pub calls: Vec<Call>,
    /// The entry of each of [`calls`](Self::calls) as sent (same length and order): what a
    /// [`LiveCallEnvelope`](crate::LiveCallEnvelope) carries as its raw payload, kept from the
    /// parse instead of rebuilt.
    pub raw_calls: Vec<RawCall>,
    /// The entries that did not, with why.
    pub rejected: Vec<RejectedCall>,
    /// Entries left out by [`from_slice_skipping`](Self::from_slice_skipping) as calls the
    /// caller already has.
    pub skipped: usize,
    /// `serverTime`, epoch seconds.
    pub server_time: Option<i64>,
    /// `lastPos`: the largest `ts` of the batch (the next cursor's base).
    pub last_pos: Option<f64>,
}

impl LiveCallsResponse {
    /// Parses a body. An empty or absent `calls` is an empty poll; an `error` key is
    /// [`ParseError::Service`]; anything that is not a JSON object is an error. Never panics.
    ///
    /// ```
    /// let r = bcfy_proto::LiveCallsResponse::from_slice(br#"{"serverTime": 1, "lastPos": 0}"#).unwrap();
    /// assert!(r.calls.is_empty());
    /// let e = bcfy_proto::LiveCallsResponse::from_slice(br#"{"error": "You must be logged in"}"#).unwrap_err();
    /// assert!(e.is_logged_out());
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseError> {
        Self::from_slice_skipping(bytes, |_| false)
    }

    /// Like [`from_slice`](Self::from_slice), but a call whose [`CallId`] `known` accepts is
    /// left out and counted in [`skipped`](Self::skipped). A poll's cursor overlaps the
    /// previous one, so most of a busy answer is calls the caller already delivered: their
    /// identity is read first, which costs a fraction of the full parse. An entry whose
    /// identity cannot be read that cheaply (escapes, odd types) is parsed fully and then
    /// checked, so `known` only ever sees the ids [`Call::call_id`] gives.
    ///
    /// ```
    /// let body = br#"{"calls": [
    ///     {"ts": 1, "systemId": 7, "filename": "1-512", "hash": "ab"},
    ///     {"ts": 2, "systemId": 7, "filename": "2-512", "hash": "cd"}]}"#;
    /// let r = bcfy_proto::LiveCallsResponse::from_slice_skipping(body, |id| {
    ///     id.as_str() == "7-1-512-ab"
    /// })
    /// .unwrap();
    /// assert_eq!((r.calls.len(), r.skipped), (1, 1));
    /// assert_eq!(r.calls[0].filename, "2-512");
    /// assert_eq!(r.raw_calls[0].to_map()["hash"], "cd");
    /// ```
    pub fn from_slice_skipping(
        bytes: &[u8],
        mut known: impl FnMut(&CallId) -> bool,
    ) -> Result<Self, ParseError> {
        let mut top = parse_top(bytes)?;
        check_service_error(&top)?;
        let entries = call_entries(&mut top)?.unwrap_or_default();
        let mut answer = Self {
            calls: Vec::with_capacity(entries.len()),
            raw_calls: Vec::with_capacity(entries.len()),
            rejected: Vec::new(),
            skipped: 0,
            server_time: top_i64(&top, "serverTime"),
            last_pos: top_f64(&top, "lastPos"),
        };
        for (index, entry) in entries.into_iter().enumerate() {
            if entry_call_id(entry.get()).is_some_and(|id| known(&id)) {
                answer.skipped += 1;
                continue;
            }
            // The entry straight into a `Call`; a `Value` of it is built only to report a
            // rejection.
            match Call::from_json(entry.get()) {
                Some(Ok(call)) if known(&call.call_id()) => answer.skipped += 1,
                Some(Ok(call)) => {
                    answer.calls.push(call);
                    answer.raw_calls.push(RawCall::from_valid(entry.get()));
                }
                Some(Err(error)) => answer.rejected.push(RejectedCall {
                    index,
                    error,
                    raw: serde_json::from_str(entry.get()).unwrap_or(Value::Null),
                }),
                None => answer.rejected.push(reject_entry(index, entry)),
            }
        }
        Ok(answer)
    }

    /// Whether the poll brought nothing (no call, no rejected entry).
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.rejected.is_empty()
    }
}

/// An `archivecall.php` answer: `{"calls": [...], "serverTime", "start", "end"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveResponse {
    /// `start`/`end` as sent (the real service sends `s - 1` and `s + 1800`); `(0, 0)` when
    /// absent.
    pub window: TimeWindow,
    /// The calls that parsed, in payload order.
    pub calls: Vec<Call>,
    /// The entries that did not, with why.
    pub rejected: Vec<RejectedCall>,
    /// `serverTime`, epoch seconds.
    pub server_time: Option<i64>,
    /// The whole body as JSON (keys holding numbers beyond `f64` are dropped; a call entry
    /// holding one is kept as a string of its text).
    pub raw: Arc<Value>,
}

impl ArchiveResponse {
    /// Parses a body. A missing `calls` is [`ParseError::MissingField`]`("calls")`; an `error`
    /// key is [`ParseError::Service`]. Never panics.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut top = parse_top(bytes)?;
        check_service_error(&top)?;
        let (calls, rejected, values) =
            parse_calls(&mut top)?.ok_or(ParseError::MissingField("calls"))?;
        let start = top_i64(&top, "start");
        let end = top_i64(&top, "end");
        let mut raw = Map::new();
        for (k, v) in &top.fields {
            if let Ok(v) = serde_json::from_str::<Value>(v.get()) {
                raw.insert(k.clone(), v);
            }
        }
        raw.insert("calls".to_owned(), Value::Array(values));
        Ok(Self {
            window: TimeWindow::new(start.unwrap_or(0), end.unwrap_or(0)),
            calls,
            rejected,
            server_time: top_i64(&top, "serverTime"),
            raw: Arc::new(Value::Object(raw)),
        })
    }
}
