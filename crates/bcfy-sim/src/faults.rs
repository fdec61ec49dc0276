//! Fault injection: which endpoint misbehaves, how, and when.
//!
//! A [`FaultPlan`] is a list of rules `(endpoint, trigger, fault)` plus two feed-level faults
//! (session expiry after K requests, the same transmission uploaded by two nodes). Triggers are
//! either exact scripts ("the 3rd live poll") or probabilities drawn from an RNG seeded by the
//! simulator's seed, so a run is reproducible. Every rule whose trigger fires applies: a status
//! fault (429, 503) replaces the answer, body faults (slow, reset, malformed, ...) shape it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The simulated endpoints, used to aim faults and to label recorded requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /login/`.
    Login,
    /// `GET /account/?action=logout`.
    Logout,
    /// `POST /calls/apis/live-calls`.
    LiveCalls,
    /// `GET /calls/apis/archivecall.php`.
    Archive,
    /// The calls CDN (`/{hash}/{systemId}/{filename}.{enc}`).
    Audio,
    /// `POST /v1/audio/transcriptions`.
    Transcription,
    /// Anything else (answered 404).
    Other,
}

impl Endpoint {
    /// All endpoints that can carry faults, in a fixed order.
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Login,
        Endpoint::Logout,
        Endpoint::LiveCalls,
        Endpoint::Archive,
        Endpoint::Audio,
        Endpoint::Transcription,
        Endpoint::Other,
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            Endpoint::Login => 0,
            Endpoint::Logout => 1,
            Endpoint::LiveCalls => 2,
            Endpoint::Archive => 3,
            Endpoint::Audio => 4,
            Endpoint::Transcription => 5,
            Endpoint::Other => 6,
        }
    }

    /// The short name used by the fault-plan syntax (`live`, `audio`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Login => "login",
            Endpoint::Logout => "logout",
            Endpoint::LiveCalls => "live",
            Endpoint::Archive => "archive",
            Endpoint::Audio => "audio",
            Endpoint::Transcription => "whisper",
            Endpoint::Other => "other",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Endpoint {
    type Err = FaultPlanParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| FaultPlanParseError(format!("unknown endpoint `{s}`")))
    }
}

/// How a `Retry-After` header is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <HTTP-date>`, this far in the (real) future, rounded up to a whole second.
    HttpDate(Duration),
}

/// One way an endpoint can misbehave.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Fault {
    /// `429 Too Many Requests`, with `Retry-After` when given.
    TooManyRequests(Option<RetryAfter>),
    /// `503 Service Unavailable`, with `Retry-After` when given.
    Unavailable(Option<RetryAfter>),
    /// Send the headers and half the body, then abort the connection (h1: close; h2: reset).
    ResetMidBody,
    /// Wait this long before sending the response headers.
    SlowHeaders(Duration),
    /// Send the body in 8 pieces with this pause between them.
    SlowBody(Duration),
    /// A JSON endpoint answers a truncated, unparsable document (status 200).
    MalformedJson,
    /// Live calls: append the hostile entries of `fixtures/live-calls-hostile.json` to `calls`.
    HostileEntries,
    /// Audio (or any body): announce the full `Content-Length`, send only half, then close.
    TruncatedBody,
    /// Live calls: repeat up to 3 calls already served before `pos` in this answer.
    DuplicateCalls,
    /// Live calls: answer a `lastPos` 60 s behind the requested `pos`.
    LastPosBackwards,
}

impl Fault {
    /// `429` with `Retry-After: <secs>`.
    pub fn too_many_requests_secs(secs: u64) -> Fault {
        Fault::TooManyRequests(Some(RetryAfter::Seconds(secs)))
    }
    /// `429` with `Retry-After: <HTTP-date now + d>`.
    pub fn too_many_requests_date(d: Duration) -> Fault {
        Fault::TooManyRequests(Some(RetryAfter::HttpDate(d)))
    }
}

/// When a rule fires.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// On every request to the endpoint.
    Always,
    /// On the n-th request (1-based) to the endpoint, counted since start.
    Nth(u64),
    /// On requests n..=m (1-based, inclusive) to the endpoint.
    Range(u64, u64),
    /// With this probability, drawn from the seeded RNG.
    Probability(f64),
}

