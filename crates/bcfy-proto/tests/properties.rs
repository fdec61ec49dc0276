//! Property tests: no input panics the parsers, URLs never leave the CDN, models round-trip.

use bcfy_proto::{
    ArchiveResponse, Call, GroupId, LiveCallsResponse, NodeId, SystemId, TalkgroupId, TimeBlock,
    sniff_content_type, snippet,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use url::Url;

/// Any JSON value (bounded depth and size).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        "[0-9 .eE+-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const CALL_KEYS: &[&str] = &[
    "id",
    "ts",
    "systemId",
    "sid",
    "siteId",
    "tgId",
    "tgCid",
    "call_tg",
    "call_type",
    "call_src",
    "call_src_key",
    "call_freq",
    "call_duration",
    "call_timediff",
    "call-ttl",
    "call_ttl",
    "meta_starttime",
    "meta_stoptime",
    "filename",
    "enc",
    "hash",
    "descr",
    "display",
    "grouping",
    "tag",
    "metadata",
    "score",
    "fid",
    "transcription",
    "unknown",
    "transcribe",
];

/// A value of the kinds a call field may carry, well-formed or not.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any::<u32>().prop_map(Value::from),
        2 => any::<i64>().prop_map(Value::from),
        2 => (0u64..=u64::MAX).prop_map(Value::from),
        2 => (-1.0e20f64..1.0e20).prop_map(Value::from),
        2 => any::<u32>().prop_map(|n| Value::String(n.to_string())),
        1 => "-?[0-9]{1,20}(\\.[0-9]{1,4})?".prop_map(Value::String),
        2 => "[A-Za-z0-9_-]{0,12}".prop_map(Value::String),
        1 => ".{0,12}".prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any_json(),
    ]
}

/// Objects made of call keys with arbitrary values; usually with valid identity parts.
fn call_object() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(prop::sample::select(CALL_KEYS), field_value(), 0..20),
        prop::option::weighted(
            0.9,
            (0i64..4_000_000_000, any::<u32>(), "[A-Za-z0-9_-]{1,20}"),
        ),
    )
        .prop_map(|(fields, identity)| {
            let mut m: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some((ts, node, filename)) = identity {
                m.insert("ts".into(), ts.into());
                m.insert("systemId".into(), node.into());
                m.insert("filename".into(), filename.into());
            }
            Value::Object(m)
        })
}

