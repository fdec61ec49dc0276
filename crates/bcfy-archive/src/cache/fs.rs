//! The filesystem cache: one file per entry, written atomically.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Cache, CacheCounters, CacheEntry, CacheError, CacheErrorKind, CacheKey, CacheStats};

/// The first line of every entry file (format name and version).
const MAGIC: &[u8] = b"bcfy-archive-cache 1\n";
const ENTRY_EXT: &str = "entry";
const TMP_EXT: &str = "tmp";

/// The metadata line of an entry file.
#[derive(Serialize, Deserialize)]
struct Header {
    fetched_at_ms: u64,
    fresh_until_ms: u64,
    retain_until_ms: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    body_len: usize,
    body_sha256: String,
}

/// The spec's default [`Cache`]: entries persist in a directory and survive process restarts.
///
/// Layout: `{dir}/{sid}-{tg}/{block epoch}.entry`. A file holds a format line, a JSON metadata
/// line (times, validators, body length and SHA-256) and the body. Writes go to a temporary file
/// in the same directory, are flushed to disk, then renamed over the entry: a crash leaves
/// either the old entry or the new one, never half of one. A file that does not decode or whose
/// checksum does not match is corrupt: it is logged, counted in [`CacheStats::corrupt`], removed,
/// and reported as a miss. Directories are created on first write.
#[derive(Debug, Clone)]
pub struct FsCache {
    dir: Arc<PathBuf>,
    counters: Arc<CacheCounters>,
    tmp_seq: Arc<AtomicU64>,
}

impl FsCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Arc::new(dir.into()),
            counters: Arc::default(),
            tmp_seq: Arc::default(),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an entry for `key` lives in.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir
            .join(key.group.to_string())
            .join(format!("{}.{ENTRY_EXT}", key.block.epoch_secs()))
    }

    /// Remove entries whose `retain_until` has passed, corrupt entries, and temporary files left
    /// by interrupted writes. Returns how many files were removed.
    pub async fn purge(&self) -> Result<usize, CacheError> {
        let mut removed = 0;
        let mut groups = match tokio::fs::read_dir(&*self.dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io_error("cannot list the cache directory", e)),
        };
        let now = SystemTime::now();
        while let Some(group) = groups
            .next_entry()
            .await
            .map_err(|e| self.io_error("cannot list the cache directory", e))?
        {
            if !group.file_type().await.is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(mut files) = tokio::fs::read_dir(group.path()).await else {
                continue;
            };
            while let Ok(Some(file)) = files.next_entry().await {
                let path = file.path();
                let drop = match path.extension().and_then(|e| e.to_str()) {
                    Some(TMP_EXT) => true,
                    Some(ENTRY_EXT) => match tokio::fs::read(&path).await {
                        Ok(bytes) => decode(&bytes).is_none_or(|e| e.retain_until <= now),
                        Err(_) => false,
                    },
                    _ => false,
                };
                if drop && tokio::fs::remove_file(&path).await.is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn io_error(&self, what: &str, e: io::Error) -> CacheError {
        CacheCounters::bump(&self.counters.errors);
        CacheError::io(format!("{what} ({})", self.dir.display()), e)
    }
}

#[async_trait]
impl Cache for FsCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        let path = self.entry_path(key);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                CacheCounters::bump(&self.counters.misses);
                return Ok(None);
            }
            Err(e) => return Err(self.io_error("cannot read a cache entry", e)),
        };
        let Some(entry) = decode(&bytes) else {
            CacheCounters::bump(&self.counters.corrupt);
            CacheCounters::bump(&self.counters.misses);
            tracing::warn!(
                key = %key,
                path = %path.display(),
                len = bytes.len(),
                "corrupt archive cache entry; treating it as a miss and removing it"
            );
            // Best effort: the next write replaces it anyway.
            let _ = tokio::fs::remove_file(&path).await;
            return Ok(None);
        };
        if entry.retain_until <= SystemTime::now() {
            CacheCounters::bump(&self.counters.misses);
            let _ = tokio::fs::remove_file(&path).await;
            return Ok(None);
        }
        CacheCounters::bump(&self.counters.hits);
        Ok(Some(entry))
    }

    async fn set(&self, key: &CacheKey, entry: CacheEntry) -> Result<(), CacheError> {
        let path = self.entry_path(key);
        let Some(parent) = path.parent() else {
            return Err(CacheError::new(
                CacheErrorKind::Config,
                "the cache directory has no parent",
            ));
        };
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| self.io_error("cannot create the cache directory", e))?;
        let data = encode(&entry)?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!(
            ".{}.{}.{seq}.{TMP_EXT}",
            key.block.epoch_secs(),
            std::process::id()
        ));
        if let Err(e) = write_synced(&tmp, &data).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(self.io_error("cannot write a cache entry", e));
        }
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(self.io_error("cannot move a cache entry into place", e));
        }
        CacheCounters::bump(&self.counters.writes);
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        match tokio::fs::remove_file(self.entry_path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error("cannot remove a cache entry", e)),
        }
    }

    fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }
}

async fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(data).await?;
    // Flushed to disk before the rename, so the renamed file is never empty after a crash.
    file.sync_all().await?;
    Ok(())
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

fn encode(entry: &CacheEntry) -> Result<Vec<u8>, CacheError> {
    let header = Header {
        fetched_at_ms: millis(entry.fetched_at),
        fresh_until_ms: millis(entry.fresh_until),
        retain_until_ms: millis(entry.retain_until),
        etag: entry.etag.clone(),
        last_modified: entry.last_modified.clone(),
        body_len: entry.body.len(),
        body_sha256: hex::encode(Sha256::digest(&entry.body)),
    };
    let header = serde_json::to_vec(&header).map_err(|e| {
        CacheError::new(
            CacheErrorKind::Encode,
            format!("cannot encode entry metadata: {e}"),
        )
    })?;
    let mut out = Vec::with_capacity(MAGIC.len() + header.len() + 1 + entry.body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&header);
    out.push(b'\n');
    out.extend_from_slice(&entry.body);
    Ok(out)
}

/// The entry in `bytes`, or `None` if it is not an intact entry file.
fn decode(bytes: &[u8]) -> Option<CacheEntry> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let newline = rest.iter().position(|&b| b == b'\n')?;
    let header: Header = serde_json::from_slice(&rest[..newline]).ok()?;
    let body = &rest[newline + 1..];
    if body.len() != header.body_len || hex::encode(Sha256::digest(body)) != header.body_sha256 {
        return None;
    }
    Some(CacheEntry {
        body: Bytes::copy_from_slice(body),
        fetched_at: from_millis(header.fetched_at_ms),
        fresh_until: from_millis(header.fresh_until_ms),
        retain_until: from_millis(header.retain_until_ms),
        etag: header.etag,
        last_modified: header.last_modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CacheEntry {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_763_985_600_123);
        CacheEntry {
            body: Bytes::from_static(br#"{"calls":[],"start":1,"end":2}"#),
            fetched_at: now,
            fresh_until: now + Duration::from_mins(1),
            retain_until: now + Duration::from_hours(1),
            etag: Some("\"abc\"".into()),
            last_modified: None,
        }
    }

    #[test]
    fn round_trip() {
        let e = entry();
        assert_eq!(decode(&encode(&e).unwrap()), Some(e));
    }

    #[test]
    fn truncated_or_flipped_files_do_not_decode() {
        let data = encode(&entry()).unwrap();
        for cut in 0..data.len() {
            assert_eq!(decode(&data[..cut]), None, "prefix of {cut} bytes decoded");
        }
        let mut flipped = data.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x01;
        assert_eq!(decode(&flipped), None);
        assert_eq!(decode(b"garbage"), None);
    }
}
