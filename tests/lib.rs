//! End-to-end tests of the `bcfy` umbrella against `bcfy-sim` live in `tests/*.rs`.
