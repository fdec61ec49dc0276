//! The poll loop.

use bcfy_proto::base_dir as site_base;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bcfy_auth::{AuthError, AuthErrorKind, AuthManager};
use bcfy_proto::{
    Call, LiveCallEnvelope, LiveCallsForm, LiveCallsResponse, LiveProducerConfig, RetryHint,
    SessionKey, SessionToken, Subscription, snippet,
};
use bcfy_transport::{Request, RequestClass, SharedTransport, TransportError, TransportErrorKind};
use http::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Mutex, Notify, mpsc};
use tracing::Instrument;
use url::Url;

use crate::backoff::{backoff_delay, jittered};
use crate::dedup::RecentIds;
use crate::error::{LiveError, LiveErrorKind};
use crate::stats::{Counters, ProducerStats};

/// The longest snippet of a failed answer kept in logs.
const SNIPPET_MAX: usize = 160;

/// Where the live-calls API lives below the site root.
const LIVE_CALLS_PATH: &str = "calls/apis/live-calls";

/// A clock returning wall-clock time; replaceable so a producer can follow a simulated clock.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Stops a [`LiveCallProducer`] from anywhere, also while its `run` is being awaited elsewhere.
///
/// Cheap to clone. `stop()` ends the active `run` at its next await point with `Ok(())` (an
/// in-flight request is abandoned; calls not yet on the queue are fetched again from the
/// cursor); called while no `run` is active, it makes the next `run` return at once. Each
/// stop is consumed by the `run` it ended, so the producer can `run` again afterwards and
/// resumes from its cursor with its memory of recent call ids.
#[derive(Debug, Clone, Default)]
pub struct ProducerHandle {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    stopped: AtomicBool,
    notify: Notify,
}

impl ProducerHandle {
    /// Asks the producer to stop.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// Consumes a stop request (the run it was meant for has ended).
    fn clear(&self) {
        self.inner.stopped.store(false, Ordering::Release);
    }

