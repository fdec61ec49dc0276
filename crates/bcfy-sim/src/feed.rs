//! The deterministic call feed and the store of ingested calls.
//!
//! Call number `i` draws everything about itself (talkgroup, source, duration, hash, metadata,
//! transcript) from an RNG seeded by `(seed, i)`, so its content does not depend on when it is
//! ingested; only its times do. Arrival gaps come from a second seeded stream (exponential with
//! mean `1/rate`). Every ingested call is appended to one vector in `ts` order (a late call takes
//! the largest `ts` already ingested, so the order stays append-only), which makes a poll a
//! binary search plus a scan.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::audio;

/// Seconds in 365 days: `call-ttl` = `ts` + this.
const TTL_SECS: i64 = 365 * 24 * 3600;

/// Fixed facts about one simulated talkgroup.
#[derive(Clone, Debug)]
pub(crate) struct GroupInfo {
    pub(crate) sid: u64,
    pub(crate) tg: u64,
    pub(crate) node: u64,
    pub(crate) alt_node: u64,
    pub(crate) site_id: u64,
    pub(crate) tg_id: u64,
    pub(crate) tg_cid: u64,
    pub(crate) descr: String,
    pub(crate) display: String,
    pub(crate) grouping: String,
    pub(crate) tag: i64,
    pub(crate) group_tag: &'static str,
    pub(crate) base_freq_hz: u64,
    pub(crate) key: String,
}

const KINDS: [(i64, &str, &str, &str); 4] = [
    (3, "Fire Dispatch", "Fire", "FD"),
    (2, "Law Dispatch", "Patrol", "PD"),
    (4, "EMS Dispatch", "EMS", "EMS"),
    (8, "Public Works", "Works", "PW"),
];

impl GroupInfo {
    pub(crate) fn new(index: usize, sid: u64, tg: u64, sid_index: usize) -> GroupInfo {
        // The two groups of the real fixtures keep their real names.
        let (descr, display, grouping, tag, group_tag) = match (sid, tg) {
            (4290, 512) => (
                "Fire 1A Dispatch".to_owned(),
                "FD 1A".to_owned(),
                "Pinellas County Fire-EMS".to_owned(),
                3,
                "Fire Dispatch",
            ),
            (4290, 1536) => (
                "Patrol-1".to_owned(),
                "PCSO A-1".to_owned(),
                "Pinellas County Sheriff".to_owned(),
                2,
                "Law Dispatch",
            ),
            _ => {
                let (tag, gt, word, short) = KINDS[(tg as usize) % KINDS.len()];
                (
                    format!("{word} {tg} Dispatch"),
                    format!("{short} {tg}"),
                    format!("Sim County {word} ({sid})"),
                    tag,
                    gt,
                )
            }
        };
        let node = if sid == 4290 {
            2893
        } else {
            3000 + 17 * sid_index as u64
        };
        GroupInfo {
            sid,
            tg,
            node,
            alt_node: node + 4000,
            site_id: if sid == 4290 {
                18462
            } else {
                18000 + sid % 1000
            },
            tg_id: 200_000 + (sid * 31 + tg) % 99_991,
            tg_cid: 10_000 + (tg * 7 + index as u64) % 9973,
            descr,
            display,
            grouping,
            tag,
            group_tag,
            base_freq_hz: 851_000_000 + 12_500 * ((sid + tg) % 600),
            key: format!("{sid}-{tg}"),
        }
    }
}

/// Knobs of the feed.
#[derive(Clone, Debug)]
pub(crate) struct FeedConfig {
    pub(crate) seed: u64,
    pub(crate) groups: Vec<GroupInfo>,
    pub(crate) rate: f64,
    pub(crate) total: Option<u64>,
    pub(crate) late_probability: f64,
    pub(crate) dual_probability: f64,
    pub(crate) hashless_probability: f64,
    pub(crate) metadata_probability: f64,
    pub(crate) audio_padding: usize,
    pub(crate) max_stored: Option<usize>,
}

/// A transcript segment.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) text: String,
    pub(crate) avg_logprob: f64,
}

/// One ingested call.
#[derive(Debug)]
pub(crate) struct StoredCall {
    pub(crate) seq: u64,
    pub(crate) call_id: String,
    pub(crate) group: usize,
    pub(crate) node: u64,
    pub(crate) filename: String,
    pub(crate) hash: Option<String>,
    pub(crate) ts: i64,
    pub(crate) start: i64,
    pub(crate) pad: usize,
    pub(crate) late: bool,
    pub(crate) dual_of: Option<String>,
    pub(crate) transcript: String,
    pub(crate) segments: Vec<Segment>,
    pub(crate) duration: f64,
    /// The call as live-calls serialises it.
    pub(crate) json: Bytes,
    /// The call as archivecall.php serialises it (with `score`).
    pub(crate) archive_json: Bytes,
    /// Hex SHA-256 of the audio, computed on first request (ledgers are read repeatedly).
    pub(crate) audio_sha: std::sync::OnceLock<String>,
}

