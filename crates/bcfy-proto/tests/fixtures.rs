//! Every fixture parses to the expected values.

use std::collections::HashSet;

use bcfy_proto::{
    ArchiveResponse, Call, CallError, CallErrorKind, GroupId, LiveCallsResponse, NodeId,
    ParseError, ParseErrorKind, RawJson, SystemId, TalkgroupId, TimeBlock, TimeWindow,
    sniff_content_type,
};
use serde_json::{Value, json};
use url::Url;

const LIVE_REAL: &[u8] = include_bytes!("fixtures/real/live-calls.json");
const ARCHIVE_REAL: &[u8] = include_bytes!("fixtures/real/archivecall.json");
const M4A_REAL: &[u8] = include_bytes!("fixtures/real/squelch-example.m4a");
const VARIANTS: &[u8] = include_bytes!("fixtures/live-calls-variants.json");
const HOSTILE: &[u8] = include_bytes!("fixtures/live-calls-hostile.json");
const EMPTY: &[u8] = include_bytes!("fixtures/live-calls-empty.json");
const NO_CALLS_KEY: &[u8] = include_bytes!("fixtures/live-calls-no-calls-key.json");
const ERROR: &[u8] = include_bytes!("fixtures/live-calls-error.json");
const ARCHIVE_MISSING_CALLS: &[u8] = include_bytes!("fixtures/archive-missing-calls.json");

fn cdn() -> Url {
    Url::parse("https://calls.broadcastify.com").unwrap()
}

/// The raw entries of a fixture's `calls`, to compare field by field.
fn raw_calls(bytes: &[u8]) -> Vec<Value> {
    let v: Value = serde_json::from_slice(bytes).unwrap();
    v["calls"].as_array().unwrap().clone()
}

/// Every typed field equals the raw entry's value (real fixtures: every value well-typed).
fn assert_matches_raw(call: &Call, raw: &Value) {
    let r = raw.as_object().unwrap();
    assert_eq!(call.group_key.as_deref(), r["id"].as_str());
    assert_eq!(Some(call.ts), r["ts"].as_i64());
    assert_eq!(Some(call.node.get()), r["systemId"].as_u64());
    assert_eq!(call.sid.map(SystemId::get), r["sid"].as_u64());
    assert_eq!(call.site_id, r["siteId"].as_u64());
    assert_eq!(call.tg_id, r["tgId"].as_u64());
    assert_eq!(call.tg_cid, r["tgCid"].as_u64());
    assert_eq!(call.talkgroup.map(TalkgroupId::get), r["call_tg"].as_u64());
    assert_eq!(call.call_type.map(u64::from), r["call_type"].as_u64());
    assert_eq!(call.src, r["call_src"].as_i64());
    assert_eq!(call.src_key.as_deref(), r["call_src_key"].as_str());
    assert_eq!(call.freq_mhz, r["call_freq"].as_f64());
    assert_eq!(call.duration_secs, r["call_duration"].as_f64());
    assert_eq!(call.time_diff, r["call_timediff"].as_f64());
    assert_eq!(call.ttl, r["call-ttl"].as_i64());
    assert_eq!(call.start_time, r["meta_starttime"].as_i64());
    assert_eq!(call.stop_time, r["meta_stoptime"].as_i64());
    assert_eq!(Some(call.filename.as_str()), r["filename"].as_str());
    assert_eq!(call.enc.as_deref(), r["enc"].as_str());
    assert_eq!(call.hash.as_deref(), r["hash"].as_str());
    assert_eq!(call.descr.as_deref(), r["descr"].as_str());
    assert_eq!(call.display.as_deref(), r["display"].as_str());
    assert_eq!(call.grouping.as_deref(), r["grouping"].as_str());
    assert_eq!(call.tag.map(u64::from), r["tag"].as_u64());
    assert_eq!(
        call.metadata.as_ref().map(|m| m.parse().unwrap()).as_ref(),
        r.get("metadata")
    );
    assert_eq!(call.score, r.get("score").and_then(Value::as_i64));
    assert!(
        call.extra.is_empty(),
        "real calls have no unknown key: {:?}",
        call.extra
    );
    // Nothing is lost: the call gives back exactly what was sent.
    assert_eq!(&call.to_value(), raw);
}

