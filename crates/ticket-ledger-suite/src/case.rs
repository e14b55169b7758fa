//! What a case is to the runner, and `cases!`, the one place each module registers its cases.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ticket_ledger::LedgerStore;

use crate::tamper::Tamper;

/// A running case. Not `Send`: the runner drives it on its own thread with `block_on`; the
/// tasks a race case spawns are its own business.
pub(crate) type Running = Pin<Box<dyn Future<Output = ()>>>;

/// A case's body.
#[derive(Clone, Copy)]
pub(crate) enum Body {
    /// Talks to the store through [`LedgerStore`] alone.
    Store(fn(Arc<dyn LedgerStore>) -> Running),
    /// Also makes the database disagree with the ledger through the harness's [`Tamper`].
    Tampering(fn(Arc<dyn LedgerStore>, Arc<dyn Tamper>) -> Running),
}

/// One case of the suite, as a module's `cases!` list registers it.
#[derive(Clone, Copy)]
pub(crate) struct Case {
    /// The case function's name: the behaviour sentence, and the second half of its test name.
    pub(crate) name: &'static str,
    /// Why the case is not run by default (a known bug, `"store bug: …"` or `"domain bug: …"`);
    /// it still runs with `--ignored`.
    pub(crate) ignored: Option<&'static str>,
    pub(crate) body: Body,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("ignored", &self.ignored)
            .finish_non_exhaustive()
    }
}

/// Declares a module's cases: `pub(crate) const CASES: &[Case]`, one entry per function named.
/// `tampering:` first marks a list whose cases also take the harness's [`Tamper`]. An entry
/// may carry `#[ignore = "store bug: …"]` for a known bug.
///
/// ```ignore
/// cases! {
///     created_app_is_found_by_key,
///     #[ignore = "store bug: the key is compared without case"]
///     duplicate_app_key_is_refused_with_app_exists,
/// }
/// ```
macro_rules! cases {
    (@why) => {
        None
    };
    (@why $why:literal) => {
        Some($why)
    };
    (tampering: $($(#[ignore = $why:literal])? $case:ident),* $(,)?) => {
        pub(crate) const CASES: &[$crate::case::Case] = &[$(
            $crate::case::Case {
                name: stringify!($case),
                ignored: cases!(@why $($why)?),
                body: $crate::case::Body::Tampering(|store, tamper| {
                    ::std::boxed::Box::pin($case(store, tamper))
                }),
            }
        ),*];
    };
    ($($(#[ignore = $why:literal])? $case:ident),* $(,)?) => {
        pub(crate) const CASES: &[$crate::case::Case] = &[$(
            $crate::case::Case {
                name: stringify!($case),
                ignored: cases!(@why $($why)?),
                body: $crate::case::Body::Store(|store| ::std::boxed::Box::pin($case(store))),
            }
        ),*];
    };
}
