//! bcfy: an async, event-driven client for Broadcastify Calls.
