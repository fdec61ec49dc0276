//! What a live-calls request subscribes to, and the exact form it sends.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, NodeId, SystemId};

/// What a live producer follows. Each variant produces the form fields Broadcastify's own page
/// sends (`BROADCASTIFY.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Subscription {
    /// One or more talkgroups, polled in ONE request (`groups[]` repeated). Never empty when
    /// built with [`Subscription::talkgroups`].
    Talkgroups(Vec<GroupId>),
    /// A playlist, by uuid (`playlist_uuid`).
    Playlist(String),
    /// A whole trunked system (`sid`).
    System(SystemId),
    /// A whole upload node (`systemId`).
    Node(NodeId),
}

/// Why a subscription cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// No talkgroup was given.
    #[error("a talkgroup subscription needs at least one talkgroup")]
    NoTalkgroups,
    /// The playlist id is not a uuid-like string (1 to 64 hex digits and dashes).
    #[error("invalid playlist uuid (expected hex digits and dashes)")]
    InvalidPlaylist,
}

impl Subscription {
    /// Talkgroups, deduplicated in first-seen order; an empty list is an error.
    pub fn talkgroups(
        groups: impl IntoIterator<Item = GroupId>,
    ) -> Result<Self, SubscriptionError> {
        let mut out: Vec<GroupId> = Vec::new();
        for g in groups {
            if !out.contains(&g) {
                out.push(g);
            }
        }
        if out.is_empty() {
            return Err(SubscriptionError::NoTalkgroups);
        }
        Ok(Self::Talkgroups(out))
    }

    /// A playlist by uuid (validated: hex digits and dashes, at most 64 characters).
    pub fn playlist(uuid: impl Into<String>) -> Result<Self, SubscriptionError> {
        let uuid = uuid.into();
        let ok = !uuid.is_empty()
            && uuid.len() <= 64
            && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if ok {
            Ok(Self::Playlist(uuid))
        } else {
            Err(SubscriptionError::InvalidPlaylist)
        }
    }

    /// Checks the invariants the constructors enforce (for values built directly or
    /// deserialized).
    pub fn validate(&self) -> Result<(), SubscriptionError> {
        match self {
            Self::Talkgroups(g) if g.is_empty() => Err(SubscriptionError::NoTalkgroups),
            Self::Playlist(p) => Self::playlist(p.clone()).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The talkgroups, for a talkgroup subscription.
    pub fn groups(&self) -> &[GroupId] {
        match self {
            Self::Talkgroups(g) => g,
            _ => &[],
        }
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Talkgroups(g) => {
                f.write_str("talkgroups ")?;
                for (i, g) in g.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{g}")?;
                }
                Ok(())
            }
            Self::Playlist(p) => write!(f, "playlist {p}"),
            Self::System(s) => write!(f, "system {s}"),
            Self::Node(n) => write!(f, "node {n}"),
        }
    }
}

/// The per-session random key the page sends as `sessionKey`: `xxxxxxxx-yyyy` (hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(String);

impl SessionKey {
    /// `{hex8:08x}-{hex4:04x}`.
    ///
    /// ```
    /// assert_eq!(bcfy_proto::SessionKey::new(0xdead_beef, 0x42).as_str(), "deadbeef-0042");
    /// ```
    pub fn new(hex8: u32, hex4: u16) -> Self {
        Self(format!("{hex8:08x}-{hex4:04x}"))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The form of one `POST /calls/apis/live-calls`.
///
/// ```
/// use bcfy_proto::{LiveCallsForm, SessionKey, Subscription};
/// let sub = Subscription::talkgroups(["4290-512".parse().unwrap(), "4290-513".parse().unwrap()]).unwrap();
/// let key = SessionKey::new(0x0123_abcd, 0x00ef);
/// let form = LiveCallsForm { subscription: &sub, pos: 1758428083.0, do_init: true, session_key: &key };
/// assert_eq!(form.encode(),
///     "groups%5B%5D=4290-512&groups%5B%5D=4290-513&pos=1758428083&doInit=1&systemId=0&sid=0&sessionKey=0123abcd-00ef");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LiveCallsForm<'a> {
    /// What to poll.
    pub subscription: &'a Subscription,
    /// The cursor, epoch seconds.
    pub pos: f64,
    /// First request of the session.
    pub do_init: bool,
    /// The session's key.
    pub session_key: &'a SessionKey,
}

/// `pos` as the page sends it: an integer, or 3 decimals. A non-finite or negative cursor is
/// sent as `0` rather than as text the server cannot read.
pub(crate) fn format_pos(pos: f64) -> String {
    if !pos.is_finite() || pos <= 0.0 {
        return "0".to_owned();
    }
    if pos.fract() == 0.0 {
        format!("{pos:.0}")
    } else {
        let s = format!("{pos:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_owned()
    }
}

impl LiveCallsForm<'_> {
    /// The `application/x-www-form-urlencoded` body: for talkgroups `groups[]` (repeated),
    /// `pos`, `doInit`, `systemId=0`, `sid=0`, `sessionKey`; for a playlist `playlist_uuid`
    /// with `systemId=0`, `sid=0`; for a system `sid=<id>`, `systemId=0`; for a node
    /// `systemId=<id>`, `sid=0`.
    pub fn encode(&self) -> String {
        let mut f = url::form_urlencoded::Serializer::new(String::new());
        let (system_id, sid) = match self.subscription {
            Subscription::Talkgroups(groups) => {
                for g in groups {
                    f.append_pair("groups[]", &g.to_string());
                }
                (0, 0)
            }
            Subscription::Playlist(uuid) => {
                f.append_pair("playlist_uuid", uuid);
                (0, 0)
            }
            Subscription::System(sid) => (0, sid.get()),
            Subscription::Node(node) => (node.get(), 0),
        };
        f.append_pair("pos", &format_pos(self.pos));
        f.append_pair("doInit", if self.do_init { "1" } else { "0" });
        f.append_pair("systemId", &system_id.to_string());
        f.append_pair("sid", &sid.to_string());
        f.append_pair("sessionKey", self.session_key.as_str());
        f.finish()
    }
}