    /// Whether a stop is pending (requested and not yet consumed by the run it ended).
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Resolves once [`stop`](Self::stop) has been called.
    pub async fn stopped(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Register before checking the flag so a concurrent stop() is never missed.
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// Polls Broadcastify's live-calls API and puts every new call on a bounded queue, in order,
/// once.
///
/// One producer serves one [`Subscription`] (any number of talkgroups go in ONE request as
/// repeated `groups[]`). Each `run` is one live session: a fresh random `sessionKey`,
/// `doInit=1` on its first poll and `0` after. The cursor (epoch seconds, the calls' `ts` unit)
/// starts at `initial_position`, else at now − `history`, and survives between runs, so a
/// restarted `run` resumes where the last one stopped.
///
/// **Never losing a call.** `ts` has one-second resolution and a call can be ingested in the
/// same second as the last one a poll saw, after that poll. The producer therefore sends its
/// cursor as the newest `ts` it has dispatched (the site's page sends that + 1): every poll
/// overlaps the previous one by a second, and a bounded memory of recent call ids
/// (`dedup_capacity`) drops the repeats. Calls are dispatched in `ts` order and the cursor only
/// moves past a call once it is on the queue, so a stop or a full queue never skips one.
///
/// **Back-pressure.** Before each poll the producer reserves a slot of the queue: while the
/// queue is full it does not poll at all. A poll's calls are then put on the queue one by one
/// as room frees up.
///
/// **Failures.** A failed poll is retried after an exponential backoff (`initial_backoff`
/// doubling up to `max_backoff`, jittered by `jitter_ratio`, never sooner than the poll
/// interval); after `max_retry_attempts` consecutive failures `run` returns a
/// [`LiveErrorKind::RetriesExhausted`] error. A logged-out answer (401/403, a redirect to the
/// login page, or a logged-out `error` body) invalidates the token, logs in again through the
/// [`AuthManager`] and retries at once in a new session. A 429/503 with `Retry-After` is waited
/// out (the transport's gate holds every producer) and does not count against the budget.
/// Entries that fail validation are logged, counted and skipped; they never stop the cursor.
///
/// **Telemetry.** Each poll runs in a `live_poll` span. Tracing events named
/// `live_producer.dispatched` (per poll), `live_producer.queue_depth` (every
/// `metrics_interval`), `live_producer.retry`, `live_producer.rejected` and
/// `live_producer.relogin` carry the numbers; [`stats`](Self::stats) has the running totals.
///
/// ```no_run
/// # async fn demo(
/// #     transport: bcfy_transport::SharedTransport,
/// #     auth: std::sync::Arc<bcfy_auth::AuthManager>,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use bcfy_live::LiveCallProducer;
/// use bcfy_proto::{GroupId, LiveProducerConfig, Subscription};
///
/// let subscription = Subscription::talkgroups(["4290-512".parse::<GroupId>()?])?;
/// let site = url::Url::parse("https://www.broadcastify.com")?;
/// let producer = LiveCallProducer::new(transport, auth, site, subscription, LiveProducerConfig::default())?;
/// let (tx, mut rx) = tokio::sync::mpsc::channel(256);
/// let handle = producer.handle();
/// let task = tokio::spawn(async move { producer.run(tx).await });
/// while let Some(envelope) = rx.recv().await {
///     println!("{} on {:?}", envelope.call.call_id(), envelope.shard_key);
/// #   break;
/// }
/// handle.stop();
/// task.await??;
/// # Ok(()) }
/// ```
pub struct LiveCallProducer {
    transport: SharedTransport,
    site: Url,
    auth: Arc<AuthManager>,
    endpoint: Url,
    origin: String,
    referer: String,
    subscription: Subscription,
    config: LiveProducerConfig,
    clock: Clock,
    max_answer_bytes: u64,
    stop: ProducerHandle,
    counters: Arc<Counters>,
    state: Mutex<State>,
}

/// The default cap on one live-calls answer: about 70,000 calls (an answer carries every call
/// since the cursor, so it grows with the backlog of a client that fell behind).
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

impl std::fmt::Debug for LiveCallProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCallProducer")
            .field("endpoint", &self.endpoint.as_str())
            .field("subscription", &self.subscription)
            .field("cursor", &self.cursor())
            .field("stopped", &self.stop.is_stopped())
            .finish_non_exhaustive()
    }
}

/// What survives between polls and between runs.
#[derive(Debug)]
struct State {
    /// `None` until the first run computes it from `initial_position` or the clock.
    cursor: Option<f64>,
    /// Whether the cursor comes from the caller or from calls already dispatched (then a
    /// `doInit` answer is not capped: it is a resume, not a fresh start).
    resumed: bool,
    recent: RecentIds,
    rng: SmallRng,
}

/// One live session: the `sessionKey` and whether its first poll was sent.
struct Session {
    key: SessionKey,
    initialized: bool,
}