#[test]
fn real_live_calls_keep_each_entry_as_sent_and_skip_known_ones() {
    let resp = LiveCallsResponse::from_slice(LIVE_REAL).unwrap();
    let raws = raw_calls(LIVE_REAL);
    assert_eq!(resp.raw_calls.len(), resp.calls.len());
    for (kept, sent) in resp.raw_calls.iter().zip(&raws) {
        assert_eq!(&Value::Object(kept.to_map()), sent);
    }
    // The poll after: the first ten are known and skipped, the rest parse as before.
    let known: std::collections::HashSet<_> = resp.calls[..10].iter().map(Call::call_id).collect();
    let again = LiveCallsResponse::from_slice_skipping(LIVE_REAL, |id| known.contains(id)).unwrap();
    assert_eq!(again.skipped, 10);
    assert_eq!(again.calls, resp.calls[10..]);
    assert_eq!(again.raw_calls, resp.raw_calls[10..]);
    // A known call is skipped on its identity alone, before its other fields are read: a
    // repeat that now carries a bad `ts` is a repeat, not a rejected entry.
    let body = br#"{"calls": [{"ts": "soon", "systemId": 7, "filename": "1-512", "hash": "ab"}]}"#;
    let r = LiveCallsResponse::from_slice_skipping(body, |id| id.as_str() == "7-1-512-ab").unwrap();
    assert_eq!((r.skipped, r.calls.len(), r.rejected.len()), (1, 0, 0));
    let r = LiveCallsResponse::from_slice(body).unwrap();
    assert_eq!((r.skipped, r.calls.len(), r.rejected.len()), (0, 0, 1));
}

#[test]
fn real_live_calls_parse_with_exact_fields() {
    let resp = LiveCallsResponse::from_slice(LIVE_REAL).unwrap();
    assert_eq!(resp.calls.len(), 25);
    assert!(resp.rejected.is_empty());
    assert_eq!(resp.server_time, Some(1_758_430_161));
    assert_eq!(resp.last_pos, Some(1_758_430_147.0));

    let raws = raw_calls(LIVE_REAL);
    for (call, raw) in resp.calls.iter().zip(&raws) {
        assert_matches_raw(call, raw);
        assert_eq!(call.group_key.as_deref(), Some("4290-512"));
        assert_eq!(
            call.group(),
            Some(GroupId::new(SystemId::new(4290), TalkgroupId::new(512)))
        );
        assert_eq!(call.node, NodeId::new(2893));
        assert!(call.metadata_object().is_some());
        let url = call.audio_url(&cdn()).unwrap();
        assert_eq!(
            url.as_str(),
            format!(
                "https://calls.broadcastify.com/{}/2893/{}.m4a",
                call.hash.as_deref().unwrap(),
                call.filename
            )
        );
    }
    // lastPos is the largest ts of the batch.
    let max_ts = resp.calls.iter().map(|c| c.ts).max().unwrap();
    assert_eq!(resp.last_pos, Some(max_ts as f64));

    let first = &resp.calls[0];
    assert_eq!(first.ts, 1_758_428_382);
    assert_eq!(first.sid, Some(SystemId::new(4290)));
    assert_eq!(first.talkgroup, Some(TalkgroupId::new(512)));
    assert_eq!(first.site_id, Some(18462));
    assert_eq!(first.tg_id, Some(259_618));
    assert_eq!(first.tg_cid, Some(19986));
    assert_eq!(first.call_type, Some(3));
    assert_eq!(first.src, Some(706_107));
    assert_eq!(first.src_key.as_deref(), Some("4290-706107"));
    assert_eq!(first.freq_mhz, Some(858.4625));
    assert_eq!(first.duration_secs, Some(11.0));
    assert_eq!(first.duration(), Some(std::time::Duration::from_secs(11)));
    assert_eq!(first.time_diff, Some(5.151));
    assert_eq!(first.ttl, Some(1_789_964_382));
    assert_eq!(first.start_time, Some(1_758_428_366));
    assert_eq!(first.stop_time, Some(1_758_428_377));
    assert_eq!(first.filename, "1758428366-512");
    assert_eq!(first.enc(), "m4a");
    assert_eq!(first.hash.as_deref(), Some("qwh9zivk"));
    assert_eq!(first.descr.as_deref(), Some("Fire 1A Dispatch"));
    assert_eq!(first.display.as_deref(), Some("FD 1A"));
    assert_eq!(first.grouping.as_deref(), Some("Pinellas County Fire-EMS"));
    assert_eq!(first.tag, Some(3));
    assert_eq!(first.score, None);
    let meta = first.metadata_object().unwrap();
    assert_eq!(meta["talkgroup"], json!(512));
    assert_eq!(meta["short_name"], json!("pinellas005"));
    assert_eq!(first.call_id().as_str(), "2893-1758428366-512-qwh9zivk");
    assert_eq!(
        first.audio_url(&cdn()).unwrap().as_str(),
        "https://calls.broadcastify.com/qwh9zivk/2893/1758428366-512.m4a"
    );
    assert_eq!(
        first.shard_key(),
        (SystemId::new(4290), TalkgroupId::new(512))
    );

    let last = &resp.calls[24];
    assert_eq!(last.ts, 1_758_430_147);
    assert_eq!(last.filename, "1758430131-512");
    assert_eq!(last.hash.as_deref(), Some("a6epj2o9"));
    assert_eq!(last.duration_secs, Some(10.0));
    assert_eq!(last.ttl, Some(1_789_966_147));
    assert_eq!(last.time_diff, Some(6.158));
    assert_eq!(last.freq_mhz, Some(858.5875));
    assert_eq!(last.src, Some(706_108));
    assert_eq!(last.src_key.as_deref(), Some("4290-706108"));
    assert_eq!(last.start_time, Some(1_758_430_131));
    assert_eq!(last.stop_time, Some(1_758_430_141));
    assert_eq!(last.call_id().as_str(), "2893-1758430131-512-a6epj2o9");
    assert_eq!(
        last.audio_url(&cdn()).unwrap().as_str(),
        "https://calls.broadcastify.com/a6epj2o9/2893/1758430131-512.m4a"
    );

    let ids: HashSet<_> = resp.calls.iter().map(Call::call_id).collect();
    assert_eq!(
        ids.len(),
        25,
        "every call id is unique (the payload's id is not)"
    );
}

