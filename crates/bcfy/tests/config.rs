//! Configuration loading: file (TOML and YAML) + `BCFY_*` overrides, validation with the key
//! named, unknown keys rejected, secrets never echoed.

use std::time::Duration;

use bcfy::config::{Config, ConfigLoadError, FileFormat};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(
    file: Option<(FileFormat, &str)>,
    pairs: &[(&str, &str)],
) -> Result<Config, ConfigLoadError> {
    Config::from_sources(file, env(pairs))
}

#[test]
fn empty_sources_give_the_spec_defaults() {
    let config = load(None, &[]).unwrap();
    assert_eq!(config.live.poll_interval, Duration::from_secs(2));
    assert_eq!(config.live.queue_maxsize, 256);
    assert_eq!(config.audio.chunk_size, 8192);
    assert_eq!(config.transcription.model, "whisper-1");
    assert_eq!(
        config.endpoints.site.as_str(),
        "https://www.broadcastify.com/"
    );
}

#[test]
fn toml_file_then_env_overrides() {
    let file = r#"
[live]
poll_interval = 5.0
queue_maxsize = 100

[endpoints]
site = "http://127.0.0.1:8080"

[transcription]
enabled = true
model = "large-v3"
"#;
    let config = load(
        Some((FileFormat::Toml, file)),
        &[
            ("BCFY_LIVE__POLL_INTERVAL", "7"),
            ("BCFY_AUDIO__MAX_CONCURRENCY", "9"),
            ("BCFY_TRANSCRIPTION__API_KEY", "sk-test"),
            ("HOME", "/root"),
            ("BCFY_LOG", "debug"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.live.poll_interval,
        Duration::from_secs(7),
        "env wins over the file"
    );
    assert_eq!(
        config.live.queue_maxsize, 100,
        "the file wins over defaults"
    );
    assert_eq!(config.audio.max_concurrency, 9);
    assert_eq!(config.endpoints.site.as_str(), "http://127.0.0.1:8080/");
    assert!(config.transcription.enabled);
    assert_eq!(config.transcription.model, "large-v3");
    assert!(config.transcription.api_key.is_some());
}

#[test]
fn yaml_file_works_too() {
    let file = "live:\n  poll_interval: 4.5\n  max_retry_attempts: 3\ncache:\n  max_entries: 10\n";
    let config = load(Some((FileFormat::Yaml, file)), &[]).unwrap();
    assert_eq!(config.live.poll_interval, Duration::from_millis(4500));
    assert_eq!(config.live.max_retry_attempts, Some(3));
    assert_eq!(config.cache.max_entries, 10);
    // An empty YAML document is an empty configuration.
    load(Some((FileFormat::Yaml, "")), &[]).unwrap();
}

#[test]
fn env_null_unsets_an_option_and_numeric_strings_stay_strings() {
    let file = "[live]\nmax_retry_attempts = 5\n";
    let config = load(
        Some((FileFormat::Toml, file)),
        &[
            ("BCFY_LIVE__MAX_RETRY_ATTEMPTS", "null"),
            ("BCFY_USERNAME", "12345"),
            ("BCFY_PASSWORD", "67890"),
            ("BCFY_TRANSCRIPTION__MODEL", "1"),
        ],
    )
    .unwrap();
    assert_eq!(config.live.max_retry_attempts, None);
    assert_eq!(config.credentials.username.as_deref(), Some("12345"));
    assert!(config.credentials.password.is_some());
    assert_eq!(config.transcription.model, "1");
}

#[test]
fn invalid_value_from_env_names_key_and_variable() {
    let err = load(None, &[("BCFY_LIVE__POLL_INTERVAL", "0")]).unwrap_err();
    assert_eq!(err.key, "live.poll_interval");
    assert_eq!(err.origin.as_deref(), Some("BCFY_LIVE__POLL_INTERVAL"));
    let text = err.to_string();
    assert!(text.contains("live.poll_interval"), "{text}");
    assert!(text.contains("BCFY_LIVE__POLL_INTERVAL"), "{text}");
}

#[test]
fn invalid_value_from_file_names_key() {
    let err = load(
        Some((FileFormat::Toml, "[live]\njitter_ratio = 1.5\n")),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.key, "live.jitter_ratio");
    assert!(err.message.contains("[0, 1)"), "{}", err.message);

    let err = load(
        Some((FileFormat::Toml, "[audio]\nqueue_size = \"many\"\n")),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.key, "audio.queue_size");

    let err = load(
        Some((FileFormat::Toml, "[endpoints]\nsite = \"ftp://x\"\n")),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.key, "endpoints.site");
}

#[test]
fn wrong_type_from_env_names_key() {
    let err = load(None, &[("BCFY_LIVE__QUEUE_MAXSIZE", "lots")]).unwrap_err();
    assert_eq!(err.key, "live.queue_maxsize");
    assert_eq!(err.origin.as_deref(), Some("BCFY_LIVE__QUEUE_MAXSIZE"));
}

#[test]
fn unknown_keys_are_errors() {
    let err = load(
        Some((FileFormat::Toml, "[live]\npoll_intervall = 5\n")),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.key, "live.poll_intervall");
    assert!(err.message.contains("unknown"), "{}", err.message);

    let err = load(Some((FileFormat::Toml, "[nonsense]\nx = 1\n")), &[]).unwrap_err();
    assert_eq!(err.key, "nonsense");

    let err = load(None, &[("BCFY_AUDIO__CHUNKSIZE", "4")]).unwrap_err();
    assert_eq!(err.key, "audio.chunksize");
    assert_eq!(err.origin.as_deref(), Some("BCFY_AUDIO__CHUNKSIZE"));
}

#[test]
fn syntax_errors_give_a_line_and_no_secret() {
    let file = "[credentials]\nusername = \"me\"\npassword = \"hunter2\" oops\n";
    let err = load(Some((FileFormat::Toml, file)), &[]).unwrap_err();
    assert_eq!(err.key, "(file)");
    assert!(err.message.contains("line 3"), "{}", err.message);
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    // A secret in a key that fails to parse.
    let err = load(
        Some((FileFormat::Toml, "[live]\npoll_interval = \"hunter2\"\n")),
        &[],
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let config = load(
        None,
        &[
            ("BCFY_USERNAME", "me"),
            ("BCFY_PASSWORD", "hunter2"),
            ("BCFY_TOKEN", "tok-secret"),
            ("BCFY_TRANSCRIPTION__API_KEY", "sk-secret"),
        ],
    )
    .unwrap();
    let debug = format!("{config:?}");
    for secret in ["hunter2", "tok-secret", "sk-secret"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn credentials_are_checked() {
    let err = load(None, &[("BCFY_USERNAME", "me")]).unwrap_err();
    assert_eq!(err.key, "credentials.password");
    let err = load(None, &[("BCFY_USERNAME", " "), ("BCFY_PASSWORD", "x")]).unwrap_err();
    assert_eq!(err.key, "credentials.username");
}

#[test]
fn load_reads_a_file_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bcfy.yaml");
    std::fs::write(&path, "audio:\n  max_attempts: 2\n").unwrap();
    let config = Config::load(Some(&path)).unwrap();
    assert_eq!(config.audio.max_attempts, 2);

    let bad = dir.path().join("bcfy.ini");
    std::fs::write(&bad, "").unwrap();
    let err = Config::load(Some(&bad)).unwrap_err();
    assert!(err.message.contains("extension"), "{}", err.message);

    let wrong = dir.path().join("bad.toml");
    std::fs::write(&wrong, "[audio]\nmax_attempts = 0\n").unwrap();
    let err = Config::load(Some(&wrong)).unwrap_err();
    assert_eq!(err.key, "audio.max_attempts");
    assert_eq!(
        err.origin.as_deref(),
        Some(wrong.display().to_string().as_str())
    );
}

#[test]
fn builder_validates_too() {
    let mut config = Config::default();
    config.live.jitter_ratio = -1.0;
    let err = bcfy::Client::builder().config(config).build().unwrap_err();
    assert_eq!(err.kind(), bcfy::ErrorKind::Config);
    assert!(err.to_string().contains("live.jitter_ratio"), "{err}");
}
