//! The call object of live-calls and archive responses.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};
use url::Url;

use crate::ids::{CallId, GroupId, NodeId, SystemId, TalkgroupId, is_safe_part};

/// Longest accepted `filename` (bytes).
const MAX_FILENAME: usize = 255;
/// Longest accepted `hash` (bytes).
const MAX_HASH: usize = 64;
/// Longest accepted `enc` (bytes).
const MAX_ENC: usize = 16;
/// The encoding Broadcastify's page assumes when `enc` is absent.
const DEFAULT_ENC: &str = "m4a";

/// What is wrong with one entry of a `calls` array. The other entries of the batch still parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The entry is not a JSON object.
    #[error("call entry is not an object (found {found})")]
    NotAnObject {
        /// The JSON type found: `null`, `bool`, `number`, `string` or `array`.
        found: &'static str,
    },
    /// An identity field (`ts`, `systemId`, `filename`) is absent or null.
    #[error("call entry has no `{0}`")]
    MissingField(&'static str),
    /// A field has a type or shape that cannot be read.
    #[error("call field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The payload key.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A number outside what the field can hold (a negative `ts`, a number beyond `f64`).
    #[error("call field `{field}` is out of range: {value}")]
    OutOfRange {
        /// The payload key.
        field: String,
        /// The offending value (sanitized, capped).
        value: String,
    },
    /// A part of the audio path (`systemId`, `filename`, `hash`, `enc`) holds characters that
    /// could steer the audio request elsewhere.
    #[error("call field `{field}` is not a safe audio path part: {value:?}")]
    UnsafePathPart {
        /// The payload key.
        field: &'static str,
        /// The offending value (sanitized, capped).
        value: String,
    },
    /// The entry is not valid JSON on its own (should not happen inside a valid document).
    #[error("call entry is not valid JSON: {message}")]
    InvalidJson {
        /// The parser's message.
        message: String,
    },
}

/// The kind of a [`CallError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// See [`CallError::NotAnObject`].
    NotAnObject,
    /// See [`CallError::MissingField`].
    MissingField,
    /// See [`CallError::InvalidField`].
    InvalidField,
    /// See [`CallError::OutOfRange`].
    OutOfRange,
    /// See [`CallError::UnsafePathPart`].
    UnsafePathPart,
    /// See [`CallError::InvalidJson`].
    InvalidJson,
}

impl CallError {
    /// The kind of error.
    pub fn kind(&self) -> CallErrorKind {
        match self {
            Self::NotAnObject { .. } => CallErrorKind::NotAnObject,
            Self::MissingField(_) => CallErrorKind::MissingField,
            Self::InvalidField { .. } => CallErrorKind::InvalidField,
            Self::OutOfRange { .. } => CallErrorKind::OutOfRange,
            Self::UnsafePathPart { .. } => CallErrorKind::UnsafePathPart,
            Self::InvalidJson { .. } => CallErrorKind::InvalidJson,
        }
    }

    /// Always [`crate::RetryHint::Never`]: the same payload fails the same way.
    pub fn retry_hint(&self) -> crate::RetryHint {
        crate::RetryHint::Never
    }

    fn unsafe_part(field: &'static str, v: &Value) -> Self {
        Self::UnsafePathPart {
            field,
            value: value_snippet(v),
        }
    }
}

/// Why a call's audio URL could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioUrlError {
    /// The CDN base is not an `http`/`https` URL that can take path segments.
    #[error("the calls CDN base URL cannot carry an audio path (need an http(s) base URL)")]
    InvalidBase,
    /// A path part of the call is unsafe (possible only for a hand-built `Call`).
    #[error("call field `{field}` is not a safe audio path part: {value:?}")]
    UnsafePathPart {
        /// The payload key.
        field: &'static str,
        /// The offending value (sanitized, capped).
        value: String,
    },
}

