//! The [`Client`]: one transport, one session, one bus, and the pipeline wired between them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::archive::{ArchiveClient, ArchiveResult, Cache};
use crate::auth::{AuthManager, CredentialSource, Credentials};
use crate::bus::{EventBus, SubscribeOptions};
use crate::config::Config;
use crate::error::{Error, ErrorKind, shutdown_timeout};
use crate::event::{BcfyEvent, topics};
use crate::health::{Counts, Health, RunState};
use crate::live::LiveCallProducer;
use crate::proto::{
    AudioConfig, CacheConfig, Endpoints, GroupId, LiveProducerConfig, RetryHint, SessionToken,
    Subscription, TimeBlock, TimeWindow, TranscriptionConfig, TransportConfig,
};
use crate::transport::rustls::crypto::CryptoProvider;
use crate::transport::rustls::pki_types::CertificateDer;
use crate::transport::{HttpTransport, SharedTransport};

/// Builds a [`Client`]. Every setting has the spec's default; [`build`](Self::build) validates
/// them all and fails with the offending key.
#[must_use = "a builder does nothing until build() is called"]
#[derive(Debug, Default)]
pub struct ClientBuilder {
    config: Config,
    credentials: Option<Credentials>,
    token: Option<SessionToken>,
    transport: Option<SharedTransport>,
    cache: Option<Arc<dyn Cache>>,
    #[cfg(feature = "transcribe")]
    transcriber: Option<Arc<dyn crate::transcribe::Transcriber>>,
    bus_capacity: Option<usize>,
    roots: Vec<CertificateDer<'static>>,
    provider: Option<Arc<CryptoProvider>>,
}

impl ClientBuilder {
    /// Replaces every setting with `config` (e.g. from [`Config::load`]). Credentials in it are
    /// used unless [`credentials`](Self::credentials) or [`session_token`](Self::session_token)
    /// are also called.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Logs in with this Broadcastify account when a session is needed.
    pub fn credentials(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.credentials = Some(Credentials {
            username: username.into(),
            password,
        });
        self
    }