/// Why a poll did not produce an answer.
enum PollFailure {
    /// The session is gone: log in again and retry.
    LoggedOut { token: SessionToken, detail: String },
    /// 429/503 with Retry-After: wait that long, then retry (no budget consumed).
    RateLimited { wait: Duration, detail: String },
    /// The session cannot be had, and retrying will not help.
    AuthFatal(AuthError),
    /// The answer is over the cap: the backlog since the cursor cannot be read.
    TooLarge(TransportError),
    /// Anything else: back off and retry within the budget.
    Retryable(Box<dyn std::error::Error + Send + Sync + 'static>),
}

#[derive(Debug, thiserror::Error)]
#[error("live-calls answered HTTP {status}: {snippet}")]
struct StatusFailure {
    status: StatusCode,
    snippet: String,
}

impl LiveCallProducer {
    /// A producer for `subscription` on the site at `site` (e.g.
    /// `https://www.broadcastify.com`), sending through `transport` with the session of `auth`.
    ///
    /// Fails when `config` does not validate or `site` cannot be a base URL.
    pub fn new(
        transport: SharedTransport,
        auth: Arc<AuthManager>,
        site: Url,
        subscription: Subscription,
        config: LiveProducerConfig,
    ) -> Result<Self, bcfy_proto::ConfigError> {
        config.validate()?;
        let base = site_base(&site);
        let endpoint = base
            .join(LIVE_CALLS_PATH)
            .map_err(|e| bcfy_proto::ConfigError {
                key: "site",
                message: format!("cannot build the live-calls URL: {e}"),
            })?;
        let referer = match &subscription {
            Subscription::Talkgroups(groups) if groups.len() == 1 => {
                format!("{}calls/tg/{}/{}", base, groups[0].sid, groups[0].tg)
            }
            _ => format!("{base}calls/"),
        };
        let origin = site.origin().ascii_serialization();
        let recent = RecentIds::new(config.dedup_capacity);
        let counters = Arc::new(Counters::default());
        counters.set_cursor(config.initial_position.unwrap_or(f64::NAN));
        Ok(Self {
            transport,
            site,
            auth,
            endpoint,
            origin,
            referer,
            subscription,
            clock: Arc::new(SystemTime::now),
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            stop: ProducerHandle::default(),
            counters,
            state: Mutex::new(State {
                cursor: None,
                resumed: false,
                recent,
                rng: SmallRng::from_rng(&mut rand::rng()),
            }),
            config,
        })
    }

    /// Caps one live-calls answer (default [`DEFAULT_MAX_ANSWER_BYTES`]). An answer over the
    /// cap means the backlog since the cursor can no longer be read in one piece, and polling
    /// the same cursor again would fail forever: the producer then starts a new session at
    /// now − `history`, skipping the calls in between, and says so in an error event
    /// (`live_producer.backlog_overflow`) and in `ProducerStats::backlog_skipped`.
    #[must_use]
    pub fn with_max_answer_bytes(mut self, max: u64) -> Self {
        self.max_answer_bytes = max.max(1);
        self
    }

    /// Seeds the jitter RNG (poll interval, backoff and `sessionKey`s), for reproducible
    /// timings.
    #[must_use]
    pub fn with_rng_seed(self, seed: u64) -> Self {
        if let Ok(mut state) = self.state.try_lock() {
            state.rng = SmallRng::seed_from_u64(seed);
        }
        self
    }

    /// Replaces the wall clock used for the starting cursor (now − `history`) and envelopes'
    /// `received_at` (a deployment replaying a recorded feed, a simulator with its own clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A handle whose `stop()` ends `run`, usable while `run` is awaited elsewhere.
    pub fn handle(&self) -> ProducerHandle {
        self.stop.clone()
    }

    /// Stops the producer (same as `self.handle().stop()`).
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// The cursor the next poll starts from (epoch seconds, `ts` units); NaN before the first
    /// run when no `initial_position` was configured.
    pub fn cursor(&self) -> f64 {
        self.counters.cursor()
    }

    /// Running totals since the producer was created.
    pub fn stats(&self) -> ProducerStats {
        self.counters.snapshot()
    }

    /// The site this producer polls.
    pub fn site(&self) -> &Url {
        &self.site
    }

    /// The live-calls URL this producer posts to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Polls until [`stop`](Self::stop) is called, the queue's receiver is dropped, the retry
    /// budget runs out or the session cannot be had.
    ///
    /// Returns `Ok(())` after a stop. Only one `run` of a producer can be active at a time; a
    /// later `run` (after a stop or an error) resumes from the cursor in a new live session.
    pub async fn run(&self, queue: mpsc::Sender<LiveCallEnvelope>) -> Result<(), LiveError> {
        let result = self.run_session(queue).await;
        if result
            .as_ref()
            .is_err_and(|e| e.kind() == LiveErrorKind::AlreadyRunning)
        {
            return result;
        }
        if self.stop.is_stopped() {
            self.stop.clear();
        }
        result
    }

