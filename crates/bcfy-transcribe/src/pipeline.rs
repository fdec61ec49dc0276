//! The transcription stage: audio payloads in, one outcome per call out, in call order.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bcfy_proto::{
    AudioPayloadEvent, Call, CallId, RetryHint, TranscriptionConfig, TranscriptionFailedEvent,
    TranscriptionResult,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use crate::{TranscribeRequest, Transcriber, TranscriptionError, TranscriptionErrorKind};

/// Default cap on one call's concatenated audio (OpenAI accepts 25 MB; the audio stage caps a
/// download at 32 MiB).
pub const DEFAULT_MAX_CALL_BYTES: usize = 32 * 1024 * 1024;

/// How much a payload's `end_offset` may fall short of the call's duration and still count as
/// reaching it (durations and offsets are rounded by different parties).
const END_TOLERANCE_SECS: f64 = 0.5;

/// What the pipeline emits for each call, in the order the calls arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptionOutcome {
    /// The provider returned a transcript (publish on `transcription.complete`).
    Complete(TranscriptionResult),
    /// The provider failed for good (after retries where they made sense).
    Failed(TranscriptionFailedEvent),
}

impl TranscriptionOutcome {
    /// The call this outcome is about.
    pub fn call_id(&self) -> &CallId {
        match self {
            Self::Complete(result) => &result.call_id,
            Self::Failed(failed) => &failed.call_id,
        }
    }

    /// The call's metadata.
    pub fn call(&self) -> &Arc<Call> {
        match self {
            Self::Complete(result) => &result.call,
            Self::Failed(failed) => &failed.call,
        }
    }

    /// Whether this is a transcript.
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Complete(_))
    }
}

/// How the pipeline retries a failed attempt.
///
/// Only errors whose [`retry_hint`](TranscriptionError::retry_hint) allows it are retried
/// (network errors, 429, 5xx). The n-th retry waits `initial_backoff * 2^(n-1)`, capped at
/// `max_backoff`, times a random factor in `[1 - jitter_ratio, 1 + jitter_ratio]`; a server's
/// `Retry-After` replaces that wait, unless it is longer than `max_backoff`, in which case the
/// call fails at once (waiting that long would stall the calls behind it). Waiting uses tokio
/// time, so tests run it under paused time. The jitter comes from a [`SmallRng`] seeded per call
/// from `seed` (random when `None`), so a seeded run waits the same way every time.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Relative jitter in `[0, 1)`.
    pub jitter_ratio: f64,
    /// Seed of the jitter, for reproducible runs.
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    /// 4 attempts, 1 s doubling to at most 30 s, ±20 % jitter, random seed.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            jitter_ratio: 0.2,
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (1-based), without jitter.
    fn base_delay(&self, retry: u32) -> Duration {
        let factor = 2_u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    fn delay(&self, retry: u32, rng: &mut SmallRng) -> Duration {
        let base = self.base_delay(retry);
        let ratio = if self.jitter_ratio.is_finite() {
            self.jitter_ratio.clamp(0.0, 0.99)
        } else {
            0.0
        };
        let factor = 1.0 + rng.random_range(-ratio..=ratio);
        base.mul_f64(factor).min(self.max_backoff)
    }
}

/// Counters of a pipeline, readable while it runs ([`TranscriptionPipeline::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PipelineStats {
    /// Audio payloads taken from the input.
    pub payloads_received: u64,
    /// Calls whose audio was complete and handed to the provider.
    pub calls_started: u64,
    /// Outcomes sent: transcripts.
    pub completed: u64,
    /// Outcomes sent: failures.
    pub failed: u64,
    /// Attempts repeated after a retryable error.
    pub retries: u64,
    /// Provider requests running now.
    pub in_flight: u64,
    /// Most provider requests ever running at once (never above `max_concurrency`).
    pub max_in_flight: u64,
    /// Calls taken from the input and not yet sent on (running, waiting for a retry, or done
    /// and waiting for an earlier call).
    pub buffered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    payloads_received: AtomicU64,
    calls_started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    buffered: AtomicU64,
}

