//! Configuration files and `BCFY_*` environment overrides.
//!
//! A [`Config`] is the whole client configuration in one serde tree: one section per stage,
//! each section being the `bcfy-proto` config type with the spec's defaults. It loads from a
//! TOML or YAML file, then environment variables override single keys, then every section is
//! validated. Errors name the key (`live.poll_interval`), where the value came from (the file
//! or the variable) and what is wrong. Unknown keys are errors, so a typo never silently
//! falls back to a default.
//!
//! # Environment variables
//!
//! `BCFY_{SECTION}__{KEY}` sets `section.key`: the prefix `BCFY_`, then the path with `__`
//! between segments, case-insensitive (`BCFY_LIVE__POLL_INTERVAL=5` sets `live.poll_interval`,
//! `BCFY_TRANSCRIPTION__API_KEY=sk-...` sets `transcription.api_key`). Values are read as JSON
//! scalars when they parse as one (`5`, `0.25`, `true`, `null` for "unset") and as strings
//! otherwise; a value that parses as a number where the key wants a string stays a string.
//! `BCFY_USERNAME`, `BCFY_PASSWORD` and `BCFY_TOKEN` are short aliases of
//! `credentials.username`, `credentials.password` and `credentials.token`. Other `BCFY_*`
//! variables without `__` are not configuration and are ignored.
//!
//! # Example
//!
//! ```
//! use bcfy::config::{Config, FileFormat};
//!
//! let file = r#"
//! [live]
//! poll_interval = 5.0
//! "#;
//! let env = [("BCFY_LIVE__QUEUE_MAXSIZE".to_owned(), "512".to_owned())];
//! let config = Config::from_sources(Some((FileFormat::Toml, file)), env)?;
//! assert_eq!(config.live.queue_maxsize, 512);
//! # Ok::<(), bcfy::config::ConfigLoadError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::proto::{
    AudioConfig, CacheConfig, Endpoints, LiveProducerConfig, TranscriptionConfig, TransportConfig,
};

/// The prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "BCFY_";

/// The whole client configuration: what a file holds, what [`crate::ClientBuilder::config`]
/// takes.
///
/// Every section defaults to the spec's defaults, so an empty file is a valid configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Broadcastify account or an existing session token (both optional: archives and live
    /// calls need a session, the simulator accepts any).
    pub credentials: CredentialsConfig,
    /// Base URLs: the site (login, live calls, archives) and the calls CDN (audio).
    pub endpoints: Endpoints,
    /// The shared HTTP transport.
    pub transport: TransportConfig,
    /// Every live producer of the client.
    pub live: LiveProducerConfig,
    /// The audio download stage.
    pub audio: AudioConfig,
    /// The transcription stage (used only with the `transcribe` feature).
    pub transcription: TranscriptionConfig,
    /// The archive cache.
    pub cache: CacheConfig,
    /// Health reporting.
    pub health: HealthConfig,
}

/// The `[credentials]` section. `Debug` never shows the password or the token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CredentialsConfig {
    /// Broadcastify username.
    pub username: Option<String>,
    /// Broadcastify password (required with `username`).
    pub password: Option<SecretString>,
    /// An existing `bcfyuser1` session token, used before any login.
    pub token: Option<SecretString>,
}

/// The `[health]` section: thresholds of [`crate::Client::health`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthConfig {
    /// The client is not ready while more than this many calls wait in the live queue.
    /// `None` means three quarters of `live.queue_maxsize`.
    pub backlog_threshold: Option<usize>,
}

impl HealthConfig {
    /// The backlog threshold in effect for a live queue of `queue_maxsize` slots.
    pub fn threshold_for(&self, queue_maxsize: usize) -> usize {
        self.backlog_threshold
            .unwrap_or_else(|| (queue_maxsize.saturating_mul(3) / 4).max(1))
    }
}

/// The syntax of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
}

impl FileFormat {
    /// The format a path's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            _ => None,
        }
    }
}

/// A configuration that could not be loaded: which key, where it came from, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`{}: {message}", origin_suffix(.origin.as_deref()))]
pub struct ConfigLoadError {
    /// The dotted key (`live.poll_interval`), or `(file)` for a syntax error.
    pub key: String,
    /// The file or environment variable the value came from, when known.
    pub origin: Option<String>,
    /// What is wrong, never containing a secret value.
    pub message: String,
}

fn origin_suffix(origin: Option<&str>) -> String {
    origin.map(|o| format!(" (from {o})")).unwrap_or_default()
}

impl ConfigLoadError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            origin: None,
            message: message.into(),
        }
    }
}

