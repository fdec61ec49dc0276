#![no_main]
//! The call -> audio URL builder: whatever the payload's path fields hold, a URL is either
//! refused or stays under the CDN base with exactly the expected path shape.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\u{0}');
    let node = parts.next().unwrap_or("");
    let filename = parts.next().unwrap_or("");
    let hash = parts.next().unwrap_or("");
    let enc = parts.next().unwrap_or("");
    let value = serde_json::json!({
        "id": "4290-512", "ts": 1_758_428_382, "systemId": node, "call_tg": 512,
        "filename": filename, "hash": hash, "enc": enc,
    });
    if let Ok(call) = bcfy_proto::Call::from_value(&value) {
        let base = url::Url::parse("https://calls.broadcastify.com/").expect("static url");
        if let Ok(u) = call.audio_url(&base) {
            assert_eq!(u.host_str(), Some("calls.broadcastify.com"));
            let segs: Vec<&str> = u.path_segments().map(Iterator::collect).unwrap_or_default();
            assert!(segs.len() == 2 || segs.len() == 3, "{u}");
            assert!(segs.iter().all(|s| !s.is_empty() && *s != ".." && *s != "."), "{u}");
            assert!(u.query().is_none() && u.fragment().is_none(), "{u}");
        }
    }
});
