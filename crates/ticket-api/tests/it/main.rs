//! The integration tests of `ticket-api`, one binary (STYLE.md §7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod properties;