    /// Uses an existing `bcfyuser1` session token first (with credentials too, logs in again
    /// when it dies).
    pub fn session_token(mut self, token: SessionToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Base URLs of the site and the calls CDN.
    pub fn endpoints(mut self, endpoints: Endpoints) -> Self {
        self.config.endpoints = endpoints;
        self
    }

    /// The shared HTTP transport's settings.
    pub fn transport_config(mut self, config: TransportConfig) -> Self {
        self.config.transport = config;
        self
    }

    /// Settings of every live producer the client creates.
    pub fn live_config(mut self, config: LiveProducerConfig) -> Self {
        self.config.live = config;
        self
    }

    /// Settings of the audio stage.
    pub fn audio_config(mut self, config: AudioConfig) -> Self {
        self.config.audio = config;
        self
    }

    /// Settings of the transcription stage (`enabled = false` turns it off).
    pub fn transcription_config(mut self, config: TranscriptionConfig) -> Self {
        self.config.transcription = config;
        self
    }

    /// Settings of the archive cache.
    pub fn cache_config(mut self, config: CacheConfig) -> Self {
        self.config.cache = config;
        self
    }

    /// A cache of your own for archives (Redis, a shared filesystem...).
    pub fn cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// A transport of your own instead of the built-in `HttpTransport` (a mock in tests, a
    /// proxying transport). [`ClientBuilder::transport_config`] is then unused.
    pub fn transport(mut self, transport: SharedTransport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// A transcription provider of your own instead of the OpenAI-compatible one.
    #[cfg(feature = "transcribe")]
    pub fn transcriber(mut self, transcriber: Arc<dyn crate::transcribe::Transcriber>) -> Self {
        self.transcriber = Some(transcriber);
        self
    }

    /// Capacity of each subscriber queue of the bus (default: `live.queue_maxsize`). Every
    /// subscriber blocks the pipeline when full: back-pressure, never loss.
    pub fn bus_capacity(mut self, capacity: usize) -> Self {
        self.bus_capacity = Some(capacity);
        self
    }

    /// Trusts these root certificates (DER) too, for Broadcastify and the transcription
    /// service (a TLS-intercepting proxy, a local simulator with a generated certificate).
    pub fn root_certificates(
        mut self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.roots.extend(roots);
        self
    }

    /// The rustls crypto provider of every TLS connection (default: aws-lc-rs with the
    /// `aws-lc-rs` feature, else ring). Nothing installs a process-wide default.
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Validates every setting and builds the client (the transport, the session manager,
    /// the archive client and the bus; nothing runs until [`Client::start`]).
    pub fn build(self) -> Result<Client, Error> {
        let Self {
            mut config,
            credentials,
            token,
            transport,
            cache,
            #[cfg(feature = "transcribe")]
            transcriber,
            bus_capacity,
            roots,
            provider,
        } = self;
        if let Some(c) = &credentials {
            config.credentials.username = Some(c.username.clone());
            config.credentials.password = Some(c.password.clone());
        }
        if let Some(t) = &token {
            config.credentials.token = Some(SecretString::from(t.expose_secret().to_owned()));
        }
        config.validate()?;
        if bus_capacity == Some(0) {
            return Err(
                crate::config::ConfigLoadError::new("bus_capacity", "must be at least 1").into(),
            );
        }

        let source = credential_source(&config, token).ok_or_else(|| {
            crate::config::ConfigLoadError::new(
                "credentials",
                "give a username and password (credentials.username, credentials.password) or a \
                 session token (credentials.token): Broadcastify serves live calls and archives \
                 only to a session",
            )
        })?;
        let transport: SharedTransport = if let Some(t) = transport {
            t
        } else {
            let mut builder = HttpTransport::builder()
                .config(config.transport.clone())
                .root_certificates(roots.iter().cloned());
            if let Some(provider) = &provider {
                builder = builder.crypto_provider(provider.clone());
            }
            Arc::new(builder.build().map_err(Error::from)?)
        };
        let site = config.endpoints.site.clone();
        let auth = Arc::new(AuthManager::new(transport.clone(), site.clone(), source));
        let cache: Arc<dyn Cache> =
            cache.unwrap_or_else(|| crate::archive::cache_from_config(&config.cache));
        let archive = ArchiveClient::new(transport.clone(), auth.clone(), site, cache)
            .with_policy(crate::archive::CachePolicy::from_config(&config.cache));

        #[cfg(feature = "transcribe")]
        let transcriber = if config.transcription.enabled {
            if let Some(t) = transcriber {
                Some(t)
            } else {
                let mut builder =
                    crate::transcribe::OpenAiTranscriber::builder(&config.transcription);
                for root in &roots {
                    builder = builder.add_root_certificate(root.clone());
                }
                if let Some(provider) = &provider {
                    builder = builder.crypto_provider(provider.clone());
                }
                Some(Arc::new(builder.build().map_err(Error::from)?)
                    as Arc<dyn crate::transcribe::Transcriber>)
            }
        } else {
            None
        };

        let capacity = bus_capacity.unwrap_or(config.live.queue_maxsize);
        Ok(Client {
            inner: Arc::new(Inner {
                bus: EventBus::new(),
                bus_options: SubscribeOptions::default().capacity(capacity),
                transport,
                auth,
                archive,
                #[cfg(feature = "transcribe")]
                transcriber,
                counters: Arc::new(Counters::default()),
                state: Mutex::new(State::Idle {
                    producers: Vec::new(),
                }),
                stages: Mutex::new(StageRefs::default()),
                config,
            }),
        })
    }
}

fn credential_source(config: &Config, token: Option<SessionToken>) -> Option<CredentialSource> {
    use secrecy::ExposeSecret;
    let credentials = match (&config.credentials.username, &config.credentials.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => None,
    };
    let token = token.or_else(|| {
        config
            .credentials
            .token
            .as_ref()
            .map(|t| SessionToken::new(t.expose_secret()))
    });
    match (credentials, token) {
        (Some(credentials), Some(token)) => Some(CredentialSource::Both { credentials, token }),
        (Some(c), None) => Some(CredentialSource::Credentials(c)),
        (None, Some(t)) => Some(CredentialSource::Token(t)),
        (None, None) => None,
    }
}

/// An async, event-driven Broadcastify Calls client.
///
/// One `Client` owns one HTTP transport (pooled connections, the browser header template, the
/// rate budget and the Retry-After gate), one session, one archive client with its cache, and
/// one event bus. Live producers created on it share all of them. Cloning is cheap (`Arc`).
///
/// Lifecycle: [`build`](ClientBuilder::build) → optional
/// [`authenticate`](Self::authenticate) → [`create_live_producer`](Self::create_live_producer)
/// and [`subscribe`](Self::subscribe) / [`stream`](Self::stream) → [`start`](Self::start) →
/// [`shutdown`](Self::shutdown).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: Config,
    transport: SharedTransport,
    auth: Arc<AuthManager>,
    archive: ArchiveClient,
    bus: EventBus<BcfyEvent>,
    bus_options: SubscribeOptions,
    #[cfg(feature = "transcribe")]
    transcriber: Option<Arc<dyn crate::transcribe::Transcriber>>,
    counters: Arc<Counters>,
    state: Mutex<State>,
    /// Every stage ever created, kept after shutdown for [`Client::stats`].
    stages: Mutex<StageRefs>,
}

impl Drop for Inner {
    /// A client dropped without [`Client::shutdown`] stops its producers, so the stages drain
    /// and their tasks end instead of polling forever in the background.
    fn drop(&mut self) {
        if let State::Running(running) = &*lock(&self.state) {
            for producer in &running.producers {
                producer.stop();
            }
        }
    }
}

#[derive(Debug, Default)]
struct StageRefs {
    producers: Vec<Arc<LiveCallProducer>>,
    audio: Option<Arc<crate::audio::AudioConsumer>>,
    #[cfg(feature = "transcribe")]
    transcription: Option<Arc<crate::transcribe::TranscriptionPipeline>>,
}

/// Running totals of every stage, from [`Client::stats`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ClientStats {
    /// Bus publications per stage.
    pub counts: Counts,
    /// One entry per live producer, in creation order.
    pub producers: Vec<crate::live::ProducerStats>,
    /// Logins and failures.
    pub auth: crate::auth::AuthStats,
    /// The audio stage (after `start`).
    pub audio: Option<crate::audio::AudioStats>,
    /// The transcription stage (after `start`, when enabled).
    #[cfg(feature = "transcribe")]
    pub transcription: Option<crate::transcribe::PipelineStats>,
    /// Seconds from a call's ingest (`ts`) to its audio being published, for the last call.
    pub last_lag: Option<Duration>,
}

#[derive(Debug)]
enum State {
    Idle {
        producers: Vec<Arc<LiveCallProducer>>,
    },
    Running(Running),
    Stopped,
}

#[derive(Debug)]
struct Running {
    producers: Vec<Arc<LiveCallProducer>>,
    /// Kept to spawn producers created after `start`; dropped at shutdown so the chain drains.
    live_tx: mpsc::Sender<crate::proto::LiveCallEnvelope>,
    producer_tasks: Vec<JoinHandle<()>>,
    stage_tasks: Vec<JoinHandle<()>>,
}

/// Running totals of the pipeline, shared with its tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) live: AtomicU64,
    pub(crate) audio: AtomicU64,
    pub(crate) audio_failed: AtomicU64,
    pub(crate) transcripts: AtomicU64,
    pub(crate) transcription_failed: AtomicU64,
    pub(crate) producer_errors: AtomicU64,
    /// A stage task ended while the pipeline was meant to run.
    pub(crate) stage_died: AtomicBool,
    /// Shutdown has begun: stages ending now is expected.
    pub(crate) stopping: AtomicBool,
    pub(crate) last_error: Mutex<Option<String>>,
    /// One plus the milliseconds from ingest to audio publication of the last call (0 = none).
    pub(crate) last_lag_ms: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Counts {
        Counts {
            live: self.live.load(Ordering::Relaxed),
            audio: self.audio.load(Ordering::Relaxed),
            audio_failed: self.audio_failed.load(Ordering::Relaxed),
            transcripts: self.transcripts.load(Ordering::Relaxed),
            transcription_failed: self.transcription_failed.load(Ordering::Relaxed),
            producer_errors: self.producer_errors.load(Ordering::Relaxed),
        }
    }

