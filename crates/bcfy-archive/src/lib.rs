//! Archived call metadata (`archivecall.php`) behind a cache-first client.
