//! Ids, time blocks, tokens, forms, snippets, sniffing, events and auto traits.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bcfy_proto::*;
use static_assertions::assert_impl_all;

assert_impl_all!(NodeId: Send, Sync, Copy, Ord, std::hash::Hash);
assert_impl_all!(SystemId: Send, Sync, Copy, Ord, std::hash::Hash);
assert_impl_all!(TalkgroupId: Send, Sync, Copy, Ord, std::hash::Hash);
assert_impl_all!(GroupId: Send, Sync, Copy, Ord, std::hash::Hash);
assert_impl_all!(CallId: Send, Sync, Clone, Ord, std::hash::Hash);
assert_impl_all!(TimeBlock: Send, Sync, Copy, Ord);
assert_impl_all!(TimeWindow: Send, Sync, Copy);
assert_impl_all!(SessionToken: Send, Sync, Clone);
assert_impl_all!(SessionKey: Send, Sync, Clone);
assert_impl_all!(Call: Send, Sync, Clone, serde::Serialize, serde::de::DeserializeOwned);
assert_impl_all!(RejectedCall: Send, Sync, Clone);
assert_impl_all!(LiveCallsResponse: Send, Sync, Clone);
assert_impl_all!(ArchiveResponse: Send, Sync, Clone);
assert_impl_all!(Subscription: Send, Sync, Clone);
assert_impl_all!(LiveCallEnvelope: Send, Sync, Clone);
assert_impl_all!(AudioPayloadEvent: Send, Sync, Clone);
assert_impl_all!(AudioFailedEvent: Send, Sync, Clone);
assert_impl_all!(TranscriptionResult: Send, Sync, Clone);
assert_impl_all!(TranscriptionFailedEvent: Send, Sync, Clone);
assert_impl_all!(LiveProducerConfig: Send, Sync, Clone);
assert_impl_all!(TranscriptionConfig: Send, Sync, Clone);
assert_impl_all!(AudioConfig: Send, Sync, Clone);
assert_impl_all!(TransportConfig: Send, Sync, Clone);
assert_impl_all!(Endpoints: Send, Sync, Clone);
assert_impl_all!(CacheConfig: Send, Sync, Clone);
assert_impl_all!(ParseError: Send, Sync, std::error::Error);
assert_impl_all!(CallError: Send, Sync, std::error::Error);
assert_impl_all!(AudioUrlError: Send, Sync, std::error::Error);
assert_impl_all!(GroupIdError: Send, Sync, std::error::Error);
assert_impl_all!(ConfigError: Send, Sync, std::error::Error);
assert_impl_all!(TimeBlockError: Send, Sync, std::error::Error);
assert_impl_all!(SubscriptionError: Send, Sync, std::error::Error);

#[test]
fn call_id_forms() {
    let node = NodeId::new(2893);
    assert_eq!(
        CallId::new(node, "1758428366-512", Some("qwh9zivk")).as_str(),
        "2893-1758428366-512-qwh9zivk"
    );
    assert_eq!(
        CallId::new(node, "1758428366-512", None).as_str(),
        "2893-1758428366-512"
    );
    assert_eq!(
        CallId::new(node, "1758428366-512", Some("")).as_str(),
        "2893-1758428366-512"
    );
    // Never anything but [A-Za-z0-9_-], even from a hand-built call.
    assert_eq!(
        CallId::new(node, "a/b.c", Some("x y")).as_str(),
        "2893-a_b_c-x_y"
    );
    assert_eq!(
        "2893-1-x".parse::<CallId>().unwrap().to_string(),
        "2893-1-x"
    );
    assert!("a.b".parse::<CallId>().is_err());
    assert!("".parse::<CallId>().is_err());
    // One char in, one char out, whatever its width; ids of any length come out whole.
    assert_eq!(
        CallId::new(NodeId::new(u64::MAX), "é€😀", Some("ß")).as_str(),
        "18446744073709551615-___-_"
    );
    for len in [1, 64, 255, 256, 1000] {
        let filename = "f".repeat(len);
        let id = CallId::new(node, &filename, Some("h"));
        assert_eq!(
            id.as_str(),
            format!("2893-{filename}-h"),
            "filename of {len}"
        );
    }
    let id = CallId::new(node, "f", None);
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"2893-f\"");
    assert_eq!(serde_json::from_str::<CallId>("\"2893-f\"").unwrap(), id);
    assert!(serde_json::from_str::<CallId>("\"../x\"").is_err());
}