    async fn run_session(&self, queue: mpsc::Sender<LiveCallEnvelope>) -> Result<(), LiveError> {
        let Ok(mut state) = self.state.try_lock() else {
            return Err(LiveError::new(
                LiveErrorKind::AlreadyRunning,
                "run() is already active on this producer",
            ));
        };
        if state.cursor.is_none() {
            let (cursor, resumed) = if let Some(pos) = self.config.initial_position {
                (pos, true)
            } else {
                let now = (self.clock)()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
                    .floor();
                (now - self.config.history.as_secs_f64(), false)
            };
            state.cursor = Some(cursor);
            state.resumed = resumed;
            self.counters.set_cursor(cursor);
        }

        let work = self.run_loop(&queue, &mut state);
        tokio::pin!(work);
        let period = self.config.metrics_interval.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                result = &mut work => return result,
                _ = ticker.tick() => self.sample_queue_depth(&queue),
            }
        }
    }

    fn sample_queue_depth(&self, queue: &mpsc::Sender<LiveCallEnvelope>) {
        let depth = (queue.max_capacity() - queue.capacity()) as u64;
        self.counters
            .queue_depth
            .store(depth, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            name: "live_producer.queue_depth",
            queue_depth = depth,
            queue_capacity = queue.max_capacity() as u64,
            "live_producer.queue_depth"
        );
    }

    fn new_session(rng: &mut SmallRng) -> Session {
        Session {
            key: SessionKey::new(rng.random(), rng.random()),
            initialized: false,
        }
    }

    async fn run_loop(
        &self,
        queue: &mpsc::Sender<LiveCallEnvelope>,
        state: &mut State,
    ) -> Result<(), LiveError> {
        let mut session = Self::new_session(&mut state.rng);
        let mut failures: u32 = 0;
        // A logged-out answer right after a fresh login is not retried at once again.
        let mut just_relogged = false;
        loop {
            if self.stop.is_stopped() {
                return Ok(());
            }
            // Back-pressure: no poll while the queue has no room.
            let permit = tokio::select! {
                biased;
                () = self.stop.stopped() => return Ok(()),
                permit = queue.reserve() => permit.map_err(|_| queue_closed())?,
            };

            let outcome = tokio::select! {
                biased;
                () = self.stop.stopped() => return Ok(()),
                outcome = self.poll(state, &session) => outcome,
            };

            let wait = match outcome {
                Ok(answer) => {
                    failures = 0;
                    just_relogged = false;
                    let capped = !session.initialized && !state.resumed;
                    session.initialized = true;
                    let delivered = self.deliver(answer, capped, permit, queue, state).await?;
                    if !delivered {
                        return Ok(()); // stopped mid-batch
                    }
                    jittered(
                        self.config.poll_interval,
                        self.config.jitter_ratio,
                        &mut state.rng,
                    )
                    .max(self.min_spacing())
                }
                Err(failure) => {
                    drop(permit);
                    // A session whose first (doInit=1) poll failed never started: the retry
                    // opens a new one with a new sessionKey, so doInit=1 is only ever sent on
                    // a key's first poll (the contract's rule).
                    if !session.initialized {
                        session = Self::new_session(&mut state.rng);
                    }
                    match failure {
                        PollFailure::RateLimited { wait, detail } => {
                            Counters::add(&self.counters.rate_limited, 1);
                            tracing::warn!(
                                name: "live_producer.rate_limited",
                                wait_secs = wait.as_secs_f64(),
                                error = %detail,
                                "live poll rate limited; waiting"
                            );
                            // The gate decides when the next request may go; the poll
                            // cadence still applies to this session on top of it.
                            wait.max(self.config.poll_interval.min(self.config.max_backoff))
                                .max(self.min_spacing())
                        }
                        PollFailure::AuthFatal(e) => {
                            return Err(LiveError::new(
                                LiveErrorKind::Authentication,
                                format!("cannot obtain a session ({})", e.kind()),
                            )
                            .with_source(e));
                        }
                        PollFailure::LoggedOut { token, detail } if !just_relogged => {
                            failures += 1;
                            self.check_budget(failures, &detail)?;
                            Counters::add(&self.counters.relogins, 1);
                            tracing::warn!(
                                name: "live_producer.relogin",
                                detail = %detail,
                                "live session logged out; logging in again"
                            );
                            self.auth.invalidate(&token);
                            just_relogged = true;
                            // A new login is a new page load: new sessionKey, doInit again.
                            session = Self::new_session(&mut state.rng);
                            Duration::ZERO
                        }
                        PollFailure::LoggedOut { token, detail } => {
                            self.auth.invalidate(&token);
                            session = Self::new_session(&mut state.rng);
                            failures += 1;
                            self.check_budget(failures, &detail)?;
                            self.retry_wait(failures, &detail, state)
                        }
                        PollFailure::TooLarge(e) => {
                            // Polling the same cursor again would fail the same way forever:
                            // start over at now - history and say loudly what was skipped.
                            let now = (self.clock)()
                                .duration_since(UNIX_EPOCH)
                                .unwrap_or_default()
                                .as_secs_f64()
                                .floor();
                            let restart = now - self.config.history.as_secs_f64();
                            let from = state.cursor.unwrap_or(restart);
                            Counters::add(&self.counters.backlog_skipped, 1);
                            tracing::error!(
                                name: "live_producer.backlog_overflow",
                                from_pos = from,
                                to_pos = restart,
                                skipped_secs = (restart - from).max(0.0),
                                error = %e,
                                "live answer over the size cap: calls between the cursor and now - history are skipped"
                            );
                            if restart > from {
                                state.cursor = Some(restart);
                                self.counters.set_cursor(restart);
                            }
                            state.resumed = false;
                            session = Self::new_session(&mut state.rng);
                            failures += 1;
                            self.retry_wait(failures, &e.to_string(), state)
                        }
                        PollFailure::Retryable(e) => {
                            failures += 1;
                            let detail = e.to_string();
                            if let Err(err) = self.check_budget(failures, &detail) {
                                return Err(err.with_boxed_source(e));
                            }
                            self.retry_wait(failures, &detail, state)
                        }
                    }
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    biased;
                    () = self.stop.stopped() => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    fn check_budget(&self, failures: u32, detail: &str) -> Result<(), LiveError> {
        match self.config.max_retry_attempts {
            Some(max) if failures > max => {
                tracing::error!(
                    name: "live_producer.retries_exhausted",
                    attempts = failures,
                    error = %detail,
                    "live producer retry budget exhausted"
                );
                Err(LiveError::new(
                    LiveErrorKind::RetriesExhausted,
                    format!("last failure: {detail}"),
                )
                .with_attempts(failures))
            }
            _ => Ok(()),
        }
    }

    /// The spacing `rate_limit_per_minute` imposes on this producer's polls (the transport's
    /// shared budget limits all producers together on top of this).
    fn min_spacing(&self) -> Duration {
        match self.config.rate_limit_per_minute {
            Some(n) if n > 0 => Duration::from_mins(1) / n,
            _ => Duration::ZERO,
        }
    }

    fn retry_wait(&self, failures: u32, detail: &str, state: &mut State) -> Duration {
        let backoff = backoff_delay(
            failures,
            self.config.initial_backoff,
            self.config.max_backoff,
            self.config.jitter_ratio,
            &mut state.rng,
        );
        // Politeness floor: a retry never comes sooner than a regular poll would.
        let wait = backoff
            .max(self.config.poll_interval.min(self.config.max_backoff))
            .max(self.min_spacing());
        Counters::add(&self.counters.retries, 1);
        tracing::warn!(
            name: "live_producer.retry",
            attempt = failures,
            wait_secs = wait.as_secs_f64(),
            error = %detail,
            "live poll failed; backing off"
        );
        wait
    }

    /// Sends one live-calls request and parses the answer.
    async fn poll(
        &self,
        state: &mut State,
        session: &Session,
    ) -> Result<LiveCallsResponse, PollFailure> {
        let token = match self.auth.ensure_session().await {
            Ok(token) => token,
            Err(e) => {
                return Err(match e.kind() {
                    AuthErrorKind::InvalidCredentials
                    | AuthErrorKind::NoCredentials
                    | AuthErrorKind::LoggedOut => PollFailure::AuthFatal(e),
                    _ => match e.retry_hint() {
                        RetryHint::After(wait) => PollFailure::RateLimited {
                            wait,
                            detail: e.to_string(),
                        },
                        _ => PollFailure::Retryable(Box::new(e)),
                    },
                });
            }
        };
        let cursor = state.cursor.unwrap_or_default();
        let do_init = !session.initialized;
        let poll_no = self.counters.snapshot().polls + 1;
        let span = tracing::info_span!(
            "live_poll",
            poll = poll_no,
            pos = cursor,
            do_init,
            status = tracing::field::Empty,
            calls = tracing::field::Empty,
        );
        async {
            let body = LiveCallsForm {
                subscription: &self.subscription,
                pos: cursor,
                do_init,
                session_key: &session.key,
            }
            .encode();
            let request = Request::post_form(self.endpoint.clone(), body)
                .class(RequestClass::Api)
                .header("x-requested-with", "XMLHttpRequest")
                .header("origin", self.origin.as_str())
                .header("referer", self.referer.as_str());
            Counters::add(&self.counters.polls, 1);
            let started = tokio::time::Instant::now();
            let response = match self.transport.send(request).await {
                Ok(r) => r,
                Err(e) => return Err(transport_failure(e)),
            };
            let status = response.status();
            tracing::Span::current().record("status", status.as_u16());
            if bcfy_auth::is_logged_out(status, response.headers()) {
                return Err(PollFailure::LoggedOut {
                    token,
                    detail: format!("HTTP {status}"),
                });
            }
            let body = match response.bytes_limited(self.max_answer_bytes).await {
                Ok(b) => b,
                Err(e) => return Err(transport_failure(e)),
            };
            self.counters.set_latency(started.elapsed());
            if !status.is_success() {
                // An error status may still carry a logged-out `error` body.
                if let Err(e) = LiveCallsResponse::from_slice(&body)
                    && e.is_logged_out()
                {
                    return Err(PollFailure::LoggedOut {
                        token,
                        detail: e.to_string(),
                    });
                }
                return Err(PollFailure::Retryable(Box::new(StatusFailure {
                    status,
                    snippet: snippet(&body, SNIPPET_MAX),
                })));
            }
            // Calls already delivered (the cursor overlaps the last poll) are only counted.
            match LiveCallsResponse::from_slice_skipping(&body, |id| state.recent.contains(id)) {
                Ok(answer) => {
                    Counters::add(&self.counters.successful_polls, 1);
                    tracing::Span::current().record("calls", answer.calls.len());
                    Ok(answer)
                }
                Err(e) if e.is_logged_out() => Err(PollFailure::LoggedOut {
                    token,
                    detail: e.to_string(),
                }),
                Err(e) => Err(PollFailure::Retryable(Box::new(e))),
            }
        }
        .instrument(span)
        .await
    }

    /// Puts an answer's new calls on the queue in `ts` order and moves the cursor.
    ///
    /// Returns `Ok(false)` when a stop interrupted the delivery (the cursor then stands on the
    /// last call delivered, so the rest is fetched again).
    async fn deliver(
        &self,
        answer: LiveCallsResponse,
        capped: bool,
        permit: mpsc::Permit<'_, LiveCallEnvelope>,
        queue: &mpsc::Sender<LiveCallEnvelope>,
        state: &mut State,
    ) -> Result<bool, LiveError> {
        let LiveCallsResponse {
            calls,
            raw_calls,
            rejected,
            skipped,
            server_time,
            last_pos,
            ..
        } = answer;
        for r in &rejected {
            let raw = serde_json::to_vec(&r.raw).unwrap_or_default();
            tracing::warn!(
                name: "live_producer.rejected",
                index = r.index,
                error = %r.error,
                raw = %snippet(&raw, SNIPPET_MAX),
                "rejected a live call entry"
            );
        }
        Counters::add(&self.counters.rejected, rejected.len() as u64);

        let mut calls: Vec<_> = calls.into_iter().zip(raw_calls).collect();
        calls.sort_by_key(|(c, _)| c.ts);
        if capped && calls.len() > self.config.max_init_backlog {
            let skip = calls.len() - self.config.max_init_backlog;
            calls.drain(..skip);
            Counters::add(&self.counters.backlog_skipped, skip as u64);
            tracing::info!(skipped = skip, "doInit backlog capped at max_init_backlog");
        }

        let mut permit = Some(permit);
        let mut dispatched: u64 = 0;
        let mut duplicates = skipped as u64;
        let mut cursor = state.cursor.unwrap_or_default();
        let mut completed = true;
        for (call, raw) in calls {
            let id = call.call_id();
            if state.recent.contains(&id) {
                duplicates += 1;
                continue;
            }
            let slot = if let Some(p) = permit.take() {
                p
            } else {
                tokio::select! {
                    biased;
                    () = self.stop.stopped() => { completed = false; break; }
                    p = queue.reserve() => p.map_err(|_| queue_closed())?,
                }
            };
            // A `ts` past the server's own clock (a bad or hostile entry) must not carry the
            // cursor into the future, where every later call would be skipped.
            let ts = match server_time {
                Some(now) => call.ts.min(now),
                None => call.ts,
            };
            cursor = cursor.max(ts as f64);
            let envelope = self.envelope(call, raw, cursor);
            slot.send(envelope);
            state.recent.insert(id, ts, cursor as i64);
            dispatched += 1;
            // Move the cursor with each call, so a stop mid-batch keeps what was delivered.
            state.cursor = Some(cursor);
            state.resumed = true;
            self.counters.set_cursor(cursor);
        }
        if completed {
            // lastPos also covers rejected entries; never trust it past the server's clock.
            let last = match (last_pos, server_time) {
                (Some(p), Some(now)) => Some(p.min(now as f64)),
                (p, _) => p,
            };
            if let Some(p) = last.filter(|p| p.is_finite()) {
                cursor = cursor.max(p.floor());
            }
            state.cursor = Some(cursor);
            self.counters.set_cursor(cursor);
        }
        Counters::add(&self.counters.dispatched, dispatched);
        Counters::add(&self.counters.duplicates, duplicates);
        tracing::info!(
            name: "live_producer.dispatched",
            dispatched,
            duplicates,
            rejected = rejected.len() as u64,
            cursor,
            "live_producer.dispatched"
        );
        Ok(completed)
    }

    fn envelope(
        &self,
        call: Call,
        raw_payload: bcfy_proto::RawCall,
        cursor: f64,
    ) -> LiveCallEnvelope {
        let shard_key = call.shard_key();
        LiveCallEnvelope {
            call: Arc::new(call),
            cursor: Some(cursor),
            received_at: (self.clock)(),
            shard_key,
            raw_payload,
        }
    }
}

fn queue_closed() -> LiveError {
    LiveError::new(
        LiveErrorKind::QueueClosed,
        "the queue's receiver was dropped",
    )
}

fn transport_failure(e: TransportError) -> PollFailure {
    match (e.kind(), e.retry_hint()) {
        (TransportErrorKind::RateLimited, RetryHint::After(wait)) => PollFailure::RateLimited {
            wait,
            detail: e.to_string(),
        },
        (TransportErrorKind::TooLarge, _) => PollFailure::TooLarge(e),
        _ => PollFailure::Retryable(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_base_appends_slash() {
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            site_base(&u).join(LIVE_CALLS_PATH).unwrap().as_str(),
            "http://127.0.0.1:8080/calls/apis/live-calls"
        );
        let u = Url::parse("http://h/prefix").unwrap();
        assert_eq!(
            site_base(&u).join(LIVE_CALLS_PATH).unwrap().as_str(),
            "http://h/prefix/calls/apis/live-calls"
        );
    }
}
