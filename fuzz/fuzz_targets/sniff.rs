#![no_main]
//! The audio container sniffer: never panics, whatever the bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bcfy_proto::sniff_content_type(data);
});
