//! Typed identifiers: nodes, systems, talkgroups, groups and calls.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw numeric id.
            pub const fn new(id: u64) -> Self {
                Self(id)
            }

            /// The raw numeric id.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u64> for $name {
            fn from(id: u64) -> Self {
                Self(id)
            }
        }
    };
}

numeric_id!(
    /// An upload node: the payload's `systemId`. It is the second path segment of a call's
    /// audio URL (not the RadioReference system id, see [`SystemId`]).
    NodeId
);
numeric_id!(
    /// A RadioReference system id: the payload's `sid`, the `{sid}` of `groups[]`.
    SystemId
);
numeric_id!(
    /// A talkgroup number: the payload's `call_tg`.
    TalkgroupId
);

/// A talkgroup of a system, `{sid}-{tg}`: the payload's `id`, the `groups[]` form value and the
/// archive's `group` query value.
///
/// ```
/// use bcfy_proto::GroupId;
/// let g: GroupId = "4290-512".parse().unwrap();
/// assert_eq!(g.sid.get(), 4290);
/// assert_eq!(g.tg.get(), 512);
/// assert_eq!(g.to_string(), "4290-512");
/// assert!("4290".parse::<GroupId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId {
    /// RadioReference system id.
    pub sid: SystemId,
    /// Talkgroup number.
    pub tg: TalkgroupId,
}

impl GroupId {
    /// Builds a group from its parts.
    pub const fn new(sid: SystemId, tg: TalkgroupId) -> Self {
        Self { sid, tg }
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.sid, self.tg)
    }
}

/// Why a string is not a `{sid}-{tg}` group id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid group id {input:?}: {reason} (expected \"{{sid}}-{{tg}}\", e.g. \"4290-512\")")]
pub struct GroupIdError {
    input: String,
    reason: &'static str,
}

impl GroupIdError {
    /// The offending input (capped at 64 characters).
    pub fn input(&self) -> &str {
        &self.input
    }

    /// A short reason.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

fn parse_decimal_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for GroupId {
    type Err = GroupIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| GroupIdError {
            input: crate::snippet::cap_chars(s, 64),
            reason,
        };
        let (sid, tg) = s.split_once('-').ok_or_else(|| err("no '-' separator"))?;
        let sid = parse_decimal_u64(sid).ok_or_else(|| err("system id is not a decimal number"))?;
        let tg = parse_decimal_u64(tg).ok_or_else(|| err("talkgroup is not a decimal number"))?;
        Ok(Self::new(SystemId(sid), TalkgroupId(tg)))
    }
}

impl Serialize for GroupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GroupId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `s` is a safe path or topic part: non-empty, at most `max` bytes, only
/// `[A-Za-z0-9_-]`.
pub(crate) fn is_safe_part(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(is_id_byte)
}

/// `[A-Za-z0-9_-]`: the bytes a call id (and each URL part it comes from) may hold.
fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The identity of one uploaded call: `{node}-{filename}` or `{node}-{filename}-{hash}`.
///
/// The payload carries no call id (its `id` is the group key); node and file name identify an
/// upload. A `CallId` only ever contains `[A-Za-z0-9_-]`, so it can be a topic segment or a
/// file name. Cloning is cheap (`Arc<str>`).
///
/// ```
/// use bcfy_proto::{CallId, NodeId};
/// let id = CallId::new(NodeId::new(2893), "1758428366-512", Some("qwh9zivk"));
/// assert_eq!(id.as_str(), "2893-1758428366-512-qwh9zivk");
/// assert_eq!(CallId::new(NodeId::new(2893), "1758428366-512", Some("")).as_str(), "2893-1758428366-512");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(Arc<str>);

impl CallId {
    /// Derives the id of a call from its node, file name and optional hash (an empty hash
    /// counts as none). Characters outside `[A-Za-z0-9_-]` (never present in a call that
    /// [`crate::Call::from_value`] accepted) are replaced by `_` to keep the id topic-safe.
    pub fn new(node: NodeId, filename: &str, hash: Option<&str>) -> Self {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(filename.len() + 32);
        // Straight into the id, not through a `String` of its own.
        let _ = write!(s, "{node}-");
        push_sanitized(&mut s, filename);
        if let Some(h) = hash.filter(|h| !h.is_empty()) {
            s.push('-');
            push_sanitized(&mut s, h);
        }
        Self(s.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn push_sanitized(out: &mut String, part: &str) {
    // Every part of a real call is already safe: copy it whole instead of char by char.
    if part.bytes().all(is_id_byte) {
        out.push_str(part);
        return;
    }
    out.extend(part.chars().map(|c| {
        if u8::try_from(c).is_ok_and(is_id_byte) {
            c
        } else {
            '_'
        }
    }));
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CallId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a string is not a call id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid call id: must be 1 to 512 characters of [A-Za-z0-9_-]")]
pub struct CallIdError;

impl FromStr for CallId {
    type Err = CallIdError;

    /// Accepts any non-empty string of `[A-Za-z0-9_-]` (at most 512 bytes).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_safe_part(s, 512) {
            Ok(Self(s.into()))
        } else {
            Err(CallIdError)
        }
    }
}

impl Serialize for CallId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CallId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
