//! Configuration defaults, file format and validation.
#![allow(clippy::duration_suboptimal_units)] // The spec states its defaults in seconds.

use std::time::Duration;

use bcfy_proto::config::{
    AudioConfig, CacheConfig, Endpoints, LiveProducerConfig, TranscriptionConfig, TransportConfig,
    WhisperProvider,
};
use bcfy_proto::{DEFAULT_USER_AGENT, ExposeSecret};

#[test]
fn defaults_are_the_spec_values() {
    let l = LiveProducerConfig::default();
    assert_eq!(l.poll_interval, Duration::from_secs(2));
    assert!((l.jitter_ratio - 0.1).abs() < f64::EPSILON);
    assert_eq!(l.queue_maxsize, 256);
    assert_eq!(l.initial_backoff, Duration::from_secs(1));
    assert_eq!(l.max_backoff, Duration::from_secs(30));
    assert_eq!(l.max_retry_attempts, None);
    assert_eq!(l.rate_limit_per_minute, None);
    assert_eq!(l.metrics_interval, Duration::from_secs(60));
    assert_eq!(l.initial_position, None);
    assert_eq!(l.history, Duration::from_secs(300));
    assert_eq!(l.max_init_backlog, 1000);
    assert_eq!(l.dedup_capacity, 4096);
    l.validate().unwrap();

    let t = TranscriptionConfig::default();
    assert!(!t.enabled);
    assert_eq!(t.provider, WhisperProvider::OpenAiCompatible);
    assert_eq!(t.model, "whisper-1");
    assert_eq!(t.endpoint_url, None);
    assert!(t.api_key.is_none());
    assert_eq!(t.language.as_deref(), Some("en"));
    assert_eq!(t.max_concurrency, 2);
    assert_eq!(t.queue_size, 64);
    t.validate().unwrap();

    let a = AudioConfig::default();
    assert_eq!(
        (
            a.max_concurrency,
            a.chunk_size,
            a.max_attempts,
            a.queue_size
        ),
        (4, 8192, 4, 64)
    );
    assert_eq!(
        (a.initial_backoff, a.max_backoff),
        (Duration::from_millis(500), Duration::from_secs(10))
    );
    assert_eq!(a.max_bytes, 32 * 1024 * 1024);
    a.validate().unwrap();

    let tr = TransportConfig::default();
    assert_eq!(tr.accept_language, "en-US,en;q=0.9");
    assert_eq!(tr.user_agent, DEFAULT_USER_AGENT);
    assert!(tr.user_agent.contains("Chrome/126.0.0.0"));
    assert_eq!(
        (
            tr.max_in_flight_api,
            tr.max_in_flight_audio,
            tr.pool_max_idle_per_host
        ),
        (4, 8, 16)
    );
    assert_eq!(tr.connect_timeout, Duration::from_secs(10));
    assert_eq!(tr.request_timeout, Duration::from_secs(30));
    assert_eq!(tr.pool_idle_timeout, Duration::from_secs(90));
    assert_eq!(tr.max_body_bytes, 8 * 1024 * 1024);
    tr.validate().unwrap();

    let e = Endpoints::default();
    assert_eq!(e.site.as_str(), "https://www.broadcastify.com/");
    assert_eq!(e.calls_cdn.as_str(), "https://calls.broadcastify.com/");
    assert_eq!(
        e.site_url("calls/apis/live-calls").as_str(),
        "https://www.broadcastify.com/calls/apis/live-calls"
    );
    let sim = Endpoints {
        site: "http://127.0.0.1:9/bcfy/".parse().unwrap(),
        ..Endpoints::default()
    };
    assert_eq!(
        sim.site_url("/login/").as_str(),
        "http://127.0.0.1:9/bcfy/login/"
    );
    e.validate().unwrap();
    CacheConfig::default().validate().unwrap();
}