#[test]
fn real_archive_parses_with_exact_fields() {
    let resp = ArchiveResponse::from_slice(ARCHIVE_REAL).unwrap();
    assert_eq!(resp.calls.len(), 14);
    assert!(resp.rejected.is_empty());
    assert_eq!(resp.server_time, Some(1_758_457_817));
    assert_eq!(resp.window, TimeWindow::new(1_758_371_399, 1_758_373_200));
    // start = s - 1, end = s + 1800 for the block s.
    let block = TimeBlock::from_aligned(resp.window.start + 1).unwrap();
    assert_eq!(block.window().end, resp.window.end);
    // `raw` is the whole body.
    let whole: Value = serde_json::from_slice(ARCHIVE_REAL).unwrap();
    assert_eq!(*resp.raw, whole);

    let raws = raw_calls(ARCHIVE_REAL);
    for (call, raw) in resp.calls.iter().zip(&raws) {
        assert_matches_raw(call, raw);
        assert_eq!(call.group_key.as_deref(), Some("4290-1536"));
        assert!(call.group_key.as_deref().unwrap().starts_with("4290-"));
        assert_eq!(call.score, Some(call.ts), "score equals ts");
    }

    let first = &resp.calls[0];
    assert_eq!(first.ts, 1_758_372_329);
    assert_eq!(first.talkgroup, Some(TalkgroupId::new(1536)));
    assert_eq!(first.filename, "1758372308-1536");
    assert_eq!(first.hash.as_deref(), Some("9c719vw3"));
    assert_eq!(first.duration_secs, Some(16.0));
    assert_eq!(first.ttl, Some(1_789_908_329));
    assert_eq!(first.time_diff, Some(5.121));
    assert_eq!(first.freq_mhz, Some(859.2375));
    assert_eq!(first.tg_id, Some(218_460));
    assert_eq!(first.tg_cid, Some(11512));
    assert_eq!(first.src, Some(4_618_835));
    assert_eq!(first.tag, Some(2));
    assert_eq!(first.display.as_deref(), Some("PCSO A-1"));
    assert_eq!(first.descr.as_deref(), Some("Patrol-1"));
    assert_eq!(first.grouping.as_deref(), Some("Pinellas County Sheriff"));
    assert_eq!(first.score, Some(1_758_372_329));
    assert_eq!(first.call_id().as_str(), "2893-1758372308-1536-9c719vw3");
    assert_eq!(
        first.audio_url(&cdn()).unwrap().as_str(),
        "https://calls.broadcastify.com/9c719vw3/2893/1758372308-1536.m4a"
    );

    let last = &resp.calls[13];
    assert_eq!(last.ts, 1_758_373_210);
    assert_eq!(last.filename, "1758373197-1536");
    assert_eq!(last.hash.as_deref(), Some("jf999td0"));
    assert_eq!(last.duration_secs, Some(7.0));
    assert_eq!(last.ttl, Some(1_789_909_210));
    assert_eq!(last.freq_mhz, Some(858.2375));
    assert_eq!(last.start_time, Some(1_758_373_197));
    assert_eq!(last.stop_time, Some(1_758_373_204));
    assert_eq!(last.score, Some(1_758_373_210));
    assert_eq!(last.call_id().as_str(), "2893-1758373197-1536-jf999td0");

    let ids: HashSet<_> = resp.calls.iter().map(Call::call_id).collect();
    assert_eq!(ids.len(), 14);
}