    fn record_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message);
    }
}

/// What [`Client::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// How long the drain took.
    pub elapsed: Duration,
    /// Totals at the end.
    pub counts: Counts,
}

impl Client {
    /// A builder with the spec's defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A weak handle (for observers that must not keep the client alive).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The client behind a weak handle, if it still exists.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// A client from a loaded [`Config`] (credentials included).
    pub fn from_config(config: Config) -> Result<Self, Error> {
        Self::builder().config(config).build()
    }

    /// The configuration in effect (validated).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The shared transport (to send your own requests with the same pool and budget).
    pub fn transport(&self) -> &SharedTransport {
        &self.inner.transport
    }

    /// The session manager.
    pub fn auth(&self) -> &Arc<AuthManager> {
        &self.inner.auth
    }

    /// The event bus every stage publishes on.
    pub fn bus(&self) -> &EventBus<BcfyEvent> {
        &self.inner.bus
    }

    /// Whether calls are transcribed (the `transcribe` feature, and `transcription.enabled`).
    pub fn transcription_enabled(&self) -> bool {
        #[cfg(feature = "transcribe")]
        {
            self.inner.transcriber.is_some()
        }
        #[cfg(not(feature = "transcribe"))]
        {
            false
        }
    }

    /// Makes sure a session exists (logs in with the configured credentials if needed) and
    /// returns its token. Concurrent calls share one login.
    pub async fn authenticate(&self) -> Result<SessionToken, Error> {
        Ok(self.inner.auth.ensure_session().await?)
    }