#[test]
fn validation_rejects_nonsense_naming_the_key() {
    fn key_of<T>(
        mut c: T,
        f: impl FnOnce(&mut T),
        v: impl Fn(&T) -> Result<(), bcfy_proto::ConfigError>,
    ) -> &'static str {
        f(&mut c);
        v(&c).unwrap_err().key
    }
    let l = LiveProducerConfig::default;
    let lv = LiveProducerConfig::validate;
    assert_eq!(
        key_of(l(), |c| c.poll_interval = Duration::ZERO, lv),
        "poll_interval"
    );
    for bad in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY] {
        assert_eq!(key_of(l(), |c| c.jitter_ratio = bad, lv), "jitter_ratio");
    }
    assert!(
        key_of(
            l(),
            |c| c.jitter_ratio = 0.0,
            |c| c
                .validate()
                .and(Err(bcfy_proto::ConfigError::new("ok", "")))
        ) == "ok"
    );
    assert_eq!(key_of(l(), |c| c.queue_maxsize = 0, lv), "queue_maxsize");
    assert_eq!(
        key_of(l(), |c| c.initial_backoff = Duration::ZERO, lv),
        "initial_backoff"
    );
    assert_eq!(
        key_of(l(), |c| c.max_backoff = Duration::from_millis(500), lv),
        "max_backoff"
    );
    assert_eq!(
        key_of(l(), |c| c.rate_limit_per_minute = Some(0), lv),
        "rate_limit_per_minute"
    );
    assert_eq!(
        key_of(l(), |c| c.max_retry_attempts = Some(0), lv),
        "max_retry_attempts"
    );
    assert_eq!(
        key_of(l(), |c| c.metrics_interval = Duration::ZERO, lv),
        "metrics_interval"
    );
    assert_eq!(
        key_of(l(), |c| c.initial_position = Some(f64::NAN), lv),
        "initial_position"
    );
    assert_eq!(
        key_of(l(), |c| c.initial_position = Some(-1.0), lv),
        "initial_position"
    );
    assert_eq!(key_of(l(), |c| c.dedup_capacity = 0, lv), "dedup_capacity");

    let t = TranscriptionConfig::default;
    let tv = TranscriptionConfig::validate;
    assert_eq!(key_of(t(), |c| c.model = "  ".into(), tv), "model");
    assert_eq!(
        key_of(t(), |c| c.max_concurrency = 0, tv),
        "max_concurrency"
    );
    assert_eq!(key_of(t(), |c| c.queue_size = 0, tv), "queue_size");
    assert_eq!(
        key_of(t(), |c| c.language = Some(String::new()), tv),
        "language"
    );
    assert_eq!(
        key_of(
            t(),
            |c| c.endpoint_url = Some("ftp://x/v1".parse().unwrap()),
            tv
        ),
        "endpoint_url"
    );

    let a = AudioConfig::default;
    let av = AudioConfig::validate;
    assert_eq!(key_of(a(), |c| c.chunk_size = 0, av), "chunk_size");
    assert_eq!(
        key_of(a(), |c| c.max_concurrency = 0, av),
        "max_concurrency"
    );
    assert_eq!(key_of(a(), |c| c.max_attempts = 0, av), "max_attempts");
    assert_eq!(
        key_of(a(), |c| c.max_backoff = Duration::from_millis(100), av),
        "max_backoff"
    );
    assert_eq!(key_of(a(), |c| c.max_bytes = 0, av), "max_bytes");
    assert_eq!(key_of(a(), |c| c.queue_size = 0, av), "queue_size");

    let tr = TransportConfig::default;
    let trv = TransportConfig::validate;
    assert_eq!(
        key_of(tr(), |c| c.user_agent = "x\r\nInjected: 1".into(), trv),
        "user_agent"
    );
    assert_eq!(
        key_of(tr(), |c| c.accept_language = String::new(), trv),
        "accept_language"
    );
    assert_eq!(
        key_of(tr(), |c| c.max_in_flight_api = 0, trv),
        "max_in_flight_api"
    );
    assert_eq!(
        key_of(tr(), |c| c.max_in_flight_audio = 0, trv),
        "max_in_flight_audio"
    );
    assert_eq!(
        key_of(tr(), |c| c.request_timeout = Duration::ZERO, trv),
        "request_timeout"
    );
    assert_eq!(
        key_of(tr(), |c| c.max_body_bytes = 0, trv),
        "max_body_bytes"
    );

    let e = Endpoints::default;
    assert_eq!(
        key_of(
            e(),
            |c| c.calls_cdn = "file:///tmp".parse().unwrap(),
            Endpoints::validate
        ),
        "calls_cdn"
    );
    assert_eq!(
        key_of(
            e(),
            |c| c.site = "https://x/?a=1".parse().unwrap(),
            Endpoints::validate
        ),
        "site"
    );
    assert_eq!(
        key_of(
            CacheConfig::default(),
            |c| c.ttl = Duration::ZERO,
            CacheConfig::validate
        ),
        "ttl"
    );

    let err = LiveProducerConfig {
        jitter_ratio: 2.0,
        ..LiveProducerConfig::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration `jitter_ratio`: must be in [0, 1), got 2"
    );
}

