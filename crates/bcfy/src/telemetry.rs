//! OpenTelemetry export of traces and metrics over OTLP/HTTP (feature `otel`).
//!
//! The libraries only emit `tracing` spans and events. [`Telemetry`] is what an application
//! installs to ship them: an OTLP span exporter behind a `tracing` layer (every span of every
//! bcfy crate, e.g. `bcfy.publish` with its `topic` and `call_id`, becomes an OpenTelemetry
//! span), and a meter provider on which [`Telemetry::instrument`] registers the client's
//! metrics under the spec's names (see [`METRICS`]). Exporters run on their own threads (the
//! SDK's batch span processor and periodic reader), so export never blocks the pipeline.
//! Nothing is installed globally: the application composes [`Telemetry::layer`] into its
//! subscriber.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! # fn run(client: &bcfy::Client) -> Result<(), bcfy::Error> {
//! let telemetry = bcfy::telemetry::Telemetry::otlp(&bcfy::telemetry::OtlpConfig::default())?;
//! tracing_subscriber::registry().with(telemetry.layer()).init();
//! telemetry.instrument(client);
//! // ... run ...
//! telemetry.shutdown()?; // flushes what is buffered
//! # Ok(()) }
//! ```

use std::sync::Weak;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;
use url::Url;

use crate::Client;
use crate::error::{Error, ErrorKind};
use crate::proto::RetryHint;

/// The metric names [`Telemetry::instrument`] registers (all observable, read from the
/// client's counters at each export).
pub const METRICS: &[&str] = &[
    "live_producer.dispatched",
    "live_producer.polls",
    "live_producer.retries",
    "live_producer.rate_limited",
    "live_producer.duplicates",
    "live_producer.poll_latency",
    "live_producer.queue_depth",
    "auth.logins",
    "auth.failures",
    "audio.downloaded",
    "audio.failed",
    "audio.retries",
    "audio.bytes",
    "transcription.completed",
    "transcription.failed",
    "transcription.retries",
    "consumer.lag",
];

/// Where and how to export.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base (default `http://localhost:4318`); traces go to
    /// `{endpoint}/v1/traces`, metrics to `{endpoint}/v1/metrics`.
    pub endpoint: Url,
    /// The `service.name` resource attribute (default `bcfy`).
    pub service_name: String,
    /// How often metrics are exported (default 60 s).
    pub metrics_interval: Duration,
    /// Timeout of one export request (default 10 s).
    pub timeout: Duration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: Url::parse("http://localhost:4318").unwrap_or_else(|_| unreachable!()),
            service_name: "bcfy".to_owned(),
            metrics_interval: Duration::from_mins(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The tracer and meter providers exporting over OTLP. Call [`shutdown`](Self::shutdown) at
/// the end to flush.
#[derive(Debug, Clone)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

fn otel_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, RetryHint::Never, format!("{what}: {e}"))
}

fn signal_url(base: &Url, signal: &str) -> String {
    format!("{}/v1/{signal}", base.as_str().trim_end_matches('/'))
}