impl Trigger {
    pub(crate) fn fires(&self, n: u64, draw: impl FnOnce() -> f64) -> bool {
        match *self {
            Trigger::Always => true,
            Trigger::Nth(k) => n == k,
            Trigger::Range(a, b) => (a..=b).contains(&n),
            Trigger::Probability(p) => draw() < p,
        }
    }
}

/// One rule of a [`FaultPlan`].
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// When.
    pub trigger: Trigger,
    /// What.
    pub fault: Fault,
}

/// A plan of faults for one run. `FaultPlan::none()` (the default) is a well-behaved service.
///
/// ```
/// use bcfy_sim::{Endpoint, Fault, FaultPlan};
/// use std::time::Duration;
/// let plan = FaultPlan::none()
///     .nth(Endpoint::LiveCalls, 3, Fault::too_many_requests_secs(2))
///     .random(Endpoint::Audio, 0.1, Fault::TruncatedBody)
///     .always(Endpoint::Archive, Fault::SlowHeaders(Duration::from_millis(50)))
///     .session_expiry_after(5)
///     .dual_upload(0.2);
/// assert_eq!(plan, "live:429=2@3,audio:truncate~0.1,archive:slow-headers=50,session-expiry=5,dual-upload=0.2".parse().unwrap());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// The per-endpoint rules, evaluated in order.
    pub rules: Vec<FaultRule>,
    /// A session token dies after this many authenticated requests (live calls, archive).
    pub session_expiry_after: Option<u64>,
    /// Probability that a call of the feed is also uploaded by a second node (another
    /// `systemId`, same `sid`/`call_tg`/`meta_starttime`, its own hash and audio).
    pub dual_upload_probability: f64,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }
    /// Adds a rule.
    #[must_use]
    pub fn rule(mut self, endpoint: Endpoint, trigger: Trigger, fault: Fault) -> FaultPlan {
        self.rules.push(FaultRule {
            endpoint,
            trigger,
            fault,
        });
        self
    }
    /// The `n`-th request (1-based) to `endpoint` suffers `fault`.
    #[must_use]
    pub fn nth(self, endpoint: Endpoint, n: u64, fault: Fault) -> FaultPlan {
        self.rule(endpoint, Trigger::Nth(n), fault)
    }
    /// Each request to `endpoint` suffers `fault` with probability `p` (seeded RNG).
    #[must_use]
    pub fn random(self, endpoint: Endpoint, p: f64, fault: Fault) -> FaultPlan {
        self.rule(endpoint, Trigger::Probability(p), fault)
    }
    /// Every request to `endpoint` suffers `fault`.
    #[must_use]
    pub fn always(self, endpoint: Endpoint, fault: Fault) -> FaultPlan {
        self.rule(endpoint, Trigger::Always, fault)
    }
    /// Sessions expire after `k` authenticated requests.
    #[must_use]
    pub fn session_expiry_after(mut self, k: u64) -> FaultPlan {
        self.session_expiry_after = Some(k);
        self
    }
    /// Calls are uploaded by a second node with probability `p`.
    #[must_use]
    pub fn dual_upload(mut self, p: f64) -> FaultPlan {
        self.dual_upload_probability = p;
        self
    }
}

/// A fault-plan string that does not parse; the message says which item and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault plan: {0}")]
pub struct FaultPlanParseError(String);

fn num<T: FromStr>(s: &str, what: &str) -> Result<T, FaultPlanParseError> {
    s.parse()
        .map_err(|_| FaultPlanParseError(format!("`{s}` is not a valid {what}")))
}