impl StoredCall {
    pub(crate) fn audio_chunks(&self) -> Vec<Bytes> {
        audio::chunks(&self.call_id, self.pad)
    }
    pub(crate) fn audio(&self) -> Bytes {
        audio::bytes(&self.call_id, self.pad)
    }
    pub(crate) fn audio_len(&self) -> u64 {
        audio::len(&self.call_id, self.pad)
    }
    pub(crate) fn audio_sha256(&self) -> &str {
        self.audio_sha.get_or_init(|| {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(self.audio()))
        })
    }
}

#[derive(Serialize)]
struct FreqEntry {
    freq: u64,
    spike_count: u32,
    time: i64,
    len: f64,
    error_count: u32,
    pos: u8,
}

#[derive(Serialize)]
struct SrcEntry {
    emergency: u8,
    signal_system: Option<()>,
    time: i64,
    tag: Option<()>,
    src: i64,
    pos: u8,
}

#[derive(Serialize)]
struct Metadata<'a> {
    #[serde(rename = "freqList")]
    freq_list: Vec<FreqEntry>,
    stop_time: i64,
    call_length: i64,
    freq: u64,
    emergency: u8,
    duplex: u8,
    mode: u8,
    talkgroup_tag: &'a str,
    talkgroup_group: &'a str,
    freq_error: i64,
    noise: i64,
    audio_type: &'a str,
    signal: i64,
    source_num: u32,
    tdma_slot: u32,
    priority: u32,
    talkgroup_description: &'a str,
    #[serde(rename = "srcList")]
    src_list: Vec<SrcEntry>,
    recorder_num: u32,
    start_time: i64,
    encrypted: u8,
    talkgroup_group_tag: &'a str,
    short_name: String,
    phase2_tdma: u8,
    talkgroup: u64,
}

#[derive(Serialize)]
struct CallJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    descr: &'a str,
    call_tg: u64,
    call_duration: i64,
    #[serde(rename = "call-ttl")]
    call_ttl: i64,
    call_timediff: f64,
    id: &'a str,
    #[serde(rename = "siteId")]
    site_id: u64,
    #[serde(rename = "systemId")]
    system_id: u64,
    display: &'a str,
    call_type: u8,
    #[serde(rename = "tgId")]
    tg_id: u64,
    #[serde(rename = "tgCid")]
    tg_cid: u64,
    sid: u64,
    filename: &'a str,
    meta_starttime: i64,
    call_freq: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<&'a str>,
    meta_stoptime: i64,
    grouping: &'a str,
    enc: &'a str,
    call_src_key: String,
    tag: i64,
    call_src: i64,
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<i64>,
}

/// What a live poll asks for.
#[derive(Clone, Debug)]
pub(crate) enum Filter {
    Groups(Vec<(u64, u64)>),
    Sid(u64),
    Node(u64),
}

/// The content of call `i`, independent of its timing.
struct Draw {
    group: usize,
    duration: i64,
    stop_lag: i64,
    timediff_frac: f64,
    src: i64,
    freq_step: u64,
    hash: Option<String>,
    alt_hash: String,
    metadata: bool,
    late: bool,
    dual: bool,
    pad: usize,
    recorder: u32,
    spikes: u32,
    errors: u32,
    freq_error: i64,
    transcript_seed: u64,
}

fn hash8(rng: &mut ChaCha8Rng) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

/// Mixes the seed and a call index into an RNG seed (splitmix64).
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The feed and every call ingested so far.
pub(crate) struct Feed {
    cfg: FeedConfig,
    gaps: ChaCha8Rng,
    next_due: f64,
    drawn: u64,
    produced: u64,
    calls: Vec<Arc<StoredCall>>,
    by_id: HashMap<String, Arc<StoredCall>>,
    max_ts: Option<i64>,
}

impl Feed {
    pub(crate) fn new(cfg: FeedConfig, first_at: f64) -> Feed {
        let mut gaps = ChaCha8Rng::seed_from_u64(mix(cfg.seed, u64::MAX));
        let first = first_at + gap(&mut gaps, cfg.rate);
        Feed {
            cfg,
            gaps,
            next_due: first,
            drawn: 0,
            produced: 0,
            calls: Vec::new(),
            by_id: HashMap::new(),
            max_ts: None,
        }
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.cfg.total.is_some_and(|t| self.produced >= t)
    }

