//! The one HTTP transport of bcfy: a pooled hyper client with rustls, ALPN h2 and http/1.1,
//! the browser header template, decompression, request semaphores, a rate budget and a
//! Retry-After gate. Other crates depend on its `Transport` trait.