    /// Logs out of Broadcastify and forgets the session.
    pub async fn logout(&self) -> Result<(), Error> {
        Ok(self.inner.auth.logout().await?)
    }

    /// Archived calls of `group` in the 30-minute `block` (cache first).
    pub async fn get_archived_calls(
        &self,
        group: GroupId,
        block: TimeBlock,
    ) -> Result<ArchiveResult, Error> {
        Ok(self.inner.archive.fetch(group, block).await?)
    }

    /// Archived calls of `group` in every block covering `window`, oldest first.
    pub async fn get_archived_range(
        &self,
        group: GroupId,
        window: TimeWindow,
    ) -> Result<Vec<ArchiveResult>, Error> {
        Ok(self.inner.archive.fetch_range(group, window).await?)
    }

    /// Creates a live producer for `subscription` (talkgroups polled together, a playlist, a
    /// system or a node) sharing this client's transport, session and rate budget. It runs
    /// from [`start`](Self::start), or at once when the client is already started.
    pub fn create_live_producer(
        &self,
        subscription: Subscription,
    ) -> Result<Arc<LiveCallProducer>, Error> {
        let producer = Arc::new(
            LiveCallProducer::new(
                self.inner.transport.clone(),
                self.inner.auth.clone(),
                self.inner.config.endpoints.site.clone(),
                subscription,
                self.inner.config.live.clone(),
            )
            .map_err(Error::from)?,
        );
        let mut state = self.lock_state();
        if !matches!(&*state, State::Stopped) {
            lock(&self.inner.stages).producers.push(producer.clone());
        }
        match &mut *state {
            State::Idle { producers } => producers.push(producer.clone()),
            State::Running(running) => {
                let task = spawn_producer(
                    producer.clone(),
                    running.live_tx.clone(),
                    self.inner.counters.clone(),
                );
                running.producers.push(producer.clone());
                running.producer_tasks.push(task);
            }
            State::Stopped => {
                return Err(Error::invalid_state("the client is shut down"));
            }
        }
        Ok(producer)
    }

