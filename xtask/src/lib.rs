//! Library part of bcfy's `xtask`: the service contract and its checker, shared by the
//! `contract`, `soak` and `ci` commands.

pub mod api;
pub mod bench;
pub mod contract;
pub mod contract_live;
pub mod contract_run;
pub mod release;
pub mod soak;
