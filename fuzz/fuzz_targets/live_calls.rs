#![no_main]
//! The live-calls response parser: no input may panic it, and every accepted call must yield
//! an audio URL under the CDN base or a typed error.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = bcfy_proto::LiveCallsResponse::from_slice(data) {
        let base = url::Url::parse("https://calls.broadcastify.com/").expect("static url");
        for call in &resp.calls {
            if let Ok(u) = call.audio_url(&base) {
                assert!(u.as_str().starts_with("https://calls.broadcastify.com/"), "{u}");
                assert_eq!(u.host_str(), Some("calls.broadcastify.com"));
                assert!(u.query().is_none() && u.fragment().is_none(), "{u}");
            }
            let _ = call.call_id();
            let _ = call.group();
        }
    }
});