/// Decrements the in-flight gauge even when the attempt is cancelled.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> Self {
        let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why [`TranscriptionPipeline::run`] stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The output's receiver was dropped; calls in flight were abandoned.
    #[error("transcription output channel closed")]
    OutputClosed,
}

impl PipelineError {
    /// Retrying cannot help: the consumer is gone.
    pub fn retry_hint(&self) -> RetryHint {
        RetryHint::Never
    }
}

/// The transcription stage: takes [`AudioPayloadEvent`]s, uploads each call's audio once through
/// a [`Transcriber`], and sends one [`TranscriptionOutcome`] per call, in the order the calls
/// arrived.
///
/// **Assembling a call.** A call's payloads are contiguous in the input (the audio stage emits
/// calls in order) and are concatenated in `sequence` order (a repeated `sequence` is dropped).
/// A payload is the call's last when its `end_offset` reaches the call's duration (within
/// 0.5 s), or the call has no known positive duration; a call also ends when a payload of
/// another call arrives or the input closes. Today's audio stage sends each call as one payload
/// covering `[0, duration]`, which is therefore final on arrival. The upload is the audio as
/// `{call_id}.m4a`, `audio/mp4`.
///
/// **Bounds.** At most `max_concurrency` provider requests run at once. At most
/// `reorder_window` calls (default `2 × max_concurrency`) are held between input and output:
/// running, waiting to retry, or finished behind a slower earlier call (the ordered buffer).
/// When the window is full the pipeline stops reading its input, so a slow provider or a slow
/// consumer fills the input channel and its sender waits: memory stays bounded by
/// `reorder_window × max_call_bytes` plus the channels' capacities.
///
/// **Failures.** An error whose retry hint allows it (network, 429, 5xx) is retried per the
/// [`RetryPolicy`]; anything else, or the last attempt's error, becomes a
/// [`TranscriptionOutcome::Failed`], is logged at `error` and counted; no transcript is ever
/// invented. Empty audio and calls over `max_call_bytes` fail without an upload.
pub struct TranscriptionPipeline {
    transcriber: Arc<dyn Transcriber>,
    max_concurrency: usize,
    reorder_window: usize,
    max_call_bytes: usize,
    retry: RetryPolicy,
    requested_language: Option<String>,
    counters: Arc<Counters>,
}

impl fmt::Debug for TranscriptionPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranscriptionPipeline")
            .field("transcriber", &self.transcriber)
            .field("max_concurrency", &self.max_concurrency)
            .field("reorder_window", &self.reorder_window)
            .field("max_call_bytes", &self.max_call_bytes)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

type CallFuture = Pin<Box<dyn Future<Output = TranscriptionOutcome> + Send>>;

