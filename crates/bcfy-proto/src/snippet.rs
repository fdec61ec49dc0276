//! Sanitized, length-capped payload snippets for errors and logs.

/// Keys whose value is a secret, matched ASCII-case-insensitively; the value runs to the next
/// separator.
const SECRET_KEYS: &[&str] = &[
    "bcfyuser1=",
    "password=",
    "api_key=",
    "apikey=",
    "token=",
    "authorization: ",
    "bearer ",
];

/// How many input bytes are looked at, per output character allowed: enough to fill the
/// output even when much is escaped, without scanning an 8 MiB body for a 200-char snippet.
const SCAN_FACTOR: usize = 4;

fn is_value_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '&' | ',' | '"' | '\'' | '<' | '>' | '}' | ')')
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn starts_with_ignore_case(hay: &str, needle: &str) -> bool {
    hay.len() >= needle.len()
        && hay.as_bytes()[..needle.len()].eq_ignore_ascii_case(needle.as_bytes())
}

/// Replaces secret values (`bcfyuser1=…`, `password=…`, `Bearer …`, `sk-…` keys) by `[redacted]`.
pub(crate) fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if let Some(key) = SECRET_KEYS
            .iter()
            .find(|k| starts_with_ignore_case(rest, k))
        {
            let (k, after) = rest.split_at(key.len());
            // "Authorization: Bearer x" : keep the scheme word, redact what follows it.
            let after = match after.get(..7) {
                Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => {
                    out.push_str(k);
                    out.push_str(scheme);
                    &after[7..]
                }
                _ => {
                    out.push_str(k);
                    after
                }
            };
            let end = after.find(is_value_end).unwrap_or(after.len());
            if end > 0 {
                out.push_str("[redacted]");
            }
            rest = &after[end..];
            prev = k.chars().last();
            continue;
        }
        if c == 's' && !prev.is_some_and(is_token_char) && starts_with_ignore_case(rest, "sk-") {
            let tail = &rest[3..];
            let end = tail
                .find(|ch: char| !is_token_char(ch))
                .unwrap_or(tail.len());
            if end >= 8 {
                out.push_str("[redacted]");
                rest = &tail[end..];
                prev = Some('x');
                continue;
            }
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// At most `max` characters of `s` (cut on a character boundary).
pub(crate) fn cap_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// A sanitized, length-capped rendering of a payload, safe to put in an error or a log.
///
/// The bytes are decoded as lossy UTF-8, secret values (`bcfyuser1=…` cookies, `password=…`,
/// `Bearer …` and `sk-…` keys) are replaced by `[redacted]`, control characters are escaped
/// (`\n`, `\u{1b}`), and the result holds at most `max` characters plus a trailing `…` when
/// it was cut.
///
/// ```
/// let s = bcfy_proto::snippet(b"Cookie: bcfyuser1=abc123; x=1\nAuthorization: Bearer sk-0123456789", 200);
/// assert!(!s.contains("abc123") && !s.contains("sk-0123456789"));
/// assert!(s.contains("bcfyuser1=[redacted]"));
/// assert_eq!(bcfy_proto::snippet("ééééé".as_bytes(), 3), "ééé…");
/// ```
pub fn snippet(bytes: &[u8], max: usize) -> String {
    let scan = bytes
        .len()
        .min(max.saturating_mul(SCAN_FACTOR).saturating_add(64));
    let lossy = String::from_utf8_lossy(&bytes[..scan]);
    let redacted = redact(&lossy);
    let mut out = String::with_capacity(max.min(redacted.len()) + 4);
    let mut count = 0usize;
    let mut cut = scan < bytes.len();
    for c in redacted.chars() {
        let escaped: std::borrow::Cow<'_, str> = match c {
            '\n' => "\\n".into(),
            '\r' => "\\r".into(),
            '\t' => "\\t".into(),
            c if c.is_control() => c.escape_unicode().to_string().into(),
            c => c.to_string().into(),
        };
        let n = escaped.chars().count();
        if count + n > max {
            cut = true;
            break;
        }
        out.push_str(&escaped);
        count += n;
    }
    if cut {
        out.push('…');
    }
    out
}