#[test]
fn variants_parse_field_by_field() {
    let resp = LiveCallsResponse::from_slice(VARIANTS).unwrap();
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    assert_eq!(resp.calls.len(), 3);
    // serverTime as a string, lastPos as a float.
    assert_eq!(resp.server_time, Some(1_758_430_161));
    assert_eq!(resp.last_pos, Some(1_758_430_147.0));

    // 0: every number as a string, non-ASCII text, non-object metadata.
    let c = &resp.calls[0];
    assert_eq!(c.group_key.as_deref(), Some("4290-512"));
    assert_eq!(c.ts, 1_758_430_140);
    assert_eq!(c.node, NodeId::new(2893));
    assert_eq!(c.sid, Some(SystemId::new(4290)));
    assert_eq!(c.talkgroup, Some(TalkgroupId::new(512)));
    assert_eq!(c.call_type, Some(3));
    assert_eq!(c.src, Some(-1));
    assert_eq!(c.freq_mhz, Some(858.4625));
    assert_eq!(c.duration_secs, Some(11.0));
    assert_eq!(c.ttl, Some(1_789_966_140));
    assert_eq!(c.start_time, Some(1_758_430_123));
    assert_eq!(c.stop_time, Some(1_758_430_134));
    assert_eq!(c.filename, "1758430123-512");
    assert_eq!(c.enc(), "m4a");
    assert_eq!(c.hash.as_deref(), Some("qwh9zivk"));
    assert_eq!(c.descr.as_deref(), Some("Fire 1A Dispatch — Süd"));
    assert_eq!(c.display.as_deref(), Some("FD 1A"));
    assert_eq!(c.grouping.as_deref(), Some("Pinellas County Fire-EMS"));
    assert_eq!(c.tag, Some(3));
    assert_eq!(
        c.metadata.as_ref().map(RawJson::as_str),
        Some(r#""not-an-object""#),
        "kept as sent"
    );
    assert_eq!(c.metadata_object(), None, "but not an object");
    assert_eq!(c.site_id, None);
    assert_eq!(c.score, None);
    assert!(c.extra.is_empty());
    assert_eq!(c.call_id().as_str(), "2893-1758430123-512-qwh9zivk");
    assert_eq!(c.group(), Some("4290-512".parse().unwrap()));

    // 1: nulls, `call_ttl`, a transcription, an unknown key, no enc.
    let c = &resp.calls[1];
    assert_eq!(c.ts, 1_758_430_147);
    assert_eq!(c.src, None);
    assert_eq!(c.hash, None);
    assert_eq!(c.enc, None);
    assert_eq!(c.enc(), "m4a", "the page's default");
    assert_eq!(c.duration_secs, Some(0.0));
    assert_eq!(c.ttl, Some(1_789_966_147));
    assert_eq!(c.start_time, Some(1_758_430_141));
    assert_eq!(c.stop_time, None);
    assert_eq!(c.transcription.as_deref(), Some("engine twelve respond"));
    assert_eq!(c.extra.len(), 1);
    assert_eq!(
        c.extra["unexpected_new_field"],
        json!({"nested": [1, 2, 3]})
    );
    assert_eq!(c.call_id().as_str(), "2893-1758430141-512");
    assert_eq!(
        c.audio_url(&cdn()).unwrap().as_str(),
        "https://calls.broadcastify.com/2893/1758430141-512.m4a"
    );

    // 2: a conventional call: `fid`, no sid, an mp3, an empty hash, a non-group `id`.
    let c = &resp.calls[2];
    assert_eq!(c.group_key.as_deref(), Some("c-88812"));
    assert_eq!(c.node, NodeId::new(1102));
    assert_eq!(c.call_type, Some(1));
    assert_eq!(c.fid, Some(88812));
    assert_eq!(c.talkgroup, Some(TalkgroupId::new(0)));
    assert_eq!(c.freq_mhz, Some(154.43));
    assert_eq!(c.duration_secs, Some(6.0));
    assert_eq!(c.sid, None);
    assert_eq!(c.group(), None);
    assert_eq!(c.shard_key(), (SystemId::new(0), TalkgroupId::new(0)));
    assert_eq!(c.enc(), "mp3");
    assert_eq!(c.hash(), None, "an empty hash is no hash");
    assert_eq!(c.call_id().as_str(), "1102-1758430135-0");
    assert_eq!(
        c.audio_url(&cdn()).unwrap().as_str(),
        "https://calls.broadcastify.com/1102/1758430135-0.mp3"
    );
}

#[test]
fn hostile_entries_are_rejected_one_by_one() {
    let resp = LiveCallsResponse::from_slice(HOSTILE).unwrap();
    assert!(
        resp.calls.is_empty(),
        "every entry of this fixture is hostile: {:?}",
        resp.calls
    );
    let got: Vec<(usize, CallErrorKind)> = resp
        .rejected
        .iter()
        .map(|r| (r.index, r.error.kind()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, CallErrorKind::UnsafePathPart),
            (1, CallErrorKind::UnsafePathPart),
            (2, CallErrorKind::UnsafePathPart),
            (3, CallErrorKind::OutOfRange),
            (4, CallErrorKind::NotAnObject),
            (5, CallErrorKind::NotAnObject),
        ]
    );
    let r = &resp.rejected;
    assert!(
        matches!(&r[0].error, CallError::UnsafePathPart { field: "filename", value } if value == "../../etc/passwd")
    );
    assert!(matches!(
        &r[1].error,
        CallError::UnsafePathPart {
            field: "systemId",
            ..
        }
    ));
    assert!(matches!(
        &r[2].error,
        CallError::UnsafePathPart {
            field: "enc" | "hash",
            ..
        }
    ));
    // 1e309 cannot be held in an f64: the entry is named, with the key, not a panic.
    assert!(
        matches!(&r[3].error, CallError::OutOfRange { field, value } if field == "call_duration" && value == "1e309"),
        "{:?}",
        r[3].error
    );
    assert!(matches!(
        r[4].error,
        CallError::NotAnObject { found: "string" }
    ));
    assert_eq!(r[4].raw, json!("not an object"));
    assert!(matches!(
        r[5].error,
        CallError::NotAnObject { found: "null" }
    ));
    assert_eq!(r[0].raw["filename"], json!("../../etc/passwd"));
    assert_eq!(resp.server_time, Some(1_758_430_161));
    for rej in r {
        assert!(!rej.error.to_string().is_empty());
        assert!(!rej.error.retry_hint().is_retryable());
    }
}

