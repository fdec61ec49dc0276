//! Per-call audio: the real m4a fixture plus a trailing, per-call `free` box.
//!
//! A top-level `free` box after `mdat` is legal MP4 that every demuxer skips, so each call's
//! file stays a playable AAC-LC m4a while its size and bytes differ per call. The box carries
//! `bcfy-sim:{call_id};` followed by padding, which is how the Whisper endpoint recognises an
//! upload without keeping a hash table of every file it ever served.

use bytes::{BufMut, Bytes, BytesMut};

/// The real call audio captured from the calls CDN (AAC-LC in MP4, mono, 8 kHz, 2.2 s).
pub(crate) static BASE_M4A: &[u8] = include_bytes!("../assets/squelch-example.m4a");

/// A shared zero buffer that padding is sliced from without copying.
static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];

const MARKER: &[u8] = b"bcfy-sim:";

/// The chunks of one call's file, in order, without copying the shared parts.
pub(crate) fn chunks(call_id: &str, pad: usize) -> Vec<Bytes> {
    let head_len = 8 + MARKER.len() + call_id.len() + 1;
    let box_len = head_len + pad;
    let mut head = BytesMut::with_capacity(head_len);
    head.put_u32(u32::try_from(box_len).unwrap_or(u32::MAX));
    head.put_slice(b"free");
    head.put_slice(MARKER);
    head.put_slice(call_id.as_bytes());
    head.put_u8(b';');
    let mut out = Vec::with_capacity(2 + pad / ZEROS.len() + 1);
    out.push(Bytes::from_static(BASE_M4A));
    out.push(head.freeze());
    let mut left = pad;
    while left > 0 {
        let n = left.min(ZEROS.len());
        out.push(Bytes::from_static(&ZEROS[..n]));
        left -= n;
    }
    out
}

/// Total length of a call's file.
pub(crate) fn len(call_id: &str, pad: usize) -> u64 {
    (BASE_M4A.len() + 8 + MARKER.len() + call_id.len() + 1 + pad) as u64
}

/// A call's whole file as one buffer.
pub(crate) fn bytes(call_id: &str, pad: usize) -> Bytes {
    let parts = chunks(call_id, pad);
    let mut buf = BytesMut::with_capacity(len(call_id, pad) as usize);
    for p in parts {
        buf.put_slice(&p);
    }
    buf.freeze()
}

/// Finds the call id that the simulator wrote into an uploaded file, if any.
///
/// Walks the top-level boxes (bounded by the buffer, never trusting a size past its end).
pub(crate) fn embedded_call_id(file: &[u8]) -> Option<&str> {
    let mut at = 0usize;
    while at + 8 <= file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().ok()?) as usize;
        if size < 8 || at + size > file.len() {
            return None;
        }
        let kind = &file[at + 4..at + 8];
        let body = &file[at + 8..at + size];
        if kind == b"free" && body.starts_with(MARKER) {
            let rest = &body[MARKER.len()..];
            let end = rest.iter().position(|&b| b == b';')?;
            return std::str::from_utf8(&rest[..end]).ok();
        }
        at += size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_fixture_plus_free_box() {
        let f = bytes("2893-1758428366-512-qwh9zivk", 100);
        assert_eq!(&f[..BASE_M4A.len()], BASE_M4A);
        assert_eq!(f.len() as u64, len("2893-1758428366-512-qwh9zivk", 100));
        assert_eq!(&f[BASE_M4A.len() + 4..BASE_M4A.len() + 8], b"free");
        assert_eq!(embedded_call_id(&f), Some("2893-1758428366-512-qwh9zivk"));
        assert_eq!(embedded_call_id(BASE_M4A), None);
        assert_eq!(embedded_call_id(&f[..f.len() - 1]), None);
    }

    #[test]
    fn large_padding_is_chunked() {
        let c = chunks("1-2-3", 200_000);
        let total: usize = c.iter().map(Bytes::len).sum();
        assert_eq!(total as u64, len("1-2-3", 200_000));
    }
}