fn value_snippet(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    crate::snippet::snippet(text.as_bytes(), 64)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An integral-or-floored value of a finite float within `i64`.
fn f64_to_i64(f: f64) -> Option<i64> {
    // 2^63 as f64; every f64 strictly below it floors into range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let f = f.floor();
    (f.is_finite() && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// Reads an integer: a JSON integer, a float (floored), or a string of either.
fn read_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(f64_to_i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| parse_finite(s).and_then(f64_to_i64))
        }
        _ => None,
    }
}

fn read_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| read_i64(v).and_then(|i| u64::try_from(i).ok())),
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .ok()
            .or_else(|| read_i64(v).and_then(|i| u64::try_from(i).ok())),
        _ => None,
    }
}

fn read_u32(v: &Value) -> Option<u32> {
    read_u64(v).and_then(|u| u32::try_from(u).ok())
}

fn parse_finite(s: &str) -> Option<f64> {
    // Rust's float parser accepts "inf"/"NaN": only finite values are numbers here.
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn read_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => parse_finite(s.trim()),
        _ => None,
    }
}

fn read_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `systemId`: a non-negative integer or a string of ASCII digits.
fn read_node(v: &Value) -> Result<NodeId, CallError> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => Ok(NodeId::new(u)),
            None => Err(CallError::InvalidField {
                field: "systemId",
                reason: "not a non-negative integer",
            }),
        },
        Value::String(s) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse()
                    .map(NodeId::new)
                    .map_err(|_| CallError::OutOfRange {
                        field: "systemId".into(),
                        value: value_snippet(v),
                    })
            } else {
                Err(CallError::unsafe_part("systemId", v))
            }
        }
        _ => Err(CallError::InvalidField {
            field: "systemId",
            reason: "not a number or a string of digits",
        }),
    }
}

