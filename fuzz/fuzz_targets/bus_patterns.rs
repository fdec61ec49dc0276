#![no_main]
//! Bus subject patterns and topics: parsing and matching never panic, and an exact pattern
//! matches exactly its own topic.
use bcfy_bus::{Pattern, validate_topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, topic) = text.split_once('\n').unwrap_or((&text, ""));
    let topic_ok = validate_topic(topic).is_ok();
    if let Ok(p) = Pattern::parse(pattern) {
        let m = p.matches(topic);
        if p.is_exact() && topic_ok {
            assert_eq!(m, p.as_str() == topic, "{pattern:?} vs {topic:?}");
        }
        if validate_topic(pattern).is_ok() && !pattern.contains(['*', '>']) {
            assert!(p.matches(pattern));
        }
    }
});