#[test]
fn hostile_entries_do_not_spoil_valid_ones_in_the_same_batch() {
    // The hostile entries (as raw text: a `Value` cannot hold 1e309) with two valid ones.
    let hostile = std::str::from_utf8(HOSTILE).unwrap();
    let start = hostile.find('[').unwrap() + 1;
    let end = hostile.rfind(']').unwrap();
    let entries: Vec<&str> = hostile[start..end]
        .trim()
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .collect();
    assert_eq!(entries.len(), 6);
    let valid = serde_json::to_string(&raw_calls(LIVE_REAL)[0]).unwrap();
    let mut all: Vec<&str> = entries[..2].to_vec();
    all.push(&valid);
    all.extend(&entries[2..]);
    all.push(&valid);
    let text = format!("{{\"calls\": [{}]}}", all.join(","));
    let resp = LiveCallsResponse::from_slice(text.as_bytes()).unwrap();
    assert_eq!(resp.calls.len(), 2);
    assert_eq!(
        resp.calls[0].call_id().as_str(),
        "2893-1758428366-512-qwh9zivk"
    );
    let idx: Vec<usize> = resp.rejected.iter().map(|r| r.index).collect();
    assert_eq!(idx, vec![0, 1, 3, 4, 5, 6]);
}

#[test]
fn hostile_variants_never_build_a_url_off_the_cdn() {
    let base = cdn();
    let nasty = [
        json!({"ts": 1, "systemId": 2893, "filename": "..", "enc": "m4a"}),
        json!({"ts": 1, "systemId": 2893, "filename": "a%2f..%2fb"}),
        json!({"ts": 1, "systemId": 2893, "filename": "x", "hash": "//evil.example"}),
        json!({"ts": 1, "systemId": 2893, "filename": "x", "hash": "a?b"}),
        json!({"ts": 1, "systemId": 2893, "filename": "x", "enc": "m4a#frag"}),
        json!({"ts": 1, "systemId": 2893, "filename": "x", "enc": "m4a/../../y"}),
        json!({"ts": 1, "systemId": "2893/../1", "filename": "x"}),
        json!({"ts": 1, "systemId": -3, "filename": "x"}),
        json!({"ts": 1, "systemId": 1.5, "filename": "x"}),
        json!({"ts": 1, "systemId": 2893, "filename": "x\u{0}y"}),
        json!({"ts": 1, "systemId": 2893, "filename": "x y"}),
        json!({"ts": 1, "systemId": 2893, "filename": ""}),
        json!({"ts": 1, "systemId": 2893, "filename": "ａ"}),
    ];
    for v in nasty {
        let err = Call::from_value(&v).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                CallErrorKind::UnsafePathPart | CallErrorKind::InvalidField
            ),
            "{v}: {err:?}"
        );
    }
    // A hand-built call with unsafe parts cannot build a URL either.
    let mut call = Call::new(1, NodeId::new(1), "../x");
    assert!(call.audio_url(&base).is_err());
    call.filename = "ok".into();
    call.hash = Some("../..".into());
    assert!(call.audio_url(&base).is_err());
    call.hash = None;
    call.enc = Some("m4a?x".into());
    assert!(call.audio_url(&base).is_err());
    call.enc = None;
    assert_eq!(
        call.audio_url(&base).unwrap().as_str(),
        "https://calls.broadcastify.com/1/ok.m4a"
    );
    assert!(call.audio_url(&Url::parse("mailto:x@y").unwrap()).is_err());
    assert!(
        call.audio_url(&Url::parse("file:///tmp/").unwrap())
            .is_err()
    );
    // A base with a path keeps it; its query and fragment are dropped.
    let sim = Url::parse("http://127.0.0.1:8080/cdn/?q=1#f").unwrap();
    assert_eq!(
        call.audio_url(&sim).unwrap().as_str(),
        "http://127.0.0.1:8080/cdn/1/ok.m4a"
    );
}

