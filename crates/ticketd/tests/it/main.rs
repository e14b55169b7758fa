//! ticketd's integration tests: one binary (they link once instead of once per file), the real
//! server on port 0, called as vendors and operators call it.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod access;
mod admin;
mod admin_lists;
mod bench;
mod bounded;
mod bounds;
mod browser;
mod cli;
mod cluster;
mod console;
mod console_pages;
mod crash;
mod durability;
mod events;
mod failover;
mod faults;
mod galera;
#[allow(dead_code)] // not every test module uses every helper
mod helpers;
mod hostile;
mod interop;
mod kept;
mod lifecycle;
mod listeners;
mod metrics;
mod multiprocess;
mod protocol;
mod race;
mod relay;
mod rules;
mod transfer;
