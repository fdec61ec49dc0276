#![no_main]
//! The live-calls response parser: no input may panic it, every accepted call must yield an
//! audio URL under the CDN base or a typed error, each kept raw entry reads back as its call,
//! and skipping known calls agrees with the full parse.
use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = bcfy_proto::LiveCallsResponse::from_slice(data) {
        let base = url::Url::parse("https://calls.broadcastify.com/").expect("static url");
        assert_eq!(resp.calls.len(), resp.raw_calls.len());
        for (call, raw) in resp.calls.iter().zip(&resp.raw_calls) {
            if let Ok(u) = call.audio_url(&base) {
                assert!(u.as_str().starts_with("https://calls.broadcastify.com/"), "{u}");
                assert_eq!(u.host_str(), Some("calls.broadcastify.com"));
                assert!(u.query().is_none() && u.fragment().is_none(), "{u}");
            }
            let _ = call.group();
            assert_eq!(
                bcfy_proto::Call::from_json(raw.as_str()).expect("a kept entry is an object"),
                Ok(call.clone())
            );
        }
        // Every other call known: every entry is still a call, a skip or a rejection (a
        // rejected repeat of a known call may be skipped on its identity alone), and no known
        // call comes back.
        let known: HashSet<_> = resp.calls.iter().step_by(2).map(|c| c.call_id()).collect();
        let again = bcfy_proto::LiveCallsResponse::from_slice_skipping(data, |id| known.contains(id))
            .expect("the same body parses again");
        assert!(again.rejected.len() <= resp.rejected.len());
        assert_eq!(
            again.calls.len() + again.skipped + again.rejected.len(),
            resp.calls.len() + resp.rejected.len()
        );
        assert!(again.calls.iter().all(|c| !known.contains(&c.call_id())));
    }
});