#[test]
fn empty_polls_are_not_errors() {
    for body in [EMPTY, NO_CALLS_KEY, br#"{"calls": null}"#.as_slice()] {
        let resp = LiveCallsResponse::from_slice(body).unwrap();
        assert!(resp.calls.is_empty() && resp.rejected.is_empty() && resp.is_empty());
    }
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(LIVE_REAL);
    assert_eq!(
        LiveCallsResponse::from_slice(&with_bom)
            .unwrap()
            .calls
            .len(),
        25
    );
    let resp = LiveCallsResponse::from_slice(EMPTY).unwrap();
    assert_eq!(resp.server_time, Some(1_763_987_420));
    assert_eq!(resp.last_pos, Some(1_763_987_410.5));
    let resp = LiveCallsResponse::from_slice(NO_CALLS_KEY).unwrap();
    assert_eq!(resp.last_pos, Some(1_763_987_410.0));
}

#[test]
fn error_answer_is_a_logged_out_service_error() {
    let err = LiveCallsResponse::from_slice(ERROR).unwrap_err();
    assert_eq!(err.kind(), ParseErrorKind::Service);
    assert!(
        matches!(&err, ParseError::Service { message } if message == "You must be logged in to access live calls")
    );
    assert!(err.is_logged_out());
    let other = LiveCallsResponse::from_slice(br#"{"error": "Internal failure"}"#).unwrap_err();
    assert_eq!(other.kind(), ParseErrorKind::Service);
    assert!(!other.is_logged_out());
    assert!(
        ArchiveResponse::from_slice(ERROR)
            .unwrap_err()
            .is_logged_out()
    );
}

#[test]
fn archive_without_calls_is_missing_field() {
    let err = ArchiveResponse::from_slice(ARCHIVE_MISSING_CALLS).unwrap_err();
    assert_eq!(err, ParseError::MissingField("calls"));
    assert_eq!(err.kind(), ParseErrorKind::MissingField);
    assert_eq!(err.category(), bcfy_proto::ErrorCategory::ResponseParsing);
}

#[test]
fn non_json_and_non_object_bodies_are_clear_errors() {
    let html = b"<html><body>Please log in. Cookie: bcfyuser1=abcdef123</body></html>";
    let err = LiveCallsResponse::from_slice(html).unwrap_err();
    assert_eq!(err.kind(), ParseErrorKind::NotJson);
    let snip = err.snippet().unwrap();
    assert!(snip.starts_with("<html>"));
    assert!(!snip.contains("abcdef123") && !err.to_string().contains("abcdef123"));
    assert_eq!(
        LiveCallsResponse::from_slice(b"").unwrap_err().kind(),
        ParseErrorKind::NotJson
    );
    assert_eq!(
        LiveCallsResponse::from_slice(b"{\"calls\": [")
            .unwrap_err()
            .kind(),
        ParseErrorKind::NotJson
    );
    assert_eq!(
        LiveCallsResponse::from_slice(b"[1, 2]").unwrap_err().kind(),
        ParseErrorKind::NotAnObject
    );
    assert_eq!(
        ArchiveResponse::from_slice(b"null").unwrap_err().kind(),
        ParseErrorKind::NotAnObject
    );
    assert_eq!(
        LiveCallsResponse::from_slice(br#"{"calls": "nope"}"#)
            .unwrap_err()
            .kind(),
        ParseErrorKind::InvalidField
    );
    // Whatever `calls` holds that is not an array is named, with what it was.
    for body in [
        &br#"{"calls": {"a": [1, 2]}, "serverTime": 1}"#[..],
        br#"{"calls": 1e400}"#,
        br#"{"calls": true}"#,
        br#"{"calls": [], "calls": -3}"#,
    ] {
        let text = String::from_utf8_lossy(body).into_owned();
        let e = LiveCallsResponse::from_slice(body).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::InvalidField, "{text}");
        assert!(!e.snippet().unwrap().is_empty(), "{text}: {e}");
        let a = ArchiveResponse::from_slice(body).unwrap_err();
        assert_eq!(a.kind(), ParseErrorKind::InvalidField, "{text}");
    }
    // The last of duplicate `calls` keys counts; an `error` key comes first.
    let r = LiveCallsResponse::from_slice(br#"{"calls": 5, "calls": null}"#).unwrap();
    assert!(r.is_empty());
    let e = LiveCallsResponse::from_slice(br#"{"calls": "x", "error": "You must be logged in"}"#)
        .unwrap_err();
    assert!(e.is_logged_out(), "{e}");
}

#[test]
fn real_audio_is_sniffed_as_mp4() {
    assert_eq!(sniff_content_type(M4A_REAL), Some("audio/mp4"));
    assert_eq!(&M4A_REAL[4..8], b"ftyp");
}
