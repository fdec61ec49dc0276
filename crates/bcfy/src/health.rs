//! [`Health`]: what a liveness or readiness probe of a service built on bcfy reads.

/// Where the client is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunState {
    /// Built, not started.
    Idle,
    /// [`crate::Client::start`] was called; the pipeline runs.
    Running,
    /// [`crate::Client::shutdown`] was called.
    Stopped,
}

/// Running totals since the client was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Calls published on `calls.live`.
    pub live: u64,
    /// Audio payloads published on `calls.audio.raw`.
    pub audio: u64,
    /// Calls published on `calls.audio.failed`.
    pub audio_failed: u64,
    /// Transcripts published on `transcription.complete`.
    pub transcripts: u64,
    /// Calls published on `transcription.failed`.
    pub transcription_failed: u64,
    /// Live producers that gave up (retry budget spent, session impossible).
    pub producer_errors: u64,
}

/// A snapshot of [`crate::Client::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Lifecycle state.
    pub state: RunState,
    /// Liveness: no stage or producer died unexpectedly (an idle client is live; a stopped
    /// one is not).
    pub live: bool,
    /// Readiness: running, live, and the live-queue backlog is at most the threshold.
    pub ready: bool,
    /// Calls waiting in the live queue (between the producers and the dispatcher).
    pub backlog: usize,
    /// The backlog above which the client is not ready.
    pub backlog_threshold: usize,
    /// Totals.
    pub counts: Counts,
    /// The last producer or stage error, sanitized.
    pub last_error: Option<String>,
}
