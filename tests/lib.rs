//! End-to-end tests of the `bcfy` umbrella against `bcfy-sim` live in `tests/*.rs`.
//!
//! The repository README's library example is compiled here as a doctest, so the first
//! example a new user copies always builds.

#[doc = include_str!("../README.md")]
mod readme {}