fn cdn_bases() -> impl Strategy<Value = Url> {
    prop::sample::select(vec![
        "https://calls.broadcastify.com",
        "https://calls.broadcastify.com/",
        "http://127.0.0.1:8080/cdn/",
        "http://127.0.0.1:8080/a/b",
    ])
    .prop_map(|s| Url::parse(s).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = LiveCallsResponse::from_slice(&bytes);
        let _ = ArchiveResponse::from_slice(&bytes);
        let _ = sniff_content_type(&bytes);
        let s = snippet(&bytes, 40);
        prop_assert!(s.chars().count() <= 41);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = text.parse::<GroupId>();
        }
    }

    #[test]
    fn mutated_real_payloads_never_panic(
        cut in 0usize..40_000,
        flips in prop::collection::vec((0usize..40_000, any::<u8>()), 0..8),
        archive in any::<bool>(),
    ) {
        let src: &[u8] = if archive {
            include_bytes!("fixtures/real/archivecall.json")
        } else {
            include_bytes!("fixtures/real/live-calls.json")
        };
        let mut bytes = src.to_vec();
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(r) = LiveCallsResponse::from_slice(&bytes) {
            for c in &r.calls {
                let _ = c.audio_url(&Url::parse("https://calls.broadcastify.com").unwrap()).unwrap();
            }
        }
        let _ = ArchiveResponse::from_slice(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json(), calls in prop::collection::vec(any_json(), 0..4)) {
        let _ = Call::from_value(&v);
        let body = serde_json::to_vec(&v).unwrap();
        let _ = LiveCallsResponse::from_slice(&body);
        let _ = ArchiveResponse::from_slice(&body);
        // Arbitrary entries inside a well-formed envelope: every one is parsed or rejected.
        let doc = json!({"calls": calls, "serverTime": 1, "lastPos": 1, "start": 0, "end": 1800});
        let body = serde_json::to_vec(&doc).unwrap();
        let live = LiveCallsResponse::from_slice(&body).unwrap();
        prop_assert_eq!(live.calls.len() + live.rejected.len(), calls.len());
        let archive = ArchiveResponse::from_slice(&body).unwrap();
        prop_assert_eq!(archive.calls.len() + archive.rejected.len(), calls.len());
        prop_assert_eq!(&*archive.raw, &doc);
    }

    #[test]
    fn reading_the_text_agrees_with_reading_the_value(
        v in prop_oneof![4 => call_object(), 1 => any_json()],
        dup in prop::option::of((prop::sample::select(CALL_KEYS), field_value())),
    ) {
        // Same call or same error, with or without a duplicate key in front (the last wins).
        let mut text = serde_json::to_string(&v).unwrap();
        if let (Some((key, value)), Some(rest)) = (dup, text.strip_prefix('{')) {
            let sep = if rest.starts_with('}') { "" } else { "," };
            text = format!("{{{}:{}{sep}{rest}", json!(key), value);
        }
        let parsed: Value = serde_json::from_str(&text).unwrap();
        match Call::from_json(&text) {
            Some(r) => prop_assert_eq!(r, Call::from_value(&parsed)),
            None => prop_assert!(!parsed.is_object()),
        }
    }

    #[test]
    fn skipping_known_ids_agrees_with_the_full_parse(
        entries in prop::collection::vec(call_object(), 0..8),
        hashes in prop::collection::vec(prop_oneof![
            Just(None),
            Just(Some(Value::from(""))),
            "[A-Za-z0-9_-]{1,8}".prop_map(|h| Some(Value::from(h))),
            ".{0,6}".prop_map(|h| Some(Value::from(h))),
            any::<u32>().prop_map(|h| Some(Value::from(h))),
        ], 8),
        string_node in any::<bool>(),
    ) {
        // Entries with the identity spellings the shortcut must read exactly as the full
        // parse does (string nodes, empty and odd hashes) or leave to the full parse.
        let entries: Vec<Value> = entries
            .into_iter()
            .zip(hashes)
            .map(|(mut e, hash)| {
                if let (Some(m), Some(h)) = (e.as_object_mut(), hash) {
                    m.insert("hash".into(), h);
                }
                if string_node
                    && let Some(n) = e.get("systemId").and_then(Value::as_u64)
                {
                    e["systemId"] = Value::from(format!(" {n}"));
                }
                e
            })
            .collect();
        let body = serde_json::to_vec(&json!({"calls": entries, "lastPos": 1})).unwrap();
        let full = LiveCallsResponse::from_slice(&body).unwrap();
        prop_assert_eq!(full.calls.len(), full.raw_calls.len());
        prop_assert_eq!(full.skipped, 0);
        for (call, raw) in full.calls.iter().zip(&full.raw_calls) {
            prop_assert_eq!(&Call::from_json(raw.as_str()).unwrap().unwrap(), call);
            prop_assert_eq!(&Call::from_map(&raw.to_map()).unwrap(), call);
        }
        // Knowing every id delivered: those calls are skipped, everything else is unchanged.
        let ids: std::collections::HashSet<_> = full.calls.iter().map(Call::call_id).collect();
        let again = LiveCallsResponse::from_slice_skipping(&body, |id| ids.contains(id)).unwrap();
        prop_assert!(again.calls.iter().all(|c| !ids.contains(&c.call_id())));
        prop_assert_eq!(again.rejected.len(), full.rejected.len());
        prop_assert_eq!(
            again.calls.len() + again.skipped + again.rejected.len(),
            entries.len()
        );
        // Knowing nothing skips nothing.
        let none = LiveCallsResponse::from_slice_skipping(&body, |_| false).unwrap();
        prop_assert_eq!(&none, &full);
    }

    #[test]
    fn call_like_objects_parse_safely_and_round_trip(v in call_object(), base in cdn_bases()) {
        let Ok(call) = Call::from_value(&v) else { return Ok(()); };
        // Round trip through to_value/from_value and through serde.
        let again = Call::from_value(&call.to_value()).unwrap();
        prop_assert_eq!(&again, &call);
        let text = serde_json::to_string(&call).unwrap();
        let back: Call = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &call);
        // Nothing is lost: every key sent is either typed or in `extra` (nulls aside).
        let out = call.to_value();
        for (k, val) in v.as_object().unwrap() {
            if !val.is_null() && k != "call_ttl" && k != "call-ttl" && k != "hash" && k != "enc" {
                prop_assert!(out.get(k).is_some(), "key {} lost", k);
            }
        }
        // The URL stays on the CDN with exactly the expected segments.
        let url = call.audio_url(&base).unwrap();
        prop_assert!(url.as_str().starts_with(base.as_str().trim_end_matches('/')));
        prop_assert_eq!(url.host_str(), base.host_str());
        prop_assert_eq!(url.query(), None);
        let segs: Vec<&str> = url.path_segments().unwrap().collect();
        let base_segs: Vec<&str> = base.path_segments().unwrap().filter(|s| !s.is_empty()).collect();
        let mut expected: Vec<String> = base_segs.iter().map(|s| (*s).to_owned()).collect();
        expected.extend(call.hash().map(str::to_owned));
        expected.push(call.node.to_string());
        expected.push(format!("{}.{}", call.filename, call.enc()));
        prop_assert_eq!(segs, expected);
        // The id is topic-safe.
        prop_assert!(call.call_id().as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    }

    #[test]
    fn audio_url_from_arbitrary_parts_never_leaves_the_base(
        node in any::<u64>(),
        filename in prop_oneof![".{0,16}", "[A-Za-z0-9_-]{1,16}", "[./%?#@:\\\\A-Za-z0-9-]{0,16}"],
        hash in prop::option::of(prop_oneof![".{0,10}", "[A-Za-z0-9_-]{0,10}", "[./%?#@:A-Za-z0-9]{0,10}"]),
        enc in prop::option::of(prop_oneof![".{0,6}", "[A-Za-z0-9]{0,6}", "[./?#A-Za-z0-9]{0,6}"]),
        base in cdn_bases(),
    ) {
        let mut call = Call::new(0, NodeId::new(node), filename.clone());
        call.hash = hash.clone();
        call.enc = enc.clone();
        let safe = |s: &str, extra: bool| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || (extra && (b == b'_' || b == b'-')));
        let hash_used = hash.as_deref().filter(|h| !h.is_empty());
        let enc_used = enc.as_deref().filter(|e| !e.is_empty()).unwrap_or("m4a");
        let expect_ok = safe(&filename, true) && hash_used.is_none_or(|h| safe(h, true)) && safe(enc_used, false);
        match call.audio_url(&base) {
            Ok(url) => {
                prop_assert!(expect_ok);
                prop_assert_eq!(url.scheme(), base.scheme());
                prop_assert_eq!(url.host_str(), base.host_str());
                prop_assert_eq!(url.port(), base.port());
                prop_assert!(url.as_str().starts_with(base.as_str().trim_end_matches('/')));
                prop_assert_eq!(url.query(), None);
                prop_assert_eq!(url.fragment(), None);
                let segs: Vec<String> = url.path_segments().unwrap().map(str::to_owned).collect();
                let mut expected: Vec<String> = base.path_segments().unwrap().filter(|s| !s.is_empty()).map(str::to_owned).collect();
                expected.extend(hash_used.map(str::to_owned));
                expected.push(node.to_string());
                expected.push(format!("{filename}.{enc_used}"));
                prop_assert_eq!(segs, expected);
            }
            Err(_) => prop_assert!(!expect_ok),
        }
    }

    #[test]
    fn group_id_round_trips(sid in any::<u64>(), tg in any::<u64>(), s in ".{0,24}") {
        let g = GroupId::new(SystemId::new(sid), TalkgroupId::new(tg));
        prop_assert_eq!(g.to_string().parse::<GroupId>().unwrap(), g);
        let j = serde_json::to_string(&g).unwrap();
        prop_assert_eq!(serde_json::from_str::<GroupId>(&j).unwrap(), g);
        if let Ok(parsed) = s.parse::<GroupId>() {
            prop_assert_eq!(parsed.to_string().parse::<GroupId>().unwrap(), parsed);
        }
    }

    #[test]
    fn time_blocks_are_aligned_and_contain_their_input(t in any::<i64>(), near in -10_000_000_000i64..10_000_000_000) {
        for x in [t, near] {
            let b = TimeBlock::containing(x);
            prop_assert_eq!(b.epoch_secs().rem_euclid(TimeBlock::SECONDS), 0);
            prop_assert!(TimeBlock::from_aligned(b.epoch_secs()).is_ok());
            if (TimeBlock::MIN.epoch_secs()..TimeBlock::MAX.epoch_secs() + TimeBlock::SECONDS).contains(&x) {
                prop_assert!(b.window().contains(x), "{} not in {:?}", x, b.window());
            }
        }
        let b = TimeBlock::containing(near);
        prop_assert_eq!(b.next().prev(), b);
        prop_assert_eq!(b.next().epoch_secs() - b.epoch_secs(), TimeBlock::SECONDS);
    }

    #[test]
    fn covering_tiles_a_window(start in -1_000_000i64..1_000_000, len in 0i64..20_000) {
        let w = bcfy_proto::TimeWindow::new(start, start + len);
        let blocks: Vec<TimeBlock> = TimeBlock::covering(w).collect();
        if len == 0 {
            prop_assert!(blocks.is_empty());
        } else {
            prop_assert!(blocks[0].window().contains(start));
            prop_assert!(blocks.last().unwrap().window().contains(start + len - 1));
            for pair in blocks.windows(2) {
                prop_assert_eq!(pair[0].next(), pair[1]);
            }
        }
    }

    #[test]
    fn snippet_hides_embedded_secrets(
        pre in "[ ;&<>a-z\\n]{0,30}",
        secret in "[A-Za-z0-9]{8,24}",
        post in "[ ;&<>\\n]{0,30}",
        max in 1usize..120,
        form in 0usize..3,
    ) {
        let text = match form {
            0 => format!("{pre}bcfyuser1={secret}{post}"),
            1 => format!("{pre}Authorization: Bearer {secret}{post}"),
            _ => format!("{pre} sk-{secret}{post}"),
        };
        let s = snippet(text.as_bytes(), max);
        prop_assert!(!s.contains(&secret), "{:?} -> {:?}", text, s);
        prop_assert!(s.chars().count() <= max + 1);
    }
}