    pub(crate) fn produced(&self) -> u64 {
        self.produced
    }

    pub(crate) fn calls(&self) -> &[Arc<StoredCall>] {
        &self.calls
    }

    pub(crate) fn get(&self, call_id: &str) -> Option<&Arc<StoredCall>> {
        self.by_id.get(call_id)
    }

    /// Ingests every call scheduled at or before `now`.
    pub(crate) fn pump(&mut self, now: f64) {
        if self.cfg.rate.is_nan() || self.cfg.rate <= 0.0 {
            return;
        }
        while self.next_due <= now && !self.exhausted() {
            let at = self.next_due;
            self.materialize(at);
            self.next_due += gap(&mut self.gaps, self.cfg.rate);
        }
    }

    /// Ingests the next `n` calls of the feed now (after any that were already due).
    pub(crate) fn ingest(&mut self, n: usize, now: f64) -> Vec<String> {
        self.pump(now);
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            if self.exhausted() {
                break;
            }
            ids.extend(self.materialize(now));
        }
        ids
    }

    fn draw(&self, i: u64) -> Draw {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, i));
        let group = rng.random_range(0..self.cfg.groups.len());
        let duration = if rng.random_bool(0.5) {
            rng.random_range(1..=3)
        } else {
            rng.random_range(4..=18)
        };
        let stop_lag = rng.random_range(5..=6);
        let timediff_frac = f64::from(rng.random_range(80u32..=200)) / 1000.0;
        let src = rng.random_range(700_000..4_700_000);
        let freq_step = rng.random_range(0..8);
        let hashless = rng.random::<f64>() < self.cfg.hashless_probability;
        let h = hash8(&mut rng);
        let alt_hash = hash8(&mut rng);
        let metadata = rng.random::<f64>() < self.cfg.metadata_probability;
        let late = rng.random::<f64>() < self.cfg.late_probability;
        let dual = rng.random::<f64>() < self.cfg.dual_probability;
        let pad = rng.random_range(16..2048) + self.cfg.audio_padding;
        Draw {
            group,
            duration,
            stop_lag,
            timediff_frac,
            src,
            freq_step,
            hash: (!hashless).then_some(h),
            alt_hash,
            metadata,
            late,
            dual,
            pad,
            recorder: rng.random_range(0..8),
            spikes: rng.random_range(1..40),
            errors: rng.random_range(0..130),
            freq_error: -rng.random_range(450..600),
            transcript_seed: rng.next_u64(),
        }
    }

    /// Ingests call number `self.drawn` at sim time `at`; returns the ids added.
    fn materialize(&mut self, at: f64) -> Vec<String> {
        let i = self.drawn;
        self.drawn += 1;
        let d = self.draw(i);
        let mut ts = at.floor() as i64;
        let mut late = false;
        if let Some(max) = self.max_ts {
            if d.late && max < ts {
                // Late ingest: the call lands in a second a poll may already have covered.
                ts = max;
                late = true;
            }
            ts = ts.max(max);
        }
        let mut ids = Vec::new();
        let (text, segments) = transcript(d.transcript_seed, &self.cfg.groups[d.group], d.duration);
        let g = self.cfg.groups[d.group].clone();
        let first = self.push(
            &g,
            &d,
            ts,
            late,
            g.node,
            d.hash.clone(),
            d.metadata,
            None,
            &text,
            &segments,
        );
        ids.push(first.clone());
        if d.dual && !self.exhausted() {
            // The same transmission from another node: SDRTrunk-style, no metadata.
            ids.push(self.push(
                &g,
                &d,
                ts,
                late,
                g.alt_node,
                Some(d.alt_hash.clone()),
                false,
                Some(first),
                &text,
                &segments,
            ));
        }
        ids
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        g: &GroupInfo,
        d: &Draw,
        ts: i64,
        late: bool,
        node: u64,
        hash: Option<String>,
        with_metadata: bool,
        dual_of: Option<String>,
        text: &str,
        segments: &[Segment],
    ) -> String {
        let stop = ts - d.stop_lag;
        let mut start = stop - d.duration;
        let mut filename = format!("{start}-{}", g.tg);
        let make_id = |f: &str| match &hash {
            Some(h) => format!("{node}-{f}-{h}"),
            None => format!("{node}-{f}"),
        };
        let mut call_id = make_id(&filename);
        // Identity must be unique per upload; a hashless collision moves the start a second.
        while self.by_id.contains_key(&call_id) {
            start -= 1;
            filename = format!("{start}-{}", g.tg);
            call_id = make_id(&filename);
        }
        let freq_hz = g.base_freq_hz + 12_500 * d.freq_step;
        // MHz with the 12.5 kHz channel step intact (e.g. 858.4625, as in the fixture).
        let call_freq = freq_hz as f64 / 1_000_000.0;
        let metadata = with_metadata.then(|| Metadata {
            freq_list: vec![FreqEntry {
                freq: freq_hz,
                spike_count: d.spikes,
                time: start,
                len: (stop - start) as f64 - 0.2,
                error_count: d.errors,
                pos: 0,
            }],
            stop_time: stop,
            call_length: stop - start,
            freq: freq_hz,
            emergency: 0,
            duplex: 0,
            mode: 0,
            talkgroup_tag: &g.display,
            talkgroup_group: &g.grouping,
            freq_error: d.freq_error,
            noise: 999,
            audio_type: "digital",
            signal: 999,
            source_num: 0,
            tdma_slot: 0,
            priority: 4,
            talkgroup_description: &g.descr,
            src_list: vec![SrcEntry {
                emergency: 0,
                signal_system: None,
                time: start,
                tag: None,
                src: d.src,
                pos: 0,
            }],
            recorder_num: d.recorder,
            start_time: start,
            encrypted: 0,
            talkgroup_group_tag: g.group_tag,
            short_name: format!("sim{:03}", g.sid % 1000),
            phase2_tdma: 0,
            talkgroup: g.tg,
        });
        let mut call = CallJson {
            metadata,
            descr: &g.descr,
            call_tg: g.tg,
            call_duration: stop - start,
            call_ttl: ts + TTL_SECS,
            call_timediff: (((ts - stop) as f64 + d.timediff_frac) * 1000.0).round() / 1000.0,
            id: &g.key,
            site_id: g.site_id,
            system_id: node,
            display: &g.display,
            call_type: 3,
            tg_id: g.tg_id,
            tg_cid: g.tg_cid,
            sid: g.sid,
            filename: &filename,
            meta_starttime: start,
            call_freq,
            hash: hash.as_deref(),
            meta_stoptime: stop,
            grouping: &g.grouping,
            enc: "m4a",
            call_src_key: format!("{}-{}", g.sid, d.src),
            tag: g.tag,
            call_src: d.src,
            ts,
            score: None,
        };
        // Serialising plain structs of numbers and strings cannot fail.
        let json = Bytes::from(serde_json::to_vec(&call).unwrap_or_default());
        call.score = Some(ts);
        let archive_json = Bytes::from(serde_json::to_vec(&call).unwrap_or_default());
        let stored = Arc::new(StoredCall {
            seq: self.produced,
            call_id: call_id.clone(),
            group: d.group,
            node,
            filename,
            hash,
            ts,
            start,
            pad: d.pad + usize::from(dual_of.is_some()) * 7,
            late,
            dual_of,
            transcript: text.to_owned(),
            segments: segments.to_vec(),
            duration: (stop - start) as f64,
            json,
            archive_json,
            audio_sha: std::sync::OnceLock::new(),
        });
        self.produced += 1;
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        self.calls.push(stored.clone());
        self.by_id.insert(call_id.clone(), stored);
        if let Some(cap) = self.cfg.max_stored
            && self.calls.len() > cap.saturating_mul(2).max(1)
        {
            // Drop the oldest in one batch, so pruning costs O(1) amortised per call.
            let drop = self.calls.len() - cap;
            for old in self.calls.drain(..drop) {
                self.by_id.remove(&old.call_id);
            }
        }
        call_id
    }

    fn matches(&self, c: &StoredCall, filter: &Filter) -> bool {
        let g = &self.cfg.groups[c.group];
        match filter {
            Filter::Groups(gs) => gs.iter().any(|&(s, t)| s == g.sid && t == g.tg),
            Filter::Sid(s) => g.sid == *s,
            Filter::Node(n) => c.node == *n,
        }
    }

    /// Calls with `ts >= pos` that match `filter`, in ingest order (ascending `ts`).
    pub(crate) fn live(
        &self,
        filter: &Filter,
        pos: f64,
        limit: Option<usize>,
    ) -> Vec<Arc<StoredCall>> {
        let from = self.calls.partition_point(|c| (c.ts as f64) < pos);
        let mut out: Vec<Arc<StoredCall>> = self.calls[from..]
            .iter()
            .filter(|c| self.matches(c, filter))
            .cloned()
            .collect();
        if let Some(limit) = limit {
            // Like the page's initial history: the most recent ones.
            if out.len() > limit {
                out.drain(..out.len() - limit);
            }
        }
        out
    }

    /// Up to `n` calls with `ts < pos` matching `filter`, the most recent ones, ascending.
    pub(crate) fn before(&self, filter: &Filter, pos: f64, n: usize) -> Vec<Arc<StoredCall>> {
        let to = self.calls.partition_point(|c| (c.ts as f64) < pos);
        let mut out: Vec<_> = self.calls[..to]
            .iter()
            .rev()
            .filter(|c| self.matches(c, filter))
            .take(n)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Calls of one group with `s <= ts < s + 1800`.
    pub(crate) fn archive(&self, sid: u64, tg: u64, s: i64) -> Vec<Arc<StoredCall>> {
        let from = self.calls.partition_point(|c| c.ts < s);
        let to = self.calls.partition_point(|c| c.ts < s + 1800);
        let filter = Filter::Groups(vec![(sid, tg)]);
        self.calls[from..to]
            .iter()
            .filter(|c| self.matches(c, &filter))
            .cloned()
            .collect()
    }

    /// Node ids in use (primary and second-upload nodes).
    pub(crate) fn group_of(&self, c: &StoredCall) -> &GroupInfo {
        &self.cfg.groups[c.group]
    }
}

