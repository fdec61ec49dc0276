//! Sanitized, length-capped payload snippets for errors and logs.

/// Names whose value is a secret, matched ASCII-case-insensitively, in cookie, form, header or
/// JSON form (`name=v`, `name: v`, `"name": "v"`).
const SECRET_NAMES: &[&str] = &[
    "bcfyuser1",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "token",
    "secret",
    "authorization",
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

fn strip_prefix_ignore_case<'a>(hay: &'a str, needle: &str) -> Option<&'a str> {
    let head = hay.get(..needle.len())?;
    head.eq_ignore_ascii_case(needle)
        .then(|| &hay[needle.len()..])
}

/// If `rest` starts with a secret's name and its separator, the length of that prefix
/// (including an auth scheme such as `Bearer `).
/// Schemes are only recognized at the start of a word (`Bearer x`, not `cabbearer x`); names
/// anywhere, since their separator (`=`, `:`) already anchors them (`csrf_token=x`).
fn secret_prefix_len(rest: &str, at_word_start: bool) -> Option<usize> {
    if at_word_start
        && let Some(after) = strip_prefix_ignore_case(rest, "bearer ")
            .or_else(|| strip_prefix_ignore_case(rest, "basic "))
    {
        return Some(rest.len() - after.len());
    }
    let name = SECRET_NAMES
        .iter()
        .find(|n| strip_prefix_ignore_case(rest, n).is_some())?;
    let mut after = &rest[name.len()..];
    after = after.strip_prefix(['"', '\'']).unwrap_or(after);
    after = after.trim_start_matches([' ', '\t']);
    after = after.strip_prefix(['=', ':'])?;
    after = after.trim_start_matches([' ', '\t', '"', '\'']);
    for scheme in ["bearer ", "basic "] {
        if let Some(a) = strip_prefix_ignore_case(after, scheme) {
            after = a;
        }
    }
    Some(rest.len() - after.len())
}

/// Replaces secret values (`bcfyuser1=…`, `password=…`, `"api_key": "…"`, `Bearer …`,
/// `sk-…` keys) by `[redacted]`.
pub(crate) fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let at_word_start = !prev.is_some_and(is_token_char);
        if let Some(n) = secret_prefix_len(rest, at_word_start) {
            let (head, after) = rest.split_at(n);
            out.push_str(head);
            let end = after.find(is_value_end).unwrap_or(after.len());
            if end > 0 {
                out.push_str("[redacted]");
            }
            rest = &after[end..];
            prev = head.chars().last();
            continue;
        }
        if at_word_start && let Some(tail) = strip_prefix_ignore_case(rest, "sk-") {
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