fn is_safe_enc(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ENC && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// One value of an entry read by [`Fields`]: a `Value`, or, for `metadata`, its text.
enum FieldValue<'a> {
    Value(Value),
    /// `metadata` as sent: kept as text, never built as a tree.
    Raw(&'a serde_json::value::RawValue),
}

/// An entry's keys and values in document order, keys borrowed from the text when they can be.
struct Fields<'a>(Vec<(std::borrow::Cow<'a, str>, FieldValue<'a>)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl<'de> serde::de::DeserializeSeed<'de> for Key {
            type Value = std::borrow::Cow<'de, str>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_str(self)
            }
        }
        impl<'de> serde::de::Visitor<'de> for Key {
            type Value = std::borrow::Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Owned(v.to_owned()))
            }
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a call object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(32));
                while let Some(key) = map.next_key_seed(Key)? {
                    let value = if key == "metadata" {
                        FieldValue::Raw(map.next_value::<&'de serde_json::value::RawValue>()?)
                    } else {
                        FieldValue::Value(map.next_value::<Value>()?)
                    };
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads a call one key at a time (in key order, each key once): the one place that knows
/// what every key means, for [`Call::from_map`] and [`Call::from_json`].
struct CallBuilder {
    call: Call,
    extra: Map<String, Value>,
    ts: Option<i64>,
    node: Option<NodeId>,
    filename: Option<String>,
    /// `call-ttl` when present and readable (an unreadable one goes to `extra`).
    ttl_hyphen: Option<i64>,
    ttl_underscore: Option<Value>,
}

impl Default for CallBuilder {
    fn default() -> Self {
        Self {
            call: Call::new(0, NodeId::new(0), String::new()),
            extra: Map::new(),
            ts: None,
            node: None,
            filename: None,
            ttl_hyphen: None,
            ttl_underscore: None,
        }
    }
}

/// A string value, moved out; numbers as their text.
fn take_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl CallBuilder {
    fn field(&mut self, key: &str, v: Value) -> Result<(), CallError> {
        if v.is_null() {
            return Ok(());
        }
        let call = &mut self.call;
        let extra = &mut self.extra;
        // A known key whose value cannot be read is kept verbatim in `extra`.
        macro_rules! opt {
            ($field:ident, $read:expr) => {{
                match $read(&v) {
                    Some(x) => call.$field = Some(x),
                    None => {
                        extra.insert(key.to_owned(), v);
                    }
                }
            }};
        }
        macro_rules! opt_string {
            ($field:ident) => {{
                if matches!(v, Value::String(_) | Value::Number(_)) {
                    call.$field = take_string(v);
                } else {
                    extra.insert(key.to_owned(), v);
                }
            }};
        }
        match key {
            "ts" => {
                let t = read_i64(&v).ok_or(CallError::InvalidField {
                    field: "ts",
                    reason: "not an integer",
                })?;
                if t < 0 {
                    return Err(CallError::OutOfRange {
                        field: "ts".into(),
                        value: t.to_string(),
                    });
                }
                self.ts = Some(t);
            }
            "systemId" => self.node = Some(read_node(&v)?),
            "filename" => {
                let f = read_string(&v).ok_or(CallError::InvalidField {
                    field: "filename",
                    reason: "not a string",
                })?;
                if !is_safe_part(&f, MAX_FILENAME) {
                    return Err(CallError::unsafe_part("filename", &v));
                }
                self.filename = Some(f);
            }
            "hash" => {
                let h = read_string(&v).ok_or(CallError::InvalidField {
                    field: "hash",
                    reason: "not a string",
                })?;
                if !h.is_empty() {
                    if !is_safe_part(&h, MAX_HASH) {
                        return Err(CallError::unsafe_part("hash", &v));
                    }
                    call.hash = Some(h);
                }
            }
            "enc" => {
                let e = read_string(&v).ok_or(CallError::InvalidField {
                    field: "enc",
                    reason: "not a string",
                })?;
                if !e.is_empty() {
                    if !is_safe_enc(&e) {
                        return Err(CallError::unsafe_part("enc", &v));
                    }
                    call.enc = Some(e);
                }
            }
            "id" => opt_string!(group_key),
            "sid" => opt!(sid, |v| read_u64(v).map(SystemId::new)),
            "siteId" => opt!(site_id, read_u64),
            "tgId" => opt!(tg_id, read_u64),
            "tgCid" => opt!(tg_cid, read_u64),
            "call_tg" => opt!(talkgroup, |v| read_u64(v).map(TalkgroupId::new)),
            "call_type" => opt!(call_type, read_u32),
            "call_src" => opt!(src, read_i64),
            "call_src_key" => opt_string!(src_key),
            "call_freq" => opt!(freq_mhz, read_f64),
            "call_duration" => opt!(duration_secs, read_f64),
            "call_timediff" => opt!(time_diff, read_f64),
            "call-ttl" => {
                self.ttl_hyphen = read_i64(&v);
                if self.ttl_hyphen.is_none() {
                    extra.insert(key.to_owned(), v);
                }
            }
            "call_ttl" => self.ttl_underscore = Some(v),
            "meta_starttime" => opt!(start_time, read_i64),
            "meta_stoptime" => opt!(stop_time, read_i64),
            "descr" => opt_string!(descr),
            "display" => opt_string!(display),
            "grouping" => opt_string!(grouping),
            "tag" => opt!(tag, read_u32),
            "metadata" => call.metadata = Some(RawJson::from_value(&v)),
            "score" => opt!(score, read_i64),
            "fid" => opt!(fid, read_u64),
            "transcription" => opt_string!(transcription),
            _ => {
                extra.insert(key.to_owned(), v);
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Call, CallError> {
        let Self {
            mut call,
            mut extra,
            ts,
            node,
            filename,
            ttl_hyphen,
            ttl_underscore,
        } = self;
        // `call-ttl` is what the service sends; `call_ttl` is read when it is absent or
        // unreadable, and otherwise kept in `extra`.
        call.ttl = ttl_hyphen;
        if let Some(v) = ttl_underscore {
            match (call.ttl, read_i64(&v)) {
                (None, Some(t)) => call.ttl = Some(t),
                _ => {
                    extra.insert("call_ttl".to_owned(), v);
                }
            }
        }
        call.ts = ts.ok_or(CallError::MissingField("ts"))?;
        call.node = node.ok_or(CallError::MissingField("systemId"))?;
        call.filename = filename.ok_or(CallError::MissingField("filename"))?;
        call.extra = Arc::new(extra);
        Ok(call)
    }
}

/// A call entry as the service sent it: its JSON text, kept unparsed (one allocation; clones
/// share it). [`RawCall::to_map`] parses it when wanted.
///
/// ```
/// use bcfy_proto::{Call, RawCall};
/// let v = serde_json::json!({"ts": 1, "systemId": 7, "filename": "1-512", "x": [1]});
/// let raw = RawCall::from_map(v.as_object().unwrap());
/// assert_eq!(raw.to_map()["x"], serde_json::json!([1]));
/// assert_eq!(Call::from_json(raw.as_str()), Some(Call::from_value(&v)));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawCall(Arc<str>);

impl RawCall {
    /// Keeps an entry's text that is known to be a JSON object holding only representable
    /// values (one [`Call::from_json`] read).
    pub(crate) fn from_valid(text: &str) -> Self {
        Self(text.into())
    }

    /// The JSON text of `map`.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        // A `Map` of `Value`s always serializes.
        Self(
            serde_json::to_string(map)
                .unwrap_or_else(|_| "{}".to_owned())
                .into(),
        )
    }

    /// The entry's JSON text, as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The entry as a map.
    pub fn to_map(&self) -> Map<String, Value> {
        // Both constructors hold a valid, representable JSON object.
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for RawCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RawCall").field(&self.as_str()).finish()
    }
}

/// A JSON value kept as its text (one allocation; clones share it) and parsed only when
/// asked: what [`Call::metadata`] holds, so a live poll never builds the uploader's metadata
/// as a tree for calls nobody inspects.
///
/// Two `RawJson`s are equal when they hold the same JSON value, however it is spelled.
///
/// ```
/// use bcfy_proto::RawJson;
/// let v = serde_json::json!({"talkgroup": 512, "srcList": [{"src": 7}]});
/// let raw = RawJson::from_value(&v);
/// assert_eq!(raw.parse().unwrap(), v);
/// assert_eq!(raw, RawJson::from_value(&serde_json::from_str::<serde_json::Value>(
///     r#"{ "srcList": [ {"src": 7} ], "talkgroup": 512 }"#).unwrap()));
/// ```
#[derive(Clone)]
pub struct RawJson(Arc<str>);

impl RawJson {
    /// The JSON text of `value`.
    pub fn from_value(value: &Value) -> Self {
        // A `Value` always serializes.
        Self(
            serde_json::to_string(value)
                .unwrap_or_else(|_| "null".to_owned())
                .into(),
        )
    }

    /// The JSON text, as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value. Fails only on a number `f64` cannot represent (the text itself is always
    /// valid JSON).
    pub fn parse(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// The value, or the text as a JSON string when [`RawJson::parse`] fails (nothing is
    /// lost either way).
    pub fn to_value(&self) -> Value {
        self.parse()
            .unwrap_or_else(|_| Value::String(self.0.to_string()))
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || matches!((self.parse(), other.parse()), (Ok(a), Ok(b)) if a == b)
    }
}

impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RawJson").field(&self.as_str()).finish()
    }
}

/// The identity parts of a call entry, read without building the entry: what a live poll
/// needs to drop a call it already has (the cursor's one-second overlap returns every call
/// two or three times) before paying for the full parse.
#[derive(Deserialize)]
struct EntryIdentity<'a> {
    #[serde(rename = "systemId", default, deserialize_with = "identity_node")]
    node: Option<u64>,
    // Borrowed: a value with escapes fails here and the entry takes the full path.
    #[serde(default)]
    filename: Option<&'a str>,
    #[serde(default)]
    hash: Option<&'a str>,
}

/// `systemId` as [`read_node`] reads it, `None` for anything it would not accept.
fn identity_node<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a node id")
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            let t = v.trim();
            Ok(if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse().ok()
            } else {
                None
            })
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// The [`CallId`] a call entry's full parse would give, when it can be read cheaply and its
/// parts are valid; `None` means "parse it fully to know" (never a different id).
pub(crate) fn entry_call_id(entry: &str) -> Option<CallId> {
    let ident: EntryIdentity<'_> = serde_json::from_str(entry).ok()?;
    let filename = ident.filename.filter(|f| is_safe_part(f, MAX_FILENAME))?;
    let hash = match ident.hash {
        Some(h) if !h.is_empty() && !is_safe_part(h, MAX_HASH) => return None,
        h => h,
    };
    Some(CallId::new(NodeId::new(ident.node?), filename, hash))
}

/// One call, as the live-calls and archive APIs send it (see `BROADCASTIFY.md`).
///
/// Only the identity parts are required: `ts`, `node` (`systemId`) and `filename`. Every other
/// key is optional and read tolerantly: numbers may come as strings, nulls count as absent,
/// `call-ttl` and `call_ttl` are both understood. A value of the wrong type for a known key,
/// and every unknown key, is kept verbatim in [`Call::extra`], so nothing is lost and
/// [`Call::to_value`] gives it back.
///
/// The payload's `id` is the GROUP key (`{sid}-{call_tg}`), kept in [`Call::group_key`]; the
/// identity of a call is [`Call::call_id`].
///
/// ```
/// use bcfy_proto::Call;
/// let v = serde_json::json!({
///     "id": "4290-512", "ts": 1758428382, "systemId": 2893, "sid": 4290, "call_tg": 512,
///     "filename": "1758428366-512", "enc": "m4a", "hash": "qwh9zivk", "call-ttl": "1789964382",
/// });
/// let call = Call::from_value(&v).unwrap();
/// assert_eq!(call.call_id().as_str(), "2893-1758428366-512-qwh9zivk");
/// assert_eq!(call.ttl, Some(1789964382));
/// let cdn = url::Url::parse("https://calls.broadcastify.com").unwrap();
/// assert_eq!(call.audio_url(&cdn).unwrap().as_str(),
///            "https://calls.broadcastify.com/qwh9zivk/2893/1758428366-512.m4a");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `id`: the group key `{sid}-{call_tg}` as sent (not a call id).
    pub group_key: Option<String>,
    /// `ts`: ingest time, epoch seconds; the live cursor's unit. Never negative.
    pub ts: i64,
    /// `systemId`: the upload node (audio URL path part).
    pub node: NodeId,
    /// `sid`: RadioReference system id.
    pub sid: Option<SystemId>,
    /// `siteId`.
    pub site_id: Option<u64>,
    /// `tgId`.
    pub tg_id: Option<u64>,
    /// `tgCid`.
    pub tg_cid: Option<u64>,
    /// `call_tg`: the talkgroup.
    pub talkgroup: Option<TalkgroupId>,
    /// `call_type`: 3/4/5 trunked, 1/2 conventional.
    pub call_type: Option<u32>,
    /// `call_src`: source unit id (`-1`/`0` unknown).
    pub src: Option<i64>,
    /// `call_src_key`: `{sid}-{src}`.
    pub src_key: Option<String>,
    /// `call_freq`: MHz.
    pub freq_mhz: Option<f64>,
    /// `call_duration`: seconds.
    pub duration_secs: Option<f64>,
    /// `call_timediff`: about `ts - meta_stoptime`.
    pub time_diff: Option<f64>,
    /// `call-ttl` (or `call_ttl`): retention end, epoch seconds.
    pub ttl: Option<i64>,
    /// `meta_starttime`: transmission start, epoch seconds.
    pub start_time: Option<i64>,
    /// `meta_stoptime`: transmission stop, epoch seconds.
    pub stop_time: Option<i64>,
    /// `filename`: `{meta_starttime}-{call_tg}`; only `[A-Za-z0-9_-]`.
    pub filename: String,
    /// `enc`: audio extension, alphanumeric; see [`Call::enc`] for the default.
    pub enc: Option<String>,
    /// `hash`: audio path prefix, `[A-Za-z0-9_-]`; an empty hash is `None`.
    pub hash: Option<String>,
    /// `descr`: talkgroup description.
    pub descr: Option<String>,
    /// `display`: alpha tag.
    pub display: Option<String>,
    /// `grouping`: agency group.
    pub grouping: Option<String>,
    /// `tag`: service tag (3 Fire Dispatch, 2 Law Dispatch, ...).
    pub tag: Option<u32>,
    /// `metadata`: the uploader's call JSON (trunk-recorder's), kept as its text and parsed
    /// only when asked ([`Call::metadata_object`], [`RawJson::parse`]); verbatim even when it
    /// is not an object.
    pub metadata: Option<RawJson>,
    /// `score`: archive responses only.
    pub score: Option<i64>,
    /// `fid`: conventional frequency id (seen in client code only).
    pub fid: Option<u64>,
    /// `transcription` (seen in client code only).
    pub transcription: Option<String>,
    /// Unknown keys, and known keys whose value could not be read, verbatim.
    pub extra: Arc<Map<String, Value>>,
}

