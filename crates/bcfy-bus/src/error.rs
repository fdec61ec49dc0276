//! The bus's one error type.

use std::fmt;

/// Longest pattern or topic text kept in an error (in characters), so a hostile or
/// accidental megabyte-long topic never ends up in a log line.
const MAX_SNIPPET_CHARS: usize = 96;

/// Why a pattern or topic was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The whole string is empty.
    Empty,
    /// A segment between two dots (or at either end) is empty, e.g. `calls..live` or `calls.`.
    EmptySegment {
        /// Zero-based index of the empty segment.
        index: usize,
    },
    /// The string contains whitespace or a control character.
    Whitespace {
        /// Byte offset of the offending character.
        offset: usize,
    },
    /// `>` appears before the last segment of a pattern (`calls.>.raw`).
    RestNotLast {
        /// Zero-based index of the `>` segment.
        index: usize,
    },
    /// `*` or `>` is mixed with other characters in one segment (`calls.li*`).
    PartialWildcard {
        /// Zero-based index of the segment.
        index: usize,
    },
    /// A topic (what is published) contains a wildcard: only patterns may.
    WildcardInTopic {
        /// Zero-based index of the segment.
        index: usize,
    },
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::EmptySegment { index } => write!(f, "segment {index} is empty"),
            Self::Whitespace { offset } => {
                write!(f, "whitespace or control character at byte {offset}")
            }
            Self::RestNotLast { index } => {
                write!(f, "`>` at segment {index} is not the last segment")
            }
            Self::PartialWildcard { index } => write!(
                f,
                "segment {index} mixes a wildcard with other characters (`*` and `>` must be whole segments)"
            ),
            Self::WildcardInTopic { index } => write!(
                f,
                "segment {index} is a wildcard; topics that are published must be concrete"
            ),
        }
    }
}

/// What kind of [`BusError`] this is, for matching without destructuring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BusErrorKind {
    /// A subscription pattern is malformed.
    InvalidPattern,
    /// A published topic is malformed.
    InvalidTopic,
    /// [`SubscribeOptions`](crate::SubscribeOptions) are out of range.
    InvalidOptions,
    /// The bus is shut down: it accepts no more publications or subscriptions.
    Closed,
    /// A handler subscription was made outside a Tokio runtime.
    NoRuntime,
}

/// An error from the event bus.
///
/// None of these is worth retrying as is ([`BusError::is_retryable`] is always `false`):
/// invalid input stays invalid and a closed bus stays closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A subscription pattern is malformed.
    #[error("invalid subscription pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern, capped in length.
        pattern: String,
        /// What is wrong with it.
        reason: InvalidReason,
    },
    /// A published topic is malformed.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The topic, capped in length.
        topic: String,
        /// What is wrong with it.
        reason: InvalidReason,
    },
    /// [`SubscribeOptions`](crate::SubscribeOptions) are out of range.
    #[error("invalid subscribe options: {0}")]
    InvalidOptions(&'static str),
    /// The bus is shut down.
    #[error("the event bus is shut down")]
    Closed,
    /// A handler subscription needs a Tokio runtime to spawn its task on.
    #[error("subscribing a handler needs a Tokio runtime: call it from within one")]
    NoRuntime,
}

impl BusError {
    /// The kind of this error.
    pub fn kind(&self) -> BusErrorKind {
        match self {
            Self::InvalidPattern { .. } => BusErrorKind::InvalidPattern,
            Self::InvalidTopic { .. } => BusErrorKind::InvalidTopic,
            Self::InvalidOptions(_) => BusErrorKind::InvalidOptions,
            Self::Closed => BusErrorKind::Closed,
            Self::NoRuntime => BusErrorKind::NoRuntime,
        }
    }

    /// Whether retrying the same call could succeed: never, for this error type.
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub(crate) fn invalid_pattern(pattern: &str, reason: InvalidReason) -> Self {
        Self::InvalidPattern {
            pattern: capped(pattern),
            reason,
        }
    }

    pub(crate) fn invalid_topic(topic: &str, reason: InvalidReason) -> Self {
        Self::InvalidTopic {
            topic: capped(topic),
            reason,
        }
    }
}

fn capped(s: &str) -> String {
    match s.char_indices().nth(MAX_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_capped_in_the_error() {
        let long = "a".repeat(10_000);
        let err = BusError::invalid_topic(&long, InvalidReason::Empty);
        assert!(err.to_string().len() < 200, "{err}");
        assert_eq!(err.kind(), BusErrorKind::InvalidTopic);
        assert!(!err.is_retryable());
    }
}