#[test]
fn files_use_seconds_and_reject_unknown_keys() {
    let l: LiveProducerConfig = toml::from_str("poll_interval = 5.5\nmax_backoff = 60\n").unwrap();
    assert_eq!(l.poll_interval, Duration::from_millis(5500));
    assert_eq!(l.max_backoff, Duration::from_secs(60));
    assert_eq!(l.queue_maxsize, 256, "unset keys keep their defaults");

    let err = toml::from_str::<LiveProducerConfig>("poll_intervall = 5.0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("poll_intervall"), "{err}");
    let err = toml::from_str::<LiveProducerConfig>("poll_interval = -1.0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-negative"), "{err}");
    let err = toml::from_str::<TransportConfig>("user_agnet = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("user_agnet"), "{err}");
    assert!(toml::from_str::<AudioConfig>("chunk_sise = 1\n").is_err());
    assert!(toml::from_str::<CacheConfig>("tll = 1\n").is_err());
    assert!(toml::from_str::<Endpoints>("cdn = \"http://x\"\n").is_err());

    let t: TranscriptionConfig = toml::from_str(
        "enabled = true\nprovider = \"openai_compatible\"\nendpoint_url = \"http://127.0.0.1:8000/v1\"\napi_key = \"sk-test-123456789\"\n",
    )
    .unwrap();
    assert!(t.enabled);
    assert_eq!(
        t.api_key.as_ref().unwrap().expose_secret(),
        "sk-test-123456789"
    );
    assert_eq!(
        t.endpoint_url.as_ref().unwrap().as_str(),
        "http://127.0.0.1:8000/v1"
    );
    t.validate().unwrap();
    // Neither Debug nor serialization shows the key.
    assert!(!format!("{t:?}").contains("sk-test-123456789"));
    assert!(!format!("{t:#?}").contains("sk-test"));
    let written = toml::to_string(&t).unwrap();
    assert!(!written.contains("sk-test"), "{written}");
    let back: TranscriptionConfig = toml::from_str(&written).unwrap();
    assert_eq!(back.endpoint_url, t.endpoint_url);

    // Every struct round-trips through a file.
    let l2: LiveProducerConfig =
        toml::from_str(&toml::to_string(&LiveProducerConfig::default()).unwrap()).unwrap();
    assert_eq!(l2, LiveProducerConfig::default());
    let a2: AudioConfig =
        toml::from_str(&toml::to_string(&AudioConfig::default()).unwrap()).unwrap();
    assert_eq!(a2, AudioConfig::default());
    let tr2: TransportConfig =
        toml::from_str(&toml::to_string(&TransportConfig::default()).unwrap()).unwrap();
    assert_eq!(tr2, TransportConfig::default());
    let e2: Endpoints = toml::from_str(&toml::to_string(&Endpoints::default()).unwrap()).unwrap();
    assert_eq!(e2, Endpoints::default());
    let c2: CacheConfig =
        toml::from_str(&toml::to_string(&CacheConfig::default()).unwrap()).unwrap();
    assert_eq!(c2, CacheConfig::default());
}