impl Call {
    /// A call with only its identity parts set.
    pub fn new(ts: i64, node: NodeId, filename: impl Into<String>) -> Self {
        Self {
            group_key: None,
            ts,
            node,
            sid: None,
            site_id: None,
            tg_id: None,
            tg_cid: None,
            talkgroup: None,
            call_type: None,
            src: None,
            src_key: None,
            freq_mhz: None,
            duration_secs: None,
            time_diff: None,
            ttl: None,
            start_time: None,
            stop_time: None,
            filename: filename.into(),
            enc: None,
            hash: None,
            descr: None,
            display: None,
            grouping: None,
            tag: None,
            metadata: None,
            score: None,
            fid: None,
            transcription: None,
            extra: Arc::default(),
        }
    }

    /// Reads one entry of a `calls` array.
    ///
    /// Rejects non-objects, a missing, negative or unreadable `ts`, a `systemId` that is not
    /// digits, a `filename`/`hash` outside `[A-Za-z0-9_-]`, and a non-alphanumeric `enc`.
    pub fn from_value(value: &Value) -> Result<Self, CallError> {
        match value {
            Value::Object(map) => Self::from_map(map),
            other => Err(CallError::NotAnObject {
                found: type_name(other),
            }),
        }
    }

    /// Like [`Call::from_value`], on an object.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, CallError> {
        let mut b = CallBuilder::default();
        for (key, v) in map {
            b.field(key, v.clone())?;
        }
        b.finish()
    }

    /// Like [`Call::from_value`], straight from an entry's JSON text, without building the
    /// entry as a `Value` first (only `metadata` and unknown keys become `Value`s): what a
    /// live poll uses for every new call. Gives exactly what `from_value` gives on the parsed
    /// text, duplicate keys included (the last one counts).
    ///
    /// `None` when the text is not a JSON object this reader takes (not an object, invalid,
    /// or holding a number beyond `f64`): parse it as a `Value` to learn why.
    ///
    /// ```
    /// use bcfy_proto::Call;
    /// let text = r#"{"ts": 1758428382, "systemId": "2893", "filename": "1758428366-512", "ts": 5}"#;
    /// let call = Call::from_json(text).unwrap().unwrap();
    /// assert_eq!((call.ts, call.node.get()), (5, 2893));
    /// assert_eq!(Some(Ok(call)), Some(Call::from_value(&serde_json::from_str(text).unwrap())));
    /// assert!(Call::from_json("[1]").is_none());
    /// ```
    pub fn from_json(text: &str) -> Option<Result<Self, CallError>> {
        let Fields(mut fields) = serde_json::from_str(text).ok()?;
        // A `Map` holds the last of duplicate keys, in key order, and `from_map` stops at the
        // first bad field in that order: the same here. The sort is stable, so the last of
        // each run of equal keys is the last sent.
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut b = CallBuilder::default();
        let mut it = fields.into_iter().peekable();
        while let Some((key, v)) = it.next() {
            if it.peek().is_some_and(|(next, _)| *next == key) {
                continue;
            }
            match v {
                FieldValue::Value(v) => {
                    if let Err(e) = b.field(&key, v) {
                        return Some(Err(e));
                    }
                }
                // Only `metadata` is read raw; null counts as absent, as for every key.
                FieldValue::Raw(raw) => {
                    if raw.get() != "null" {
                        b.call.metadata = Some(RawJson(raw.get().into()));
                    }
                }
            }
        }
        Some(b.finish())
    }

    /// The call's identity: `{node}-{filename}` or `{node}-{filename}-{hash}`.
    pub fn call_id(&self) -> CallId {
        CallId::new(self.node, &self.filename, self.hash.as_deref())
    }

    /// The talkgroup: from `sid` and `call_tg` when both are present, else parsed from the
    /// payload's `id`.
    pub fn group(&self) -> Option<GroupId> {
        match (self.sid, self.talkgroup) {
            (Some(sid), Some(tg)) => Some(GroupId::new(sid, tg)),
            _ => self.group_key.as_deref().and_then(|k| k.parse().ok()),
        }
    }

    /// `(system, talkgroup)` for shard topics (`calls.live.{sys}.{tg}`): the [`Call::group`],
    /// else `(0, call_tg or 0)`.
    pub fn shard_key(&self) -> (SystemId, TalkgroupId) {
        self.group().map_or_else(
            || (SystemId::new(0), self.talkgroup.unwrap_or_default()),
            |g| (g.sid, g.tg),
        )
    }

    /// The audio extension: `enc`, or `m4a` when absent (as Broadcastify's page does).
    pub fn enc(&self) -> &str {
        self.enc
            .as_deref()
            .filter(|e| !e.is_empty())
            .unwrap_or(DEFAULT_ENC)
    }

    /// The `hash`, when present and non-empty.
    pub fn hash(&self) -> Option<&str> {
        self.hash.as_deref().filter(|h| !h.is_empty())
    }

    /// `metadata` parsed, when it is an object (trunk-recorder's call JSON); `None` when
    /// absent, of another type, or holding a number `f64` cannot represent (the text stays
    /// in [`Call::metadata`]).
    pub fn metadata_object(&self) -> Option<Map<String, Value>> {
        match self.metadata.as_ref()?.parse().ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// `call_duration` as a `Duration`, when present and non-negative.
    pub fn duration(&self) -> Option<Duration> {
        self.duration_secs
            .and_then(|d| Duration::try_from_secs_f64(d).ok())
    }

    /// The call's audio URL: `{cdn}/{hash}/{node}/{filename}.{enc}`, or without the `{hash}/`
    /// part when there is no hash. Every part is validated again (the fields are public), so
    /// the URL never leaves `cdn_base`; the base's query and fragment are dropped.
    pub fn audio_url(&self, cdn_base: &Url) -> Result<Url, AudioUrlError> {
        if !is_safe_part(&self.filename, MAX_FILENAME) {
            return Err(AudioUrlError::UnsafePathPart {
                field: "filename",
                value: value_snippet(&Value::String(self.filename.clone())),
            });
        }
        let hash = self.hash();
        if let Some(h) = hash.filter(|h| !is_safe_part(h, MAX_HASH)) {
            return Err(AudioUrlError::UnsafePathPart {
                field: "hash",
                value: value_snippet(&Value::String(h.to_owned())),
            });
        }
        let enc = self.enc();
        if !is_safe_enc(enc) {
            return Err(AudioUrlError::UnsafePathPart {
                field: "enc",
                value: value_snippet(&Value::String(enc.to_owned())),
            });
        }
        if !matches!(cdn_base.scheme(), "http" | "https") || cdn_base.cannot_be_a_base() {
            return Err(AudioUrlError::InvalidBase);
        }
        let mut url = cdn_base.clone();
        url.set_query(None);
        url.set_fragment(None);
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| AudioUrlError::InvalidBase)?;
            segments.pop_if_empty();
            if let Some(h) = hash {
                segments.push(h);
            }
            // One scratch string for the two formatted segments.
            let mut part = String::with_capacity(self.filename.len() + enc.len() + 24);
            let _ = write!(part, "{}", self.node);
            segments.push(&part);
            part.clear();
            let _ = write!(part, "{}.{enc}", self.filename);
            segments.push(&part);
        }
        Ok(url)
    }

    /// The call as payload JSON (service key names; `ttl` as `call-ttl`), including
    /// [`Call::extra`]. [`Call::from_value`] of the result gives an equal `Call`.
    pub fn to_value(&self) -> Value {
        let mut m: Map<String, Value> = (*self.extra).clone();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        let s = |x: &Option<String>| x.clone().map(Value::String);
        // Integral values go back as integers, as the service sends them (`"call_duration": 11`).
        let f = |x: Option<f64>| {
            x.and_then(|x| match f64_to_i64(x) {
                Some(i) if x.fract() == 0.0 && i.unsigned_abs() < (1 << 53) => Some(Value::from(i)),
                _ => Number::from_f64(x).map(Value::Number),
            })
        };
        put("id", s(&self.group_key));
        put("ts", Some(self.ts.into()));
        put("systemId", Some(self.node.get().into()));
        put("sid", self.sid.map(|x| x.get().into()));
        put("siteId", self.site_id.map(Value::from));
        put("tgId", self.tg_id.map(Value::from));
        put("tgCid", self.tg_cid.map(Value::from));
        put("call_tg", self.talkgroup.map(|x| x.get().into()));
        put("call_type", self.call_type.map(Value::from));
        put("call_src", self.src.map(Value::from));
        put("call_src_key", s(&self.src_key));
        put("call_freq", f(self.freq_mhz));
        put("call_duration", f(self.duration_secs));
        put("call_timediff", f(self.time_diff));
        // An unreadable `call-ttl` kept in `extra` must stay there: then the readable value
        // came from `call_ttl`, and goes back under that name.
        let ttl_key = if self.extra.contains_key("call-ttl") {
            "call_ttl"
        } else {
            "call-ttl"
        };
        put(ttl_key, self.ttl.map(Value::from));
        put("meta_starttime", self.start_time.map(Value::from));
        put("meta_stoptime", self.stop_time.map(Value::from));
        put("filename", Some(Value::String(self.filename.clone())));
        put("enc", s(&self.enc));
        put("hash", s(&self.hash));
        put("descr", s(&self.descr));
        put("display", s(&self.display));
        put("grouping", s(&self.grouping));
        put("tag", self.tag.map(Value::from));
        put("metadata", self.metadata.as_ref().map(RawJson::to_value));
        put("score", self.score.map(Value::from));
        put("fid", self.fid.map(Value::from));
        put("transcription", s(&self.transcription));
        Value::Object(m)
    }
}

impl Serialize for Call {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Call {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Self::from_value(&v).map_err(serde::de::Error::custom)
    }
}
