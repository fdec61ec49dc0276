//! Typed models of Broadcastify Calls: ids, calls, live and archive responses, events,
//! configuration and error kinds. serde only: no IO, no tokio.
