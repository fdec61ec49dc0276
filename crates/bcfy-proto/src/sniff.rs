//! Audio container detection, for when the CDN sends no `Content-Type`.

/// The media type of an audio container, from its first bytes; `None` when unknown.
///
/// `ftyp` box at offset 4 → `audio/mp4` (the calls CDN's m4a), `ID3` tag or MPEG frame sync →
/// `audio/mpeg`, `RIFF…WAVE` → `audio/wav`, `OggS` → `audio/ogg`, `fLaC` → `audio/flac`,
/// ADTS AAC → `audio/aac`. Never panics, whatever the length.
///
/// ```
/// assert_eq!(bcfy_proto::sniff_content_type(b"\0\0\0\x20ftypM4A \0\0\0\0"), Some("audio/mp4"));
/// assert_eq!(bcfy_proto::sniff_content_type(b"ID3\x04"), Some("audio/mpeg"));
/// assert_eq!(bcfy_proto::sniff_content_type(b"<html>"), None);
/// ```
pub fn sniff_content_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.get(4..8) == Some(b"ftyp") {
        return Some("audio/mp4");
    }
    if bytes.starts_with(b"ID3") {
        return Some("audio/mpeg");
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        return Some("audio/wav");
    }
    if bytes.starts_with(b"OggS") {
        return Some("audio/ogg");
    }
    if bytes.starts_with(b"fLaC") {
        return Some("audio/flac");
    }
    match bytes {
        // ADTS: 12-bit sync, layer bits 00.
        [0xFF, b1, ..] if b1 & 0xF6 == 0xF0 => Some("audio/aac"),
        // MPEG audio frame: 11-bit sync, a valid version (not 01) and layer (not 00).
        [0xFF, b1, ..]
            if b1 & 0xE0 == 0xE0 && (b1 >> 3) & 0b11 != 0b01 && (b1 >> 1) & 0b11 != 0 =>
        {
            Some("audio/mpeg")
        }
        _ => None,
    }
}
