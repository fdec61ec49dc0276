//! Broadcastify login, logout and single-flight session management.
