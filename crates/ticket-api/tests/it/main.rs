//! The integration tests of `ticket-api`, one binary: they link once instead of once per file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod properties;