fn gap(rng: &mut ChaCha8Rng, rate: f64) -> f64 {
    if rate.is_nan() || rate <= 0.0 {
        return f64::INFINITY;
    }
    let u: f64 = rng.random();
    -(1.0 - u).ln() / rate
}

const STREETS: [&str; 12] = [
    "Main Street",
    "Gulf Boulevard",
    "Park Avenue",
    "Oak Drive",
    "Seminole Road",
    "Bay Pines Boulevard",
    "Ulmerton Road",
    "4th Street North",
    "Belcher Road",
    "Alt 19",
    "Curlew Road",
    "Tampa Road",
];
const FIRE: [&str; 6] = [
    "a structure fire",
    "a fire alarm",
    "a vehicle accident with injuries",
    "a smoke investigation",
    "a lift assist",
    "a brush fire",
];
const LAW: [&str; 6] = [
    "a suspicious vehicle",
    "a disturbance",
    "a traffic stop",
    "a retail theft",
    "a welfare check",
    "a noise complaint",
];
const EMS: [&str; 5] = [
    "a fall victim",
    "chest pain",
    "difficulty breathing",
    "an unresponsive person",
    "a sick person",
];
const CLOSERS: [&str; 6] = [
    "Copy, en route.",
    "Received, show us responding.",
    "10-4.",
    "Dispatch copies.",
    "Go ahead with the cross street.",
    "Show me on scene.",
];