#[test]
fn group_id_parses_and_prints() {
    let g: GroupId = "4290-512".parse().unwrap();
    assert_eq!(g, GroupId::new(SystemId::new(4290), TalkgroupId::new(512)));
    assert_eq!(g.to_string(), "4290-512");
    assert_eq!(serde_json::to_string(&g).unwrap(), "\"4290-512\"");
    assert_eq!(serde_json::from_str::<GroupId>("\"4290-512\"").unwrap(), g);
    for bad in [
        "",
        "4290",
        "4290-",
        "-512",
        "a-512",
        "4290-512-1",
        "+1-2",
        " 4290-512",
        "4290_512",
        "99999999999999999999-1",
    ] {
        let err = bad.parse::<GroupId>().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("invalid group id") && msg.contains("{sid}-{tg}"),
            "{msg}"
        );
        assert_eq!(err.input(), bad);
    }
    assert!(serde_json::from_str::<GroupId>("\"4290\"").is_err());
    assert_eq!(SystemId::new(7).get(), 7);
    assert_eq!(NodeId::new(2893).to_string(), "2893");
    assert_eq!(serde_json::to_string(&TalkgroupId::new(5)).unwrap(), "5");
}

#[test]
fn time_blocks_are_aligned_epoch_seconds() {
    let b = TimeBlock::containing(1_758_428_366);
    assert_eq!(b.epoch_secs(), 1_758_427_200);
    assert_eq!(b.epoch_secs() % 1800, 0);
    assert_eq!(TimeBlock::containing(1_758_427_200), b);
    assert_eq!(TimeBlock::containing(1_758_428_999), b);
    assert_eq!(b.next().epoch_secs(), 1_758_429_000);
    assert_eq!(b.prev().epoch_secs(), 1_758_425_400);
    assert_eq!(b.window(), TimeWindow::new(1_758_427_200, 1_758_429_000));
    assert!(b.window().contains(1_758_428_366));
    assert!(!b.window().contains(1_758_429_000));
    assert!(TimeBlock::from_aligned(1_758_427_201).is_err());
    assert_eq!(TimeBlock::from_aligned(1_758_427_200).unwrap(), b);
    assert_eq!(TimeBlock::containing(-1).epoch_secs(), -1800);
    assert_eq!(TimeBlock::MAX.next(), TimeBlock::MAX);
    assert_eq!(TimeBlock::MIN.prev(), TimeBlock::MIN);
    assert_eq!(TimeBlock::containing(i64::MAX), TimeBlock::MAX);
    assert_eq!(TimeBlock::containing(i64::MIN), TimeBlock::MIN);
    assert_eq!(serde_json::to_string(&b).unwrap(), "1758427200");
    assert!(serde_json::from_str::<TimeBlock>("1758427201").is_err());

    let s = b.epoch_secs();
    let blocks = |w| {
        TimeBlock::covering(w)
            .map(TimeBlock::epoch_secs)
            .collect::<Vec<_>>()
    };
    assert_eq!(blocks(TimeWindow::new(s, s + 3600)), vec![s, s + 1800]);
    assert_eq!(blocks(TimeWindow::new(s + 10, s + 1810)), vec![s, s + 1800]);
    assert_eq!(blocks(TimeWindow::new(s + 10, s + 20)), vec![s]);
    assert_eq!(blocks(TimeWindow::new(s, s)), Vec::<i64>::new());
    assert_eq!(blocks(TimeWindow::new(s + 5, s)), Vec::<i64>::new());
    // The archive's own window (s - 1, s + 1800) touches the previous block by one second.
    assert_eq!(blocks(TimeWindow::new(s - 1, s + 1800)), vec![s - 1800, s]);
    assert_eq!(
        TimeBlock::covering(TimeWindow::new(TimeBlock::MAX.epoch_secs(), i64::MAX)).count(),
        1
    );
}

#[test]
fn session_token_never_shows_its_value() {
    let t = SessionToken::new("s3cr3t-cookie-value");
    assert_eq!(format!("{t:?}"), "SessionToken([redacted])");
    assert_eq!(format!("{t}"), "SessionToken([redacted])");
    assert_eq!(
        format!("{:?}", Some(t.clone())),
        "Some(SessionToken([redacted]))"
    );
    assert_eq!(t.expose_secret(), "s3cr3t-cookie-value");
    assert!(t.expires_at().is_none());
    assert!(t.issued_at() <= SystemTime::now());
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let t2 = t.clone().with_expiry(exp);
    assert_eq!(t2.expires_at(), Some(exp));
    assert_eq!(t2.issued_at(), t.issued_at());
    assert_eq!(t2, t, "equality is by value");
    assert_ne!(t, SessionToken::new("other"));
    assert!(t2.is_expired_at(exp) && !t2.is_expired_at(exp - Duration::from_secs(1)));
}