    /// Calls `handler` for every event on topics matching `pattern` (`calls.live`,
    /// `calls.live.*.*`, `calls.>`...), in publish order, one at a time, on a task of the
    /// current runtime. A slow handler slows the pipeline (back-pressure) rather than losing
    /// events. The handler gets the concrete topic and the payload; it may return `()` or
    /// `Result<(), impl Display>` (errors are logged and counted, not fatal). Dropping the
    /// returned handle unsubscribes; call `.detach()` to keep it until shutdown.
    pub fn register_consumer<F, Fut>(
        &self,
        pattern: &str,
        handler: F,
    ) -> Result<crate::bus::Subscription<BcfyEvent>, Error>
    where
        F: Fn(crate::bus::Event<BcfyEvent>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future + Send + 'static,
        Fut::Output: crate::bus::HandlerResult,
    {
        self.inner
            .bus
            .subscribe_with(pattern, self.inner.bus_options.clone(), handler)
            .map_err(bus_error)
    }

    /// Same as [`register_consumer`](Self::register_consumer).
    pub fn subscribe<F, Fut>(
        &self,
        pattern: &str,
        handler: F,
    ) -> Result<crate::bus::Subscription<BcfyEvent>, Error>
    where
        F: Fn(crate::bus::Event<BcfyEvent>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future + Send + 'static,
        Fut::Output: crate::bus::HandlerResult,
    {
        self.register_consumer(pattern, handler)
    }

    /// A stream of every event (topic and payload) on topics matching `pattern`, in publish
    /// order, with the client's back-pressure (a stream not read stalls the pipeline once its
    /// queue is full). It ends after [`shutdown`](Self::shutdown) once drained: keep reading it
    /// while shutting down. Subscribe before [`start`](Self::start) to see every call.
    pub fn stream(
        &self,
        pattern: &str,
    ) -> Result<crate::bus::SubscriptionStream<BcfyEvent>, Error> {
        self.inner
            .bus
            .stream_with(pattern, self.inner.bus_options.clone())
            .map_err(bus_error)
    }

    /// Starts every producer and the stages behind them: producers → `calls.live` →
    /// audio → `calls.audio.raw` → transcription → `transcription.complete`.
    ///
    /// It first makes sure a session exists, so bad credentials fail here rather than in a
    /// background task. Fails if already started or shut down. Must be called within a Tokio
    /// runtime.
    pub async fn start(&self) -> Result<(), Error> {
        {
            let state = self.lock_state();
            if matches!(&*state, State::Running(_) | State::Stopped) {
                return Err(state_error(&state));
            }
        }
        self.inner.auth.ensure_session().await?;
        let mut state = self.lock_state();
        let producers = match &mut *state {
            State::Idle { producers } => std::mem::take(producers),
            State::Running(_) | State::Stopped => return Err(state_error(&state)),
        };
        self.inner.counters.stopping.store(false, Ordering::SeqCst);
        match spawn_pipeline(&self.inner, producers.clone()) {
            Ok(running) => {
                *state = State::Running(running);
                Ok(())
            }
            Err(e) => {
                *state = State::Idle { producers };
                Err(e)
            }
        }
    }

    /// Stops polling, lets every call already polled go through audio and transcription,
    /// drains the bus's subscribers, and returns within `timeout` (aborting what is left then,
    /// with a [`ErrorKind::ShutdownTimeout`] error). Idempotent.
    pub async fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, Error> {
        let started = Instant::now();
        let running = {
            let mut state = self.lock_state();
            match std::mem::replace(&mut *state, State::Stopped) {
                State::Running(running) => Some(running),
                State::Idle { .. } | State::Stopped => None,
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut timed_out = false;
        if let Some(running) = running {
            let Running {
                producers,
                live_tx,
                producer_tasks,
                stage_tasks,
            } = running;
            self.inner.counters.stopping.store(true, Ordering::SeqCst);
            for p in &producers {
                p.stop();
            }
            drop(live_tx);
            // Producers first (their queue sends complete as the stages drain), then each
            // stage in order: each one ends when its input channel closes.
            for task in producer_tasks.into_iter().chain(stage_tasks) {
                let abort = task.abort_handle();
                if tokio::time::timeout_at(deadline, task).await.is_err() {
                    abort.abort();
                    timed_out = true;
                }
            }
        }
        if tokio::time::timeout_at(deadline, self.inner.bus.shutdown())
            .await
            .is_err()
        {
            timed_out = true;
        }
        if timed_out {
            return Err(shutdown_timeout(timeout));
        }
        Ok(ShutdownReport {
            elapsed: started.elapsed(),
            counts: self.inner.counters.snapshot(),
        })
    }

    /// Totals of every stage: bus publications, each producer's polls, logins, downloads,
    /// transcriptions, and the last call's ingest-to-audio lag.
    pub fn stats(&self) -> ClientStats {
        let stages = lock(&self.inner.stages);
        let lag = self.inner.counters.last_lag_ms.load(Ordering::Relaxed);
        ClientStats {
            counts: self.inner.counters.snapshot(),
            producers: stages.producers.iter().map(|p| p.stats()).collect(),
            auth: self.inner.auth.stats(),
            audio: stages.audio.as_ref().map(|a| a.stats()),
            #[cfg(feature = "transcribe")]
            transcription: stages.transcription.as_ref().map(|t| t.stats()),
            last_lag: (lag > 0).then(|| Duration::from_millis(lag - 1)),
        }
    }

    /// Calls waiting in the live queue now (0 unless running).
    pub fn backlog(&self) -> usize {
        match &*self.lock_state() {
            State::Running(r) => r.live_tx.max_capacity() - r.live_tx.capacity(),
            _ => 0,
        }
    }

    /// Liveness, readiness (live-queue backlog against `health.backlog_threshold`) and counts.
    pub fn health(&self) -> Health {
        let state = self.lock_state();
        let threshold = self
            .inner
            .config
            .health
            .threshold_for(self.inner.config.live.queue_maxsize);
        let (run_state, backlog, producers_alive) = match &*state {
            State::Idle { .. } => (RunState::Idle, 0, true),
            State::Running(r) => (
                RunState::Running,
                r.live_tx.max_capacity() - r.live_tx.capacity(),
                r.producer_tasks.iter().all(|t| !t.is_finished()),
            ),
            State::Stopped => (RunState::Stopped, 0, false),
        };
        drop(state);
        let stage_died = self.inner.counters.stage_died.load(Ordering::Relaxed);
        let live = match run_state {
            RunState::Running => !stage_died && producers_alive,
            RunState::Idle => true,
            RunState::Stopped => false,
        };
        Health {
            state: run_state,
            live,
            ready: live && run_state == RunState::Running && backlog <= threshold,
            backlog,
            backlog_threshold: threshold,
            counts: self.inner.counters.snapshot(),
            last_error: self
                .inner
                .counters
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn state_error(state: &State) -> Error {
    match state {
        State::Running(_) => Error::invalid_state("the client is already started"),
        State::Stopped => Error::invalid_state("the client is shut down"),
        State::Idle { .. } => Error::invalid_state("the client is not started"),
    }
}

fn bus_error(e: crate::bus::BusError) -> Error {
    let kind = if matches!(e, crate::bus::BusError::Closed) {
        ErrorKind::InvalidState
    } else {
        ErrorKind::Config
    };
    Error::wrap(kind, RetryHint::Never, e)
}

/// Runs one producer until it stops; its error is counted and kept for `health()`.
fn spawn_producer(
    producer: Arc<LiveCallProducer>,
    live_tx: mpsc::Sender<crate::proto::LiveCallEnvelope>,
    counters: Arc<Counters>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = producer.run(live_tx).await {
            tracing::error!(error = %e, "live producer stopped");
            counters.producer_errors.fetch_add(1, Ordering::Relaxed);
            counters.record_error(format!("live producer: {e}"));
        }
    })
}

/// Spawns a stage; a stage that ends before shutdown began marks the client not live.
fn spawn_stage<F>(name: &'static str, counters: Arc<Counters>, stage: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    tokio::spawn(async move {
        let result = stage.await;
        if !counters.stopping.load(Ordering::SeqCst) {
            counters.stage_died.store(true, Ordering::SeqCst);
            let why = result.err().unwrap_or_else(|| "ended".into());
            tracing::error!(stage = name, error = %why, "pipeline stage ended before shutdown");
            counters.record_error(format!("{name}: {why}"));
        } else if let Err(e) = result {
            tracing::warn!(stage = name, error = %e, "pipeline stage ended with an error");
        }
    })
}

/// Wires producers → dispatcher → audio → transcription, every hop a bounded channel, every
/// stage publishing on the bus before handing the call on (so per-call topic order holds).
fn spawn_pipeline(
    inner: &Arc<Inner>,
    producers: Vec<Arc<LiveCallProducer>>,
) -> Result<Running, Error> {
    let config = &inner.config;
    let counters = &inner.counters;
    let (live_tx, mut live_rx) = mpsc::channel(config.live.queue_maxsize.max(1));
    let (audio_in_tx, audio_in_rx) = mpsc::channel(config.audio.queue_size.max(1));
    let (audio_out_tx, mut audio_out_rx) =
        mpsc::channel::<crate::audio::AudioOutcome>(config.audio.queue_size.max(1));
    let mut stage_tasks = Vec::new();

    // 1. Live dispatcher: `calls.live`, then the shard topic, then on to audio.
    {
        let bus = inner.bus.clone();
        let counters = counters.clone();
        stage_tasks.push(spawn_stage(
            "live dispatcher",
            counters.clone(),
            async move {
                while let Some(envelope) = live_rx.recv().await {
                    let envelope: crate::proto::LiveCallEnvelope = envelope;
                    let (sid, tg) = envelope.shard_key;
                    let event = BcfyEvent::Live(Arc::new(envelope.clone()));
                    counters.live.fetch_add(1, Ordering::Relaxed);
                    publish(&bus, topics::CALLS_LIVE, event.clone()).await;
                    publish(&bus, &topics::calls_live_shard(sid.get(), tg.get()), event).await;
                    if audio_in_tx.send(envelope).await.is_err() {
                        return Err("the audio stage is gone".into());
                    }
                }
                Ok(())
            },
        ));
    }

    // 2. Audio downloads, ordered and bounded.
    let consumer = Arc::new(
        crate::audio::AudioConsumer::new(
            inner.transport.clone(),
            config.endpoints.calls_cdn.clone(),
            config.audio.clone(),
        )
        .map_err(Error::from)?
        .with_site(&config.endpoints.site),
    );
    lock(&inner.stages).audio = Some(consumer.clone());
    stage_tasks.push(spawn_stage(
        "audio consumer",
        counters.clone(),
        async move {
            consumer
                .run(audio_in_rx, audio_out_tx)
                .await
                .map_err(|e| e.to_string())
        },
    ));

    // 3. Audio dispatcher: `calls.audio.raw` + per-call topic (or the failure topic), then
    //    on to transcription.
    #[cfg(feature = "transcribe")]
    let transcribe_tx = match &inner.transcriber {
        Some(transcriber) => {
            let (tx, rx) = mpsc::channel(config.transcription.queue_size.max(1));
            let (out_tx, out_rx) = mpsc::channel(config.transcription.queue_size.max(1));
            let pipeline = Arc::new(crate::transcribe::TranscriptionPipeline::new(
                transcriber.clone(),
                &config.transcription,
            ));
            lock(&inner.stages).transcription = Some(pipeline.clone());
            stage_tasks.push(spawn_stage("transcription", counters.clone(), async move {
                pipeline.run(rx, out_tx).await.map_err(|e| e.to_string())
            }));
            stage_tasks.push(spawn_transcript_dispatcher(
                inner.bus.clone(),
                counters.clone(),
                out_rx,
            ));
            Some(tx)
        }
        None => None,
    };
    {
        let bus = inner.bus.clone();
        let counters = counters.clone();
        stage_tasks.push(spawn_stage(
            "audio dispatcher",
            counters.clone(),
            async move {
                while let Some(outcome) = audio_out_rx.recv().await {
                    match outcome {
                        crate::audio::AudioOutcome::Ok(audio) => {
                            counters.audio.fetch_add(1, Ordering::Relaxed);
                            counters
                                .last_lag_ms
                                .store(lag_ms(audio.call.ts).saturating_add(1), Ordering::Relaxed);
                            let audio = Arc::new(audio);
                            let event = BcfyEvent::Audio(audio.clone());
                            publish(&bus, topics::CALLS_AUDIO_RAW, event.clone()).await;
                            publish(
                                &bus,
                                &topics::calls_audio_raw_call(audio.call_id.as_str()),
                                event,
                            )
                            .await;
                            #[cfg(feature = "transcribe")]
                            if let Some(tx) = &transcribe_tx
                                && tx.send((*audio).clone()).await.is_err()
                            {
                                return Err("the transcription stage is gone".into());
                            }
                        }
                        crate::audio::AudioOutcome::Failed(failed) => {
                            counters.audio_failed.fetch_add(1, Ordering::Relaxed);
                            let event = BcfyEvent::AudioFailed(Arc::new(failed));
                            publish(&bus, topics::CALLS_AUDIO_FAILED, event).await;
                        }
                    }
                }
                Ok(())
            },
        ));
    }

    let mut running = Running {
        producers: Vec::new(),
        live_tx,
        producer_tasks: Vec::new(),
        stage_tasks,
    };
    for producer in producers {
        running.producer_tasks.push(spawn_producer(
            producer.clone(),
            running.live_tx.clone(),
            counters.clone(),
        ));
        running.producers.push(producer);
    }
    Ok(running)
}

#[cfg(feature = "transcribe")]
fn spawn_transcript_dispatcher(
    bus: EventBus<BcfyEvent>,
    counters: Arc<Counters>,
    mut rx: mpsc::Receiver<crate::transcribe::TranscriptionOutcome>,
) -> JoinHandle<()> {
    spawn_stage("transcript dispatcher", counters.clone(), async move {
        while let Some(outcome) = rx.recv().await {
            match outcome {
                crate::transcribe::TranscriptionOutcome::Complete(result) => {
                    counters.transcripts.fetch_add(1, Ordering::Relaxed);
                    let event = BcfyEvent::Transcript(Arc::new(result));
                    publish(&bus, topics::TRANSCRIPTION_COMPLETE, event).await;
                }
                crate::transcribe::TranscriptionOutcome::Failed(failed) => {
                    counters
                        .transcription_failed
                        .fetch_add(1, Ordering::Relaxed);
                    let event = BcfyEvent::TranscriptFailed(Arc::new(failed));
                    publish(&bus, topics::TRANSCRIPTION_FAILED, event).await;
                }
            }
        }
        Ok(())
    })
}

/// Milliseconds from `ts` (epoch seconds) to now; 0 when the clock is behind.
fn lag_ms(ts: i64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let then = u128::try_from(ts).unwrap_or(0).saturating_mul(1000);
    u64::try_from(now.saturating_sub(then)).unwrap_or(u64::MAX)
}

/// Publishes inside a `bcfy.publish` span (topic and call id as the correlation id; its length
/// is the time spent waiting on subscribers, i.e. back-pressure), logging (not failing) when the
/// bus is already closed: the stage keeps draining so the stages behind it finish too.
async fn publish(bus: &EventBus<BcfyEvent>, topic: &str, event: BcfyEvent) {
    use tracing::Instrument as _;
    let span = tracing::info_span!("bcfy.publish", topic, call_id = %event.call_id());
    match bus.publish(topic, event).instrument(span).await {
        Ok(subscribers) => tracing::trace!(topic, subscribers, "published"),
        Err(e) => tracing::debug!(topic, error = %e, "event not published"),
    }
}