/// The deterministic transcript of a call: its text and segments.
fn transcript(seed: u64, g: &GroupInfo, duration: i64) -> (String, Vec<Segment>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let unit = rng.random_range(1..60);
    let num = rng.random_range(100..9900);
    let street = STREETS[rng.random_range(0..STREETS.len())];
    let first = match g.tag {
        3 => format!(
            "Engine {unit}, Rescue {}, respond to {num} {street} for {}.",
            unit + 10,
            FIRE[rng.random_range(0..FIRE.len())]
        ),
        2 => format!(
            "Unit {unit}, {} at {num} {street}.",
            LAW[rng.random_range(0..LAW.len())]
        ),
        4 => format!(
            "Medic {unit}, respond to {num} {street} for {}.",
            EMS[rng.random_range(0..EMS.len())]
        ),
        _ => format!("Unit {unit}, check {num} {street}."),
    };
    let second = CLOSERS[rng.random_range(0..CLOSERS.len())];
    let total = duration.max(1) as f64;
    let split = (total * 0.7 * 100.0).round() / 100.0;
    let mut text = String::new();
    let _ = write!(text, "{first} {second}");
    let segs = vec![
        Segment {
            start: 0.0,
            end: split,
            text: format!(" {first}"),
            avg_logprob: -0.1 - f64::from(rng.random_range(0u32..400)) / 1000.0,
        },
        Segment {
            start: split,
            end: total,
            text: format!(" {second}"),
            avg_logprob: -0.1 - f64::from(rng.random_range(0u32..400)) / 1000.0,
        },
    ];
    (text, segs)
}

/// Parses `"{sid}-{tg}"`.
pub(crate) fn parse_group(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}