#[test]
fn live_calls_form_is_exact_for_every_mode() {
    let key = SessionKey::new(0x0123_abcd, 0x00ef);
    assert_eq!(key.as_str(), "0123abcd-00ef");
    let tgs = Subscription::talkgroups([
        "4290-512".parse().unwrap(),
        "4290-513".parse().unwrap(),
        "4290-512".parse().unwrap(),
    ])
    .unwrap();
    assert_eq!(tgs.groups().len(), 2, "deduplicated");
    let enc = |sub: &Subscription, pos, do_init| {
        LiveCallsForm {
            subscription: sub,
            pos,
            do_init,
            session_key: &key,
        }
        .encode()
    };
    assert_eq!(
        enc(&tgs, 1_758_428_083.0, true),
        "groups%5B%5D=4290-512&groups%5B%5D=4290-513&pos=1758428083&doInit=1&systemId=0&sid=0&sessionKey=0123abcd-00ef"
    );
    assert_eq!(
        enc(&tgs, 1_758_428_083.25, false),
        "groups%5B%5D=4290-512&groups%5B%5D=4290-513&pos=1758428083.25&doInit=0&systemId=0&sid=0&sessionKey=0123abcd-00ef"
    );
    let pl = Subscription::playlist("6f1c3c2e-1b2a-4c3d-9e8f-0a1b2c3d4e5f").unwrap();
    assert_eq!(
        enc(&pl, 10.0, true),
        "playlist_uuid=6f1c3c2e-1b2a-4c3d-9e8f-0a1b2c3d4e5f&pos=10&doInit=1&systemId=0&sid=0&sessionKey=0123abcd-00ef"
    );
    assert_eq!(
        enc(&Subscription::System(SystemId::new(4290)), 10.0, false),
        "pos=10&doInit=0&systemId=0&sid=4290&sessionKey=0123abcd-00ef"
    );
    assert_eq!(
        enc(&Subscription::Node(NodeId::new(2893)), 10.0, false),
        "pos=10&doInit=0&systemId=2893&sid=0&sessionKey=0123abcd-00ef"
    );
    assert!(enc(&tgs, f64::NAN, false).contains("pos=0&"));
    assert_eq!(
        Subscription::talkgroups(std::iter::empty()),
        Err(SubscriptionError::NoTalkgroups)
    );
    assert_eq!(
        Subscription::playlist("x&y=1"),
        Err(SubscriptionError::InvalidPlaylist)
    );
    assert!(Subscription::Talkgroups(vec![]).validate().is_err());
    assert_eq!(
        serde_json::to_string(&tgs).unwrap(),
        r#"{"talkgroups":["4290-512","4290-513"]}"#
    );
}

