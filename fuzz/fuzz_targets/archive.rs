#![no_main]
//! The archive response parser: no input may panic it.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = bcfy_proto::ArchiveResponse::from_slice(data) {
        for call in &resp.calls {
            let _ = call.call_id();
        }
    }
});