impl TranscriptionPipeline {
    /// A pipeline over `transcriber` with `config.max_concurrency` (at least 1) and the
    /// default [`RetryPolicy`]; `config.language` fills [`TranscriptionResult::language`] when
    /// the provider does not report one. Create the input channel with `config.queue_size`.
    pub fn new(transcriber: Arc<dyn Transcriber>, config: &TranscriptionConfig) -> Self {
        let max_concurrency = config.max_concurrency.max(1);
        Self {
            transcriber,
            max_concurrency,
            reorder_window: max_concurrency.saturating_mul(2),
            max_call_bytes: DEFAULT_MAX_CALL_BYTES,
            retry: RetryPolicy::default(),
            requested_language: config
                .language
                .clone()
                .filter(|language| !language.trim().is_empty()),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Replaces the retry policy.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many calls may be held between input and output (at least `max_concurrency`,
    /// and at least 2: the call whose payloads are still arriving holds a place, and the window
    /// must leave room to read the rest of it).
    #[must_use]
    pub fn with_reorder_window(mut self, window: usize) -> Self {
        self.reorder_window = window.max(self.max_concurrency).max(2);
        self
    }

    /// Sets the cap on one call's concatenated audio (default 32 MiB).
    #[must_use]
    pub fn with_max_call_bytes(mut self, max: usize) -> Self {
        self.max_call_bytes = max;
        self
    }

    /// The concurrency bound.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// The number of calls held between input and output at most.
    pub fn reorder_window(&self) -> usize {
        self.reorder_window
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PipelineStats {
        let c = &self.counters;
        PipelineStats {
            payloads_received: c.payloads_received.load(Ordering::SeqCst),
            calls_started: c.calls_started.load(Ordering::SeqCst),
            completed: c.completed.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
            retries: c.retries.load(Ordering::SeqCst),
            in_flight: c.in_flight.load(Ordering::SeqCst),
            max_in_flight: c.max_in_flight.load(Ordering::SeqCst),
            buffered: c.buffered.load(Ordering::SeqCst),
        }
    }

    /// Runs until `input` is closed and every call's outcome is sent (`Ok`), or until `output`'s
    /// receiver is dropped (`Err(OutputClosed)`, in-flight requests are cancelled). Dropping the
    /// future cancels in-flight requests too. Calling `run` again (or concurrently) on the same
    /// pipeline is allowed; the bounds apply per run, the counters are shared.
    pub async fn run(
        &self,
        mut input: mpsc::Receiver<AudioPayloadEvent>,
        output: mpsc::Sender<TranscriptionOutcome>,
    ) -> Result<(), PipelineError> {
        let mut run = Run {
            pipeline: self,
            semaphore: Arc::new(Semaphore::new(self.max_concurrency)),
            gate: ProviderGate::default(),
            seed: self.retry.seed.unwrap_or_else(rand::random),
            index: 0,
            running: FuturesOrdered::new(),
            ready: VecDeque::new(),
            open: None,
            input_open: true,
        };
        let result = loop {
            if run.is_finished() {
                break Ok(());
            }
            let can_read = run.input_open && run.held() < self.reorder_window;
            tokio::select! {
                // Sending first keeps the buffer short; running calls progress meanwhile.
                biased;
                permit = output.reserve(), if !run.ready.is_empty() => {
                    let Ok(permit) = permit else { break Err(PipelineError::OutputClosed) };
                    if let Some(outcome) = run.ready.pop_front() {
                        self.count_sent(&outcome);
                        permit.send(outcome);
                    }
                }
                Some(outcome) = run.running.next(), if !run.running.is_empty() => {
                    run.ready.push_back(outcome);
                }
                event = input.recv(), if can_read => run.accept(event),
            }
        };
        // Calls abandoned by an early stop leave the gauge.
        self.counters
            .buffered
            .fetch_sub(run.held() as u64, Ordering::SeqCst);
        result
    }

    fn count_sent(&self, outcome: &TranscriptionOutcome) {
        let counter = if outcome.is_complete() {
            &self.counters.completed
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.counters.buffered.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The state of one [`TranscriptionPipeline::run`].
struct Run<'p> {
    pipeline: &'p TranscriptionPipeline,
    semaphore: Arc<Semaphore>,
    gate: ProviderGate,
    seed: u64,
    /// Calls started so far (seeds each call's jitter).
    index: u64,
    /// Calls being transcribed, in input order (the ordered buffer).
    running: FuturesOrdered<CallFuture>,
    /// Outcomes in input order, waiting for room in the output.
    ready: VecDeque<TranscriptionOutcome>,
    /// The call whose payloads are still arriving.
    open: Option<OpenCall>,
    input_open: bool,
}

impl Run<'_> {
    /// Calls held between input and output.
    fn held(&self) -> usize {
        self.running.len() + self.ready.len() + usize::from(self.open.is_some())
    }

    fn is_finished(&self) -> bool {
        !self.input_open && self.held() == 0
    }

    /// Takes one input event (`None`: the input closed).
    fn accept(&mut self, event: Option<AudioPayloadEvent>) {
        let max_bytes = self.pipeline.max_call_bytes;
        let Some(event) = event else {
            self.input_open = false;
            if let Some(last) = self.open.take() {
                self.start(last);
            }
            return;
        };
        let counters = &self.pipeline.counters;
        counters.payloads_received.fetch_add(1, Ordering::SeqCst);
        // A payload of another call ends the open one: a call's payloads are contiguous.
        if let Some(previous) = self.open.take_if(|call| call.call_id != event.call_id) {
            self.start(previous);
        }
        if let Some(call) = &mut self.open {
            call.push(event, max_bytes);
        } else {
            counters.buffered.fetch_add(1, Ordering::SeqCst);
            self.open = Some(OpenCall::new(event, max_bytes));
        }
        if let Some(done) = self.open.take_if(|call| call.is_complete()) {
            self.start(done);
        }
    }

    /// Queues the future that transcribes one assembled call, with retries.
    fn start(&mut self, call: OpenCall) {
        let pipeline = self.pipeline;
        pipeline
            .counters
            .calls_started
            .fetch_add(1, Ordering::SeqCst);
        let rng =
            SmallRng::seed_from_u64(self.seed ^ self.index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.index += 1;
        let job = CallJob {
            transcriber: Arc::clone(&pipeline.transcriber),
            semaphore: Arc::clone(&self.semaphore),
            gate: self.gate.clone(),
            counters: Arc::clone(&pipeline.counters),
            retry: pipeline.retry.clone(),
            requested_language: pipeline.requested_language.clone(),
            rng,
        };
        let span = tracing::info_span!("transcription", call_id = %call.call_id);
        self.running
            .push_back(Box::pin(job.run(call).instrument(span)));
    }
}

/// A call whose payloads are being collected.
struct OpenCall {
    call_id: CallId,
    call: Arc<Call>,
    parts: Vec<(u32, Bytes)>,
    bytes: usize,
    end_offset: f64,
    too_large: bool,
}

impl OpenCall {
    fn new(event: AudioPayloadEvent, max_bytes: usize) -> Self {
        let mut call = Self {
            call_id: event.call_id.clone(),
            call: Arc::clone(&event.call),
            parts: Vec::with_capacity(1),
            bytes: 0,
            end_offset: f64::NEG_INFINITY,
            too_large: false,
        };
        call.push(event, max_bytes);
        call
    }

    fn push(&mut self, event: AudioPayloadEvent, max_bytes: usize) {
        if event.end_offset.is_finite() {
            self.end_offset = self.end_offset.max(event.end_offset);
        }
        if self
            .parts
            .iter()
            .any(|(sequence, _)| *sequence == event.sequence)
        {
            tracing::warn!(call_id = %self.call_id, sequence = event.sequence, "duplicate audio payload dropped");
            return;
        }
        if self.too_large {
            return;
        }
        self.bytes = self.bytes.saturating_add(event.payload.len());
        if self.bytes > max_bytes {
            // Keep the call open (its later payloads still belong to it) but free the audio.
            self.too_large = true;
            self.parts = Vec::new();
            return;
        }
        self.parts.push((event.sequence, event.payload));
    }

    fn is_complete(&self) -> bool {
        match self.call.duration_secs {
            Some(duration) if duration.is_finite() && duration > 0.0 => {
                self.end_offset + END_TOLERANCE_SECS >= duration
            }
            _ => true,
        }
    }

    /// The call's audio in `sequence` order; one payload is passed on without a copy.
    fn audio(mut self) -> Bytes {
        if self.parts.len() == 1 {
            return self.parts.pop().map(|(_, bytes)| bytes).unwrap_or_default();
        }
        self.parts.sort_by_key(|(sequence, _)| *sequence);
        let mut audio = BytesMut::with_capacity(self.bytes);
        for (_, part) in &self.parts {
            audio.extend_from_slice(part);
        }
        audio.freeze()
    }
}

/// Everything one call's transcription needs, detached from the pipeline's borrow.
/// The provider's Retry-After, shared by every call of one run: when the provider asks for a
/// pause, no upload of any call goes out before it has passed (not only the call that got it).
#[derive(Clone, Default)]
struct ProviderGate(Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl ProviderGate {
    fn until(&self) -> Option<tokio::time::Instant> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close_for(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
    }

    async fn wait(&self) {
        while let Some(until) = self.until() {
            if until <= tokio::time::Instant::now() {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }
}

struct CallJob {
    transcriber: Arc<dyn Transcriber>,
    semaphore: Arc<Semaphore>,
    gate: ProviderGate,
    counters: Arc<Counters>,
    retry: RetryPolicy,
    requested_language: Option<String>,
    rng: SmallRng,
}

impl CallJob {
    async fn run(mut self, call: OpenCall) -> TranscriptionOutcome {
        let call_id = call.call_id.clone();
        let meta = Arc::clone(&call.call);
        let (bytes, too_large) = (call.bytes, call.too_large);
        let failed = |error: &TranscriptionError, attempts: u32| {
            tracing::error!(
                call_id = %call_id,
                kind = error.kind().as_str(),
                status = error.status().map(|status| status.as_u16()),
                attempts,
                error = %error,
                "transcription failed"
            );
            TranscriptionOutcome::Failed(TranscriptionFailedEvent {
                call_id: call_id.clone(),
                call: Arc::clone(&meta),
                error: if attempts > 1 {
                    format!("{error} (after {attempts} attempts)")
                } else {
                    error.to_string()
                },
            })
        };
        if too_large {
            let error = TranscriptionError::new(
                TranscriptionErrorKind::TooLarge,
                format!("call audio exceeds {bytes} bytes, over the pipeline's cap"),
            );
            return failed(&error, 0);
        }
        let audio = call.audio();
        if audio.is_empty() {
            let error = TranscriptionError::new(
                TranscriptionErrorKind::EmptyAudio,
                "call has no audio bytes",
            );
            return failed(&error, 0);
        }
        let request = TranscribeRequest::m4a(call_id.clone(), audio);
        let mut attempt: u32 = 1;
        loop {
            let result = {
                // The permit is held for the request only, not across backoff waits.
                self.gate.wait().await;
                let Ok(_permit) = self.semaphore.acquire().await else {
                    let error =
                        TranscriptionError::new(TranscriptionErrorKind::Config, "pipeline stopped");
                    return failed(&error, attempt - 1);
                };
                // A pause may have begun while this call waited for its permit.
                self.gate.wait().await;
                let _in_flight = InFlight::enter(&self.counters);
                self.transcriber.transcribe(request.clone()).await
            };
            let error = match result {
                Ok(transcript) => {
                    tracing::info!(
                        call_id = %call_id,
                        attempts = attempt,
                        chars = transcript.text.len(),
                        "transcription complete"
                    );
                    let language = transcript
                        .language
                        .or_else(|| self.requested_language.clone())
                        .unwrap_or_default();
                    return TranscriptionOutcome::Complete(TranscriptionResult {
                        call_id: call_id.clone(),
                        call: Arc::clone(&meta),
                        text: transcript.text,
                        language,
                        average_logprob: transcript.average_logprob,
                        segments: transcript.segments,
                    });
                }
                Err(error) => error,
            };
            let wait = match error.retry_hint() {
                RetryHint::Never => None,
                RetryHint::Backoff => Some(self.retry.delay(attempt, &mut self.rng)),
                RetryHint::After(delay) => {
                    self.gate.close_for(delay);
                    (delay <= self.retry.max_backoff).then_some(delay)
                }
            };
            let Some(wait) = wait.filter(|_| attempt < self.retry.max_attempts) else {
                return failed(&error, attempt);
            };
            tracing::warn!(
                call_id = %call_id,
                kind = error.kind().as_str(),
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "transcription attempt failed, retrying"
            );
            self.counters.retries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_ratio() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            jitter_ratio: 0.2,
            seed: Some(1),
        };
        assert_eq!(policy.base_delay(1), Duration::from_millis(100));
        assert_eq!(policy.base_delay(3), Duration::from_millis(400));
        assert_eq!(policy.base_delay(9), Duration::from_secs(1));
        let mut rng = SmallRng::seed_from_u64(7);
        for retry in 1..8 {
            let base = policy.base_delay(retry);
            let delay = policy.delay(retry, &mut rng);
            assert!(
                delay >= base.mul_f64(0.8) && delay <= base.mul_f64(1.2).min(policy.max_backoff)
            );
        }
        let (mut a, mut b) = (SmallRng::seed_from_u64(3), SmallRng::seed_from_u64(3));
        assert_eq!(policy.delay(2, &mut a), policy.delay(2, &mut b));
    }
}