#[test]
fn snippet_redacts_secrets_and_caps_on_a_char_boundary() {
    let s = snippet(b"Set-Cookie: bcfyuser1=abc; path=/", 200);
    assert_eq!(s, "Set-Cookie: bcfyuser1=[redacted]; path=/");
    let s = snippet(b"Authorization: Bearer sk-proj-0123456789abcdef\r\nx", 200);
    assert!(!s.contains("sk-proj-0123456789abcdef"), "{s}");
    assert!(s.starts_with("Authorization: Bearer [redacted]"), "{s}");
    assert!(s.contains("\\r\\n"), "control characters escaped: {s}");
    let s = snippet(
        br#"{"key": "sk-abcdefghijklmnop", "password=hunter2"}"#,
        200,
    );
    assert!(
        !s.contains("sk-abcdefghijklmnop") && !s.contains("hunter2"),
        "{s}"
    );
    let s = snippet(b"BCFYUSER1=zzz", 200);
    assert!(!s.contains("zzz"));
    let s = snippet(
        br#"{"api_key": "k-123", "csrf_token":"t-456", "Authorization":"Basic dXNlcjpw"}"#,
        200,
    );
    assert!(
        !s.contains("k-123") && !s.contains("t-456") && !s.contains("dXNlcjpw"),
        "{s}"
    );
    assert!(s.contains(r#""api_key": "[redacted]""#), "{s}");
    // Ordinary text is left alone.
    assert_eq!(
        snippet(b"tokens are fine; task-12345678 too", 200),
        "tokens are fine; task-12345678 too"
    );
    // Capped on a character boundary, marked as cut.
    assert_eq!(snippet("αβγδε".as_bytes(), 3), "αβγ…");
    assert_eq!(snippet(b"abc", 3), "abc");
    assert_eq!(snippet(b"", 3), "");
    assert_eq!(snippet(&[0xff, 0xfe, b'a'], 10), "\u{fffd}\u{fffd}a");
    let long = vec![b'x'; 1 << 20];
    assert_eq!(snippet(&long, 100).chars().count(), 101);
    // A secret cut by the cap does not leak its start.
    let s = snippet(b"aaaa bcfyuser1=0123456789", 18);
    assert!(!s.contains("0123"), "{s}");
}

#[test]
fn sniffing_recognizes_containers() {
    assert_eq!(sniff_content_type(b"\0\0\0\x18ftypmp42"), Some("audio/mp4"));
    assert_eq!(sniff_content_type(b"ID3\x03\0"), Some("audio/mpeg"));
    assert_eq!(
        sniff_content_type(&[0xFF, 0xFB, 0x90, 0x64]),
        Some("audio/mpeg")
    );
    assert_eq!(
        sniff_content_type(&[0xFF, 0xF1, 0x50, 0x80]),
        Some("audio/aac")
    );
    assert_eq!(
        sniff_content_type(b"RIFF\x24\0\0\0WAVEfmt "),
        Some("audio/wav")
    );
    assert_eq!(sniff_content_type(b"RIFF\x24\0\0\0AVI "), None);
    assert_eq!(sniff_content_type(b"OggS\0"), Some("audio/ogg"));
    assert_eq!(sniff_content_type(b"fLaC"), Some("audio/flac"));
    assert_eq!(sniff_content_type(b"{\"error\": 1}"), None);
    for n in 0..12 {
        let _ = sniff_content_type(&b"\0\0\0\x18ftypRIFF"[..n]);
        let _ = sniff_content_type(&[0xFF; 12][..n]);
    }
    assert_eq!(sniff_content_type(b""), None);
    assert_eq!(sniff_content_type(b"\0\0\0\x18fty"), None);
}

#[test]
fn envelopes_and_events() {
    let v = serde_json::json!({"id": "4290-512", "ts": 5, "systemId": 2893, "sid": 4290, "call_tg": 512, "filename": "1-512", "x": 1});
    let call = Arc::new(Call::from_value(&v).unwrap());
    let env = LiveCallEnvelope::new(call.clone(), Some(6.0), SystemTime::UNIX_EPOCH);
    assert_eq!(env.shard_key, (SystemId::new(4290), TalkgroupId::new(512)));
    assert_eq!(
        env.raw_payload.to_map().get("x"),
        Some(&serde_json::json!(1))
    );
    assert_eq!(&serde_json::Value::Object(env.raw_payload.to_map()), &v);
    assert_eq!(env.call_id().as_str(), "2893-1-512");
    let ev = AudioPayloadEvent {
        call_id: call.call_id(),
        call,
        sequence: 0,
        start_offset: 0.0,
        end_offset: 2.2,
        payload: bytes::Bytes::from(vec![7u8; 100_000]),
        content_type: "audio/mp4".into(),
        content_type_sniffed: true,
    };
    let dbg = format!("{ev:?}");
    assert!(
        dbg.contains("payload_len: 100000") && dbg.len() < 300,
        "{dbg}"
    );
}

#[test]
fn error_categories_and_hints() {
    assert_eq!(ErrorCategory::ResponseParsing.as_str(), "response_parsing");
    assert!(RetryHint::Backoff.is_retryable());
    assert!(RetryHint::After(Duration::from_secs(1)).is_retryable());
    assert!(!RetryHint::Never.is_retryable());
}

#[test]
fn metadata_is_kept_as_text_and_parsed_on_demand() {
    let text = r#"{"ts": 5, "systemId": 7, "filename": "1-512",
        "metadata": { "talkgroup": 512, "srcList": [ {"src": 1, "pos": 0.0} ] }}"#;
    let call = bcfy_proto::Call::from_json(text).unwrap().unwrap();
    let meta = call.metadata.as_ref().unwrap();
    assert_eq!(
        meta.as_str(),
        r#"{ "talkgroup": 512, "srcList": [ {"src": 1, "pos": 0.0} ] }"#,
        "verbatim"
    );
    assert_eq!(call.metadata_object().unwrap()["talkgroup"], 512);
    // Equal to the same value read through a `Value`, however it was spelled.
    let via_value = bcfy_proto::Call::from_value(&serde_json::from_str(text).unwrap()).unwrap();
    assert_eq!(call, via_value);
    assert_ne!(
        call.metadata.as_ref().unwrap().as_str(),
        via_value.metadata.as_ref().unwrap().as_str()
    );
    // A null metadata is absent, as for every key.
    let call = bcfy_proto::Call::from_json(
        r#"{"ts": 5, "systemId": 7, "filename": "1-512", "metadata": null}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(call.metadata, None);
    // A number beyond f64 inside metadata no longer costs the call: the text is kept, only
    // its parse fails, and serializing the call keeps it as a string.
    let call = bcfy_proto::Call::from_json(
        r#"{"ts": 5, "systemId": 7, "filename": "1-512", "metadata": {"x": 1e400}}"#,
    )
    .unwrap()
    .unwrap();
    let meta = call.metadata.as_ref().unwrap();
    assert!(meta.parse().is_err());
    assert_eq!(call.metadata_object(), None);
    assert_eq!(
        call.to_value()["metadata"],
        serde_json::json!(r#"{"x": 1e400}"#)
    );
    assert_ne!(
        meta,
        &bcfy_proto::RawJson::from_value(&serde_json::json!({"x": 1}))
    );
}