impl Telemetry {
    /// Builds the OTLP/HTTP (protobuf) exporters and their providers.
    pub fn otlp(config: &OtlpConfig) -> Result<Self, Error> {
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(signal_url(&config.endpoint, "traces"))
            .with_timeout(config.timeout)
            .build()
            .map_err(|e| otel_error("OTLP span exporter", e))?;
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(signal_url(&config.endpoint, "metrics"))
            .with_timeout(config.timeout)
            .build()
            .map_err(|e| otel_error("OTLP metric exporter", e))?;
        let tracer_provider = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone())
            .build();
        let reader = PeriodicReader::builder(metrics)
            .with_interval(config.metrics_interval)
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        Ok(Self {
            tracer_provider,
            meter_provider,
        })
    }

    /// A `tracing` layer exporting spans (and `monotonic_counter.*`/`histogram.*` events as
    /// metrics) through these providers.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let tracer = self.tracer_provider.tracer("bcfy");
        tracing_opentelemetry::layer().with_tracer(tracer).and_then(
            tracing_opentelemetry::MetricsLayer::new(self.meter_provider.clone()),
        )
    }

    /// The meter `instrument` uses, for your own instruments.
    pub fn meter(&self) -> Meter {
        self.meter_provider.meter("bcfy")
    }

    /// Registers the client's metrics ([`METRICS`]) as observable instruments. They hold a
    /// weak reference: a dropped client reports nothing.
    pub fn instrument(&self, client: &Client) {
        let meter = self.meter();
        let weak = client.downgrade();
        counter(&meter, "live_producer.dispatched", "calls", &weak, |s| {
            s.producers.iter().map(|p| p.dispatched).sum()
        });
        counter(&meter, "live_producer.polls", "requests", &weak, |s| {
            s.producers.iter().map(|p| p.polls).sum()
        });
        counter(&meter, "live_producer.retries", "requests", &weak, |s| {
            s.producers.iter().map(|p| p.retries).sum()
        });
        counter(
            &meter,
            "live_producer.rate_limited",
            "requests",
            &weak,
            |s| s.producers.iter().map(|p| p.rate_limited).sum(),
        );
        counter(&meter, "live_producer.duplicates", "calls", &weak, |s| {
            s.producers.iter().map(|p| p.duplicates).sum()
        });
        counter(&meter, "auth.logins", "logins", &weak, |s| s.auth.logins);
        counter(&meter, "auth.failures", "logins", &weak, |s| {
            s.auth.login_failures
        });
        counter(&meter, "audio.downloaded", "calls", &weak, |s| {
            s.audio.map_or(0, |a| a.downloaded)
        });
        counter(&meter, "audio.failed", "calls", &weak, |s| {
            s.counts.audio_failed
        });
        counter(&meter, "audio.retries", "requests", &weak, |s| {
            s.audio.map_or(0, |a| a.retries)
        });
        counter(&meter, "audio.bytes", "By", &weak, |s| {
            s.audio.map_or(0, |a| a.bytes)
        });
        counter(&meter, "transcription.completed", "calls", &weak, |s| {
            s.counts.transcripts
        });
        counter(&meter, "transcription.failed", "calls", &weak, |s| {
            s.counts.transcription_failed
        });
        #[cfg(feature = "transcribe")]
        counter(&meter, "transcription.retries", "requests", &weak, |s| {
            s.transcription.map_or(0, |t| t.retries)
        });
        let w = weak.clone();
        let _queue_depth = meter
            .u64_observable_gauge("live_producer.queue_depth")
            .with_description("calls waiting between the producers and the dispatcher")
            .with_unit("calls")
            .with_callback(move |obs| {
                if let Some(client) = Client::upgrade(&w) {
                    obs.observe(client.backlog() as u64, &[]);
                }
            })
            .build();
        let w = weak.clone();
        let _latency = meter
            .f64_observable_gauge("live_producer.poll_latency")
            .with_description("round trip of each producer's last poll")
            .with_unit("s")
            .with_callback(move |obs| {
                if let Some(client) = Client::upgrade(&w) {
                    for (i, p) in client.stats().producers.iter().enumerate() {
                        if let Some(d) = p.last_poll_latency {
                            obs.observe(d.as_secs_f64(), &[KeyValue::new("producer", i as i64)]);
                        }
                    }
                }
            })
            .build();
        let _lag = meter
            .f64_observable_gauge("consumer.lag")
            .with_description("from a call's ingest (ts) to its audio on the bus, last call")
            .with_unit("s")
            .with_callback(move |obs| {
                if let Some(lag) = Client::upgrade(&weak).and_then(|c| c.stats().last_lag) {
                    obs.observe(lag.as_secs_f64(), &[]);
                }
            })
            .build();
    }

    /// Flushes and stops both providers. Blocks until the exporters are done (or their
    /// timeouts pass): from async code, call it in `spawn_blocking`.
    pub fn shutdown(&self) -> Result<(), Error> {
        let traces = self.tracer_provider.shutdown();
        let metrics = self.meter_provider.shutdown();
        traces.map_err(|e| otel_error("flushing traces", e))?;
        metrics.map_err(|e| otel_error("flushing metrics", e))
    }
}

fn counter(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    client: &Weak<crate::client::Inner>,
    read: fn(&crate::ClientStats) -> u64,
) {
    let client = client.clone();
    let _ = meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_callback(move |obs| {
            if let Some(c) = Client::upgrade(&client) {
                obs.observe(read(&c.stats()), &[]);
            }
        })
        .build();
}
