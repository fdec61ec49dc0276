//! The call object of live-calls and archive responses.

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
    /// `metadata`: the uploader's call JSON, verbatim (even when not an object; see
    /// [`Call::metadata_object`]).
    pub metadata: Option<Value>,
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
        let mut extra = Map::new();
        let mut ts = None;
        let mut node = None;
        let mut filename = None;
        let mut call = Self::new(0, NodeId::new(0), String::new());
        let mut ttl_hyphen: Option<Option<i64>> = None;
        let mut ttl_underscore: Option<&Value> = None;

        for (key, v) in map {
            if v.is_null() {
                continue;
            }
            // A known key whose value cannot be read is kept verbatim in `extra`.
            macro_rules! opt {
                ($field:ident, $read:expr) => {{
                    match $read(v) {
                        Some(x) => call.$field = Some(x),
                        None => {
                            extra.insert(key.clone(), v.clone());
                        }
                    }
                }};
            }
            match key.as_str() {
                "ts" => {
                    let t = read_i64(v).ok_or(CallError::InvalidField {
                        field: "ts",
                        reason: "not an integer",
                    })?;
                    if t < 0 {
                        return Err(CallError::OutOfRange {
                            field: "ts".into(),
                            value: t.to_string(),
                        });
                    }
                    ts = Some(t);
                }
                "systemId" => node = Some(read_node(v)?),
                "filename" => {
                    let f = read_string(v).ok_or(CallError::InvalidField {
                        field: "filename",
                        reason: "not a string",
                    })?;
                    if !is_safe_part(&f, MAX_FILENAME) {
                        return Err(CallError::unsafe_part("filename", v));
                    }
                    filename = Some(f);
                }
                "hash" => {
                    let h = read_string(v).ok_or(CallError::InvalidField {
                        field: "hash",
                        reason: "not a string",
                    })?;
                    if !h.is_empty() {
                        if !is_safe_part(&h, MAX_HASH) {
                            return Err(CallError::unsafe_part("hash", v));
                        }
                        call.hash = Some(h);
                    }
                }
                "enc" => {
                    let e = read_string(v).ok_or(CallError::InvalidField {
                        field: "enc",
                        reason: "not a string",
                    })?;
                    if !e.is_empty() {
                        if !is_safe_enc(&e) {
                            return Err(CallError::unsafe_part("enc", v));
                        }
                        call.enc = Some(e);
                    }
                }
                "id" => opt!(group_key, read_string),
                "sid" => opt!(sid, |v| read_u64(v).map(SystemId::new)),
                "siteId" => opt!(site_id, read_u64),
                "tgId" => opt!(tg_id, read_u64),
                "tgCid" => opt!(tg_cid, read_u64),
                "call_tg" => opt!(talkgroup, |v| read_u64(v).map(TalkgroupId::new)),
                "call_type" => opt!(call_type, read_u32),
                "call_src" => opt!(src, read_i64),
                "call_src_key" => opt!(src_key, read_string),
                "call_freq" => opt!(freq_mhz, read_f64),
                "call_duration" => opt!(duration_secs, read_f64),
                "call_timediff" => opt!(time_diff, read_f64),
                "call-ttl" => {
                    ttl_hyphen = Some(read_i64(v));
                    if ttl_hyphen == Some(None) {
                        extra.insert(key.clone(), v.clone());
                    }
                }
                "call_ttl" => ttl_underscore = Some(v),
                "meta_starttime" => opt!(start_time, read_i64),
                "meta_stoptime" => opt!(stop_time, read_i64),
                "descr" => opt!(descr, read_string),
                "display" => opt!(display, read_string),
                "grouping" => opt!(grouping, read_string),
                "tag" => opt!(tag, read_u32),
                "metadata" => call.metadata = Some(v.clone()),
                "score" => opt!(score, read_i64),
                "fid" => opt!(fid, read_u64),
                "transcription" => opt!(transcription, read_string),
                _ => {
                    extra.insert(key.clone(), v.clone());
                }
            }
        }
        // `call-ttl` is what the service sends; `call_ttl` is read when it is absent or
        // unreadable, and otherwise kept in `extra`.
        call.ttl = ttl_hyphen.flatten();
        if let Some(v) = ttl_underscore {
            match (call.ttl, read_i64(v)) {
                (None, Some(t)) => call.ttl = Some(t),
                _ => {
                    extra.insert("call_ttl".to_owned(), v.clone());
                }
            }
        }
        call.ts = ts.ok_or(CallError::MissingField("ts"))?;
        call.node = node.ok_or(CallError::MissingField("systemId"))?;
        call.filename = filename.ok_or(CallError::MissingField("filename"))?;
        call.extra = Arc::new(extra);
        Ok(call)
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

    /// `metadata` when it is an object (trunk-recorder's call JSON); `None` when absent or
    /// of another type (the raw value stays in [`Call::metadata`]).
    pub fn metadata_object(&self) -> Option<&Map<String, Value>> {
        self.metadata.as_ref().and_then(Value::as_object)
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
            segments.push(&self.node.to_string());
            segments.push(&format!("{}.{enc}", self.filename));
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
        put("metadata", self.metadata.clone());
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
