//! top-client's integration tests: one binary, so they link once instead of once per file. The
//! SDK talks to the real ticketd server on port 0, to in-test servers that fail on purpose, and
//! is checked against the golden signature vectors of `../shared/vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod errors;
mod formats;
#[allow(dead_code)] // not every test module uses every helper
mod helpers;
mod lifecycle;
mod retry;
mod vectors;
