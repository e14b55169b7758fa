//! ticketd: the platform side of Fliggy's ticket redemption API, as a server.
//!
//! Vendors' gate systems call `POST /router/rest` with signed TOP requests
//! (`taobao.travel.ticket.order.verify`); ticketd authenticates them, applies them to the ledger
//! and answers in the exact envelope bytes real TOP SDKs expect. Operators use the JSON admin
//! API under `/admin` (apps, orders, the audit trail).
//!
//! Not here: the wire protocol's pure functions (`top-protocol`), the method vocabulary
//! (`ticket-api`), the rules (`ticket-ledger`), storage (`ticket-store`).
//!
//! # Modules
//! - [`settings`]: every setting, with its flag and `TICKETD_` environment twin.
//! - [`server`]: [`server::Application`] — build (open the store, bind) and run until stopped.
//! - [`gateway`]: the `/router/rest` pipeline and one module per TOP method.
//! - [`admin`]: the operator's JSON API and health endpoints.
//! - [`paging`]: the page builder that bounds every admin list answer, in entries and bytes.
//! - [`bench`](mod@bench): `ticketd bench`: ticketd as the server the `ticketd-bench` load
//!   generator starts in this process.
//! - [`lifecycle_doc`]: the order lifecycle as data; `docs/LIFECYCLE.md` is rendered from it.
//! - [`metrics`]: Prometheus counters and histograms served at `/metrics`.
//! - [`clock`]: the injectable source of "now".
//! - [`demo`]: the `--demo` seed.
//! - [`cli`]: the `ticketd` command line.
//! - [`client_cli`]: `ticketd verify|refund|issue`, a vendor's calls over `top-client`.
//! - [`telemetry`]: structured logging.
//! - [`transfer`]: `ticketd migrate|export|import`, a ledger's schema and its move between
//!   backends.
//! - `test_support` (feature `test-support`): `spawn_app`, the real server on port 0 for the
//!   integration tests of this crate and of `top-client`.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod client_cli;
pub mod clock;
pub mod console;
pub mod demo;
pub mod gateway;
pub mod lifecycle_doc;
pub mod metrics;
pub mod paging;
pub mod relay;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod traffic;
pub mod transfer;

#[cfg(feature = "test-support")]
pub mod test_support;