impl Config {
    /// Loads `path` (TOML or YAML, by extension) and applies the process's `BCFY_*`
    /// environment variables. `None` reads the environment alone.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigLoadError> {
        let file = match path {
            None => None,
            Some(path) => {
                let format = FileFormat::from_path(path).ok_or_else(|| {
                    ConfigLoadError::new(
                        "(file)",
                        format!(
                            "{}: unknown extension, expected .toml, .yaml or .yml",
                            path.display()
                        ),
                    )
                })?;
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigLoadError::new("(file)", format!("{}: {e}", path.display()))
                })?;
                Some((format, text))
            }
        };
        let origin = path.map(|p| p.display().to_string());
        Self::from_sources_with_origin(
            file.as_ref().map(|(f, t)| (*f, t.as_str())),
            origin.as_deref(),
            std::env::vars(),
        )
    }

    /// Builds a configuration from file text (if any) and environment pairs (only the
    /// `BCFY_*` ones are read), then validates it. Tests pass their own pairs here rather
    /// than mutating the process environment.
    pub fn from_sources(
        file: Option<(FileFormat, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigLoadError> {
        Self::from_sources_with_origin(file, None, env)
    }

    fn from_sources_with_origin(
        file: Option<(FileFormat, &str)>,
        file_origin: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigLoadError> {
        let file_origin = file_origin.unwrap_or("the configuration file").to_owned();
        let mut tree = match file {
            None => Value::Object(Map::new()),
            Some((format, text)) => {
                parse_file(format, text).map_err(|message| ConfigLoadError {
                    key: "(file)".into(),
                    origin: Some(file_origin.clone()),
                    message,
                })?
            }
        };
        if tree.is_null() {
            // An empty YAML document.
            tree = Value::Object(Map::new());
        }
        if !tree.is_object() {
            return Err(ConfigLoadError {
                key: "(file)".into(),
                origin: Some(file_origin),
                message: "the top level must be a table of sections".into(),
            });
        }

        // key -> (variable name, raw value), sorted so errors are deterministic.
        let mut overrides: BTreeMap<Vec<String>, (String, String)> = BTreeMap::new();
        for (name, value) in env {
            if let Some(path) = env_path(&name) {
                overrides.insert(path, (name, value));
            }
        }
        let mut as_string: Vec<Vec<String>> = Vec::new();
        for (path, (name, raw)) in &overrides {
            set_path(&mut tree, path, scalar(raw)).map_err(|message| ConfigLoadError {
                key: path.join("."),
                origin: Some(name.clone()),
                message,
            })?;
        }

        // A numeric-looking value for a string key (a password "1234") is retried as a
        // string; each override is retried at most once, so this loop is bounded.
        let config = loop {
            match deserialize(&tree) {
                Ok(config) => break config,
                Err((key, message)) => {
                    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                    if let Some((name, raw)) = overrides.get(&path) {
                        if !as_string.contains(&path) && !scalar(raw).is_string() {
                            as_string.push(path.clone());
                            set_path(&mut tree, &path, Value::String(raw.clone()))
                                .map_err(|m| ConfigLoadError::new(key.clone(), m))?;
                            continue;
                        }
                        return Err(ConfigLoadError {
                            key,
                            origin: Some(name.clone()),
                            message,
                        });
                    }
                    return Err(ConfigLoadError {
                        key,
                        origin: file.map(|_| file_origin.clone()),
                        message,
                    });
                }
            }
        };
        config.validate().map_err(|mut e| {
            let path: Vec<String> = e.key.split('.').map(str::to_owned).collect();
            e.origin = match overrides.get(&path) {
                Some((name, _)) => Some(name.clone()),
                None if file.is_some() => Some(file_origin.clone()),
                None => None,
            };
            e
        })?;
        Ok(config)
    }

    /// Checks every section (the proto types' own `validate()`, prefixed with the section
    /// name) and the credentials.
    pub fn validate(&self) -> Result<(), ConfigLoadError> {
        fn section(
            name: &str,
            result: Result<(), crate::proto::ConfigError>,
        ) -> Result<(), ConfigLoadError> {
            result.map_err(|e| ConfigLoadError::new(format!("{name}.{}", e.key), e.message))
        }
        section("endpoints", self.endpoints.validate())?;
        section("transport", self.transport.validate())?;
        section("live", self.live.validate())?;
        section("audio", self.audio.validate())?;
        section("transcription", self.transcription.validate())?;
        section("cache", self.cache.validate())?;
        self.credentials.validate()?;
        if self.health.backlog_threshold == Some(0) {
            return Err(ConfigLoadError::new(
                "health.backlog_threshold",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl CredentialsConfig {
    /// A username needs a non-empty password; an empty username is an error.
    pub fn validate(&self) -> Result<(), ConfigLoadError> {
        use secrecy::ExposeSecret;
        match (&self.username, &self.password) {
            (Some(u), _) if u.trim().is_empty() => Err(ConfigLoadError::new(
                "credentials.username",
                "must not be empty",
            )),
            (Some(_), None) => Err(ConfigLoadError::new(
                "credentials.password",
                "is required when credentials.username is set",
            )),
            (Some(_), Some(p)) if p.expose_secret().is_empty() => Err(ConfigLoadError::new(
                "credentials.password",
                "must not be empty",
            )),
            (None, Some(_)) => Err(ConfigLoadError::new(
                "credentials.username",
                "is required when credentials.password is set",
            )),
            _ => match &self.token {
                Some(t) if t.expose_secret().trim().is_empty() => Err(ConfigLoadError::new(
                    "credentials.token",
                    "must not be empty",
                )),
                _ => Ok(()),
            },
        }
    }
}

fn parse_file(format: FileFormat, text: &str) -> Result<Value, String> {
    match format {
        FileFormat::Toml => toml::from_str::<Value>(text).map_err(|e| {
            // toml's Display quotes the offending line, which may hold a secret: keep the
            // message and position only.
            let message = e.message().trim().to_owned();
            match e.span() {
                Some(span) => format!(
                    "invalid TOML at line {}: {message}",
                    line_of(text, span.start)
                ),
                None => format!("invalid TOML: {message}"),
            }
        }),
        FileFormat::Yaml => serde_norway::from_str::<Value>(text).map_err(|e| {
            let line = e
                .location()
                .map(|l| format!(" at line {}", l.line()))
                .unwrap_or_default();
            let mut message = e.to_string();
            // serde_norway appends "at line N column M"; cut it and keep ours.
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            format!("invalid YAML{line}: {message}")
        }),
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(byte)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `BCFY_LIVE__POLL_INTERVAL` -> `["live", "poll_interval"]`.
fn env_path(name: &str) -> Option<Vec<String>> {
    let upper = name.to_ascii_uppercase();
    let rest = upper.strip_prefix(ENV_PREFIX)?;
    match rest {
        "USERNAME" => return Some(vec!["credentials".into(), "username".into()]),
        "PASSWORD" => return Some(vec!["credentials".into(), "password".into()]),
        "TOKEN" => return Some(vec!["credentials".into(), "token".into()]),
        _ => {}
    }
    if !rest.contains("__") {
        return None;
    }
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return None;
    }
    Some(path)
}

/// An environment value as a JSON scalar when it is one, else a string.
fn scalar(raw: &str) -> Value {
    match serde_json::from_str::<Value>(raw.trim()) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
        _ => Value::String(raw.to_owned()),
    }
}

fn set_path(tree: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut node = tree;
    for (i, segment) in parents.iter().enumerate() {
        let map = node
            .as_object_mut()
            .ok_or_else(|| format!("`{}` is not a section", parents[..i].join(".")))?;
        node = map
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let map = node
        .as_object_mut()
        .ok_or_else(|| format!("`{}` is not a section", parents.join(".")))?;
    map.insert(last.clone(), value);
    Ok(())
}

/// Deserializes the merged tree, reporting the failing or unknown key as a dotted path.
fn deserialize(tree: &Value) -> Result<Config, (String, String)> {
    let mut unknown: Vec<String> = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(tree, &mut on_unknown);
    let result: Result<Config, _> = serde_path_to_error::deserialize(de);
    match result {
        Ok(config) => {
            if let Some(first) = unknown.first() {
                return Err((first.clone(), "unknown key".into()));
            }
            Ok(config)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde's "unknown field `x`, expected ..." is reported at the parent path.
            if let Some(field) = unknown_field(&inner) {
                let key = if path == "." || path.is_empty() {
                    field
                } else if path.rsplit('.').next() == Some(field.as_str()) {
                    path
                } else {
                    format!("{path}.{field}")
                };
                return Err((key, "unknown key".into()));
            }
            let key = if path == "." { "(root)".into() } else { path };
            Err((key, sanitize_message(&inner)))
        }
    }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

/// serde messages quote the offending value (`invalid value: string "hunter2"`): a config
/// error must never echo a secret, so quoted strings are replaced.
fn sanitize_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quote = false;
    for c in message.chars() {
        if c == '"' {
            if in_quote {
                out.push_str("\"…\"");
            }
            in_quote = !in_quote;
            continue;
        }
        if !in_quote {
            out.push(c);
        }
    }
    out.chars().take(300).collect()
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Toml => "TOML",
            Self::Yaml => "YAML",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_paths() {
        assert_eq!(
            env_path("BCFY_LIVE__POLL_INTERVAL"),
            Some(vec!["live".to_owned(), "poll_interval".to_owned()])
        );
        assert_eq!(env_path("BCFY_LOG"), None);
        assert_eq!(env_path("HOME"), None);
        assert_eq!(env_path("BCFY_LIVE____X"), None);
        assert_eq!(
            env_path("BCFY_USERNAME"),
            Some(vec!["credentials".to_owned(), "username".to_owned()])
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(scalar("5"), Value::from(5));
        assert_eq!(scalar("true"), Value::Bool(true));
        assert_eq!(scalar("null"), Value::Null);
        assert_eq!(scalar("whisper-1"), Value::from("whisper-1"));
        assert_eq!(scalar("[1]"), Value::from("[1]"));
    }

    #[test]
    fn sanitize_hides_quoted_values() {
        let m = sanitize_message("invalid type: string \"hunter2\", expected f64");
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains("expected f64"));
    }
}