fn parse_fault(s: &str) -> Result<Fault, FaultPlanParseError> {
    let (name, arg) = match s.split_once('=') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    let ms = |a: Option<&str>, default: u64| -> Result<Duration, FaultPlanParseError> {
        Ok(Duration::from_millis(match a {
            Some(a) => num(a, "millisecond count")?,
            None => default,
        }))
    };
    let secs = |a: Option<&str>| -> Result<Option<u64>, FaultPlanParseError> {
        a.map(|a| num(a, "second count")).transpose()
    };
    Ok(match name {
        "429" => Fault::TooManyRequests(secs(arg)?.map(RetryAfter::Seconds)),
        "429-date" => Fault::TooManyRequests(Some(RetryAfter::HttpDate(Duration::from_secs(
            secs(arg)?.unwrap_or(2),
        )))),
        "503" => Fault::Unavailable(secs(arg)?.map(RetryAfter::Seconds)),
        "503-date" => Fault::Unavailable(Some(RetryAfter::HttpDate(Duration::from_secs(
            secs(arg)?.unwrap_or(2),
        )))),
        "reset" => Fault::ResetMidBody,
        "slow-headers" => Fault::SlowHeaders(ms(arg, 2000)?),
        "slow-body" => Fault::SlowBody(ms(arg, 250)?),
        "malformed" => Fault::MalformedJson,
        "hostile" => Fault::HostileEntries,
        "truncate" => Fault::TruncatedBody,
        "duplicate" => Fault::DuplicateCalls,
        "backwards" => Fault::LastPosBackwards,
        other => return Err(FaultPlanParseError(format!("unknown fault `{other}`"))),
    })
}

/// The textual plan used by the `bcfy-sim` binary's `--faults`: comma-separated items.
///
/// - `ENDPOINT:FAULT[@N|@N-M|~P]` where ENDPOINT is `login`, `logout`, `live`, `archive`,
///   `audio`, `whisper`; `@N` is the N-th request, `@N-M` a range, `~P` a probability, nothing
///   means always. FAULT is `429[=SECS]`, `429-date[=SECS]`, `503[=SECS]`, `503-date[=SECS]`,
///   `reset`, `slow-headers[=MS]`, `slow-body[=MS]`, `malformed`, `hostile`, `truncate`,
///   `duplicate`, `backwards`.
/// - `session-expiry=K`, `dual-upload=P`.
impl FromStr for FaultPlan {
    type Err = FaultPlanParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut plan = FaultPlan::none();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if let Some(k) = item.strip_prefix("session-expiry=") {
                plan.session_expiry_after = Some(num(k, "request count")?);
                continue;
            }
            if let Some(p) = item.strip_prefix("dual-upload=") {
                plan.dual_upload_probability = num(p, "probability")?;
                continue;
            }
            let (ep, rest) = item
                .split_once(':')
                .ok_or_else(|| FaultPlanParseError(format!("`{item}`: expected ENDPOINT:FAULT")))?;
            let endpoint: Endpoint = ep.parse()?;
            let (fault, trigger) = if let Some((f, n)) = rest.split_once('@') {
                let trig = match n.split_once('-') {
                    Some((a, b)) => Trigger::Range(num(a, "index")?, num(b, "index")?),
                    None => Trigger::Nth(num(n, "index")?),
                };
                (f, trig)
            } else if let Some((f, p)) = rest.split_once('~') {
                (f, Trigger::Probability(num(p, "probability")?))
            } else {
                (rest, Trigger::Always)
            };
            plan = plan.rule(endpoint, trigger, parse_fault(fault)?);
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let p: FaultPlan =
            "live:429-date=3@2-4, audio:reset~0.5, whisper:503, login:slow-body=10, archive:malformed@1"
                .parse()
                .unwrap();
        assert_eq!(p.rules.len(), 5);
        assert_eq!(p.rules[0].trigger, Trigger::Range(2, 4));
        assert_eq!(
            p.rules[0].fault,
            Fault::too_many_requests_date(Duration::from_secs(3))
        );
        assert_eq!(p.rules[1].trigger, Trigger::Probability(0.5));
        assert_eq!(p.rules[2].fault, Fault::Unavailable(None));
        assert_eq!(p.rules[3].fault, Fault::SlowBody(Duration::from_millis(10)));
        assert!("live:teapot".parse::<FaultPlan>().is_err());
        assert!("nowhere:429".parse::<FaultPlan>().is_err());
        assert!("live".parse::<FaultPlan>().is_err());
    }
}
