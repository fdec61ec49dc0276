//! A typed in-process event bus with NATS-style subject patterns.
