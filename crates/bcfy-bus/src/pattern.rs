//! Topics and NATS-style subscription patterns.
//!
//! A topic is a non-empty list of non-empty segments separated by `.`, without whitespace or
//! control characters and without wildcards. A pattern is the same, except that a segment may be
//! `*` (exactly one segment) and the last segment may be `>` (one or more trailing segments).
//! Matching walks both strings segment by segment and never allocates.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{BusError, InvalidReason};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    Star,
    /// `>`: one or more trailing segments.
    Rest,
}

/// A parsed, validated subscription pattern such as `calls.live.*.*` or `calls.>`.
///
/// Cheap to clone. [`Pattern::matches`] costs one pass over the topic, without allocating.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    raw: Arc<str>,
    segments: Box<[Segment]>,
}

impl Pattern {
    /// Parses and validates a pattern.
    ///
    /// # Errors
    /// [`BusError::InvalidPattern`] when the pattern is empty, has an empty segment, contains
    /// whitespace or a control character, has `>` anywhere but last, or mixes `*`/`>` with other
    /// characters in one segment.
    pub fn parse(pattern: &str) -> Result<Self, BusError> {
        check_common(pattern).map_err(|r| BusError::invalid_pattern(pattern, r))?;
        let count = pattern.split('.').count();
        let mut segments = Vec::with_capacity(count);
        for (index, seg) in pattern.split('.').enumerate() {
            let parsed = match seg {
                "*" => Segment::Star,
                ">" if index + 1 == count => Segment::Rest,
                ">" => {
                    return Err(BusError::invalid_pattern(
                        pattern,
                        InvalidReason::RestNotLast { index },
                    ));
                }
                s if s.contains(['*', '>']) => {
                    return Err(BusError::invalid_pattern(
                        pattern,
                        InvalidReason::PartialWildcard { index },
                    ));
                }
                s => Segment::Literal(s.into()),
            };
            segments.push(parsed);
        }
        Ok(Self {
            raw: pattern.into(),
            segments: segments.into_boxed_slice(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub(crate) fn raw(&self) -> &Arc<str> {
        &self.raw
    }

    /// Whether the pattern contains no wildcard (it matches exactly one topic).
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `topic` matches this pattern.
    ///
    /// `topic` is expected to be a valid topic (see [`validate_topic`]); for an invalid one the
    /// answer is unspecified but there is no panic.
    pub fn matches(&self, topic: &str) -> bool {
        // A hand-rolled byte walk: this runs once per subscriber per publication, and
        // `str::split` plus slice equality (a `memcmp` call per segment) cost several times more
        // for topics of a few short segments.
        let t = topic.as_bytes();
        // Start of the current topic segment; `t.len() + 1` once every segment is consumed.
        let mut pos = 0;
        for seg in &self.segments {
            if pos > t.len() {
                return false;
            }
            match seg {
                Segment::Rest => return true,
                Segment::Star => {
                    pos = match t[pos..].iter().position(|&b| b == b'.') {
                        Some(dot) => pos + dot + 1,
                        None => t.len() + 1,
                    };
                }
                Segment::Literal(lit) => {
                    let lit = lit.as_bytes();
                    let end = pos + lit.len();
                    if end > t.len() || !bytes_eq(&t[pos..end], lit) {
                        return false;
                    }
                    if end < t.len() && t[end] != b'.' {
                        return false;
                    }
                    pos = end + 1;
                }
            }
        }
        pos > t.len()
    }
}

/// Byte-wise equality of two slices of equal length, inlined (segments are a few bytes long).
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&&*self.raw).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Pattern {
    type Err = BusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = BusError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Pattern {
    type Error = BusError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl TryFrom<&String> for Pattern {
    type Error = BusError;

    fn try_from(s: &String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

/// Checks that `topic` is a concrete topic that can be published: non-empty, no empty segment,
/// no whitespace or control character, no `*` or `>`. Does not allocate unless it fails.
///
/// # Errors
/// [`BusError::InvalidTopic`] saying what is wrong.
pub fn validate_topic(topic: &str) -> Result<(), BusError> {
    if is_plain_topic(topic.as_bytes()) {
        return Ok(());
    }
    check_common(topic).map_err(|r| BusError::invalid_topic(topic, r))?;
    // Wildcards are ASCII, so a byte scan is enough; the segment index is only computed for
    // the error.
    if let Some(pos) = topic.bytes().position(|b| b == b'*' || b == b'>') {
        let index = topic[..pos].matches('.').count();
        return Err(BusError::invalid_topic(
            topic,
            InvalidReason::WildcardInTopic { index },
        ));
    }
    Ok(())
}

/// One pass over the bytes accepting the common case: printable ASCII, no wildcard, no empty
/// segment. Anything else (including any non-ASCII topic) takes the slower, precise path.
#[inline]
fn is_plain_topic(t: &[u8]) -> bool {
    let mut prev_dot = true; // a leading dot is an empty first segment
    for &b in t {
        if b == b'.' {
            if prev_dot {
                return false;
            }
            prev_dot = true;
        } else if (b'!'..=b'~').contains(&b) && b != b'*' && b != b'>' {
            prev_dot = false;
        } else {
            return false;
        }
    }
    !prev_dot // also rejects the empty topic and a trailing dot
}

/// The rules shared by topics and patterns.
fn check_common(s: &str) -> Result<(), InvalidReason> {
    if s.is_empty() {
        return Err(InvalidReason::Empty);
    }
    if s.is_ascii() {
        // The common case (every topic of the spec): a byte loop, no UTF-8 decoding.
        for (offset, b) in s.bytes().enumerate() {
            if b.is_ascii_whitespace() || b.is_ascii_control() {
                return Err(InvalidReason::Whitespace { offset });
            }
        }
    } else if let Some((offset, _)) = s
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(InvalidReason::Whitespace { offset });
    }
    if let Some(index) = s.split('.').position(str::is_empty) {
        return Err(InvalidReason::EmptySegment { index });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BusErrorKind;

    fn m(pattern: &str, topic: &str) -> bool {
        validate_topic(topic).unwrap();
        Pattern::parse(pattern).unwrap().matches(topic)
    }

    #[test]
    fn matching_table() {
        let table: &[(&str, &str, bool)] = &[
            // exact
            ("calls.live", "calls.live", true),
            ("calls.live", "calls.live.4290.512", false),
            ("calls.live", "calls", false),
            ("calls.live", "calls.lives", false),
            ("calls.live.4290.512", "calls.live.4290.512", true),
            ("calls.live.4290.512", "calls.live.4290.513", false),
            // `*` is exactly one segment
            ("calls.live.*.*", "calls.live.4290.512", true),
            ("calls.live.*.*", "calls.live.4290", false),
            ("calls.live.*.*", "calls.live", false),
            ("calls.live.*.*", "calls.live.4290.512.x", false),
            ("calls.live.*.*", "calls.audio.4290.512", false),
            ("calls.live.*.512", "calls.live.1.512", true),
            ("calls.live.*.512", "calls.live.1.513", false),
            (
                "calls.audio.raw.*",
                "calls.audio.raw.123-20240101_1.m4a",
                false,
            ),
            ("calls.audio.raw.*", "calls.audio.raw.123-20240101_1", true),
            ("calls.audio.raw.*", "calls.audio.raw", false),
            ("calls.audio.raw.*", "calls.audio.raw.a.b", false),
            ("*", "calls", true),
            ("*", "calls.live", false),
            ("*.live", "calls.live", true),
            // `>` is one or more trailing segments
            ("calls.>", "calls.live", true),
            ("calls.>", "calls.live.4290.512", true),
            ("calls.>", "calls.audio.raw.1-a", true),
            ("calls.>", "calls", false),
            ("calls.>", "transcription.complete", false),
            (">", "calls", true),
            (">", "calls.live.1.2", true),
            ("calls.*.>", "calls.live", false),
            ("calls.*.>", "calls.live.1", true),
            ("*.*.raw.>", "calls.audio.raw.x", true),
            ("transcription.complete", "transcription.complete", true),
        ];
        for &(pattern, topic, expected) in table {
            assert_eq!(m(pattern, topic), expected, "{pattern} vs {topic}");
        }
    }

    #[test]
    fn invalid_patterns_are_rejected_with_a_reason() {
        let table: &[(&str, InvalidReason)] = &[
            ("", InvalidReason::Empty),
            (".", InvalidReason::EmptySegment { index: 0 }),
            ("calls..live", InvalidReason::EmptySegment { index: 1 }),
            ("calls.", InvalidReason::EmptySegment { index: 1 }),
            (".calls", InvalidReason::EmptySegment { index: 0 }),
            ("calls.>.raw", InvalidReason::RestNotLast { index: 1 }),
            (">.calls", InvalidReason::RestNotLast { index: 0 }),
            ("calls.li*", InvalidReason::PartialWildcard { index: 1 }),
            ("calls.**", InvalidReason::PartialWildcard { index: 1 }),
            ("calls.>>", InvalidReason::PartialWildcard { index: 1 }),
            ("calls. live", InvalidReason::Whitespace { offset: 6 }),
            ("calls.live ", InvalidReason::Whitespace { offset: 10 }),
            ("calls\t.live", InvalidReason::Whitespace { offset: 5 }),
            ("calls.\u{a0}", InvalidReason::Whitespace { offset: 6 }),
            ("calls.\u{7}", InvalidReason::Whitespace { offset: 6 }),
        ];
        for &(pattern, reason) in table {
            let err = Pattern::parse(pattern).unwrap_err();
            assert_eq!(err.kind(), BusErrorKind::InvalidPattern, "{pattern:?}");
            assert_eq!(
                err,
                BusError::InvalidPattern {
                    pattern: pattern.to_owned(),
                    reason
                },
                "{pattern:?}"
            );
        }
        let msg = Pattern::parse("calls.>.raw").unwrap_err().to_string();
        assert!(
            msg.contains("calls.>.raw") && msg.contains("not the last"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_topics_are_rejected_with_a_reason() {
        let table: &[(&str, InvalidReason)] = &[
            ("", InvalidReason::Empty),
            ("calls..live", InvalidReason::EmptySegment { index: 1 }),
            ("calls.live.", InvalidReason::EmptySegment { index: 2 }),
            ("calls.*", InvalidReason::WildcardInTopic { index: 1 }),
            ("calls.>", InvalidReason::WildcardInTopic { index: 1 }),
            (
                "calls.live.a*b",
                InvalidReason::WildcardInTopic { index: 2 },
            ),
            ("calls live", InvalidReason::Whitespace { offset: 5 }),
            ("calls.live\n", InvalidReason::Whitespace { offset: 10 }),
        ];
        for &(topic, reason) in table {
            let err = validate_topic(topic).unwrap_err();
            assert_eq!(
                err,
                BusError::InvalidTopic {
                    topic: topic.to_owned(),
                    reason
                },
                "{topic:?}"
            );
        }
        for ok in [
            "calls.live",
            "calls.live.4290.512",
            "calls.audio.raw.1-ab_c",
            "x",
            "é.ü",
        ] {
            validate_topic(ok).unwrap();
        }
    }

    /// The byte-walking matcher against the obvious `split`-based definition.
    #[test]
    fn matcher_agrees_with_the_reference_definition() {
        fn reference(pattern: &str, topic: &str) -> bool {
            let p: Vec<&str> = pattern.split('.').collect();
            let t: Vec<&str> = topic.split('.').collect();
            for (i, seg) in p.iter().enumerate() {
                match *seg {
                    ">" => return t.len() > i,
                    "*" if i < t.len() => {}
                    lit if i < t.len() && t[i] == lit => {}
                    _ => return false,
                }
            }
            p.len() == t.len()
        }
        let segs = ["a", "ab", "b", "*", ">"];
        let mut patterns = Vec::new();
        for a in segs {
            patterns.push(a.to_owned());
            for b in segs {
                patterns.push(format!("{a}.{b}"));
                for c in segs {
                    patterns.push(format!("{a}.{b}.{c}"));
                }
            }
        }
        let tsegs = ["a", "ab", "b", "abc"];
        let mut topics = Vec::new();
        for a in tsegs {
            topics.push(a.to_owned());
            for b in tsegs {
                topics.push(format!("{a}.{b}"));
                for c in tsegs {
                    topics.push(format!("{a}.{b}.{c}"));
                    topics.push(format!("{a}.{b}.{c}.a"));
                }
            }
        }
        let mut checked = 0;
        for p in &patterns {
            let Ok(parsed) = Pattern::parse(p) else {
                continue;
            };
            for t in &topics {
                assert_eq!(parsed.matches(t), reference(p, t), "{p} vs {t}");
                checked += 1;
            }
        }
        assert!(checked > 5000, "{checked}");
    }

    #[test]
    fn exactness_and_round_trip() {
        let p: Pattern = "calls.live.*.*".parse().unwrap();
        assert!(!p.is_exact());
        assert_eq!(p.to_string(), "calls.live.*.*");
        assert!(Pattern::parse("calls.live").unwrap().is_exact());
        assert!(!Pattern::parse("calls.>").unwrap().is_exact());
    }
}
