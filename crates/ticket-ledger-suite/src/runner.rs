//! Runs the suite against stores: every case on every store is one test (a libtest-mimic
//! trial), with libtest's command line, so a store crate registers nothing case by case.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use ticket_ledger::LedgerStore;

use crate::case::{Body, Case};
use crate::tamper::Tamper;

/// What a case runs against: the store, and the same store's harness as a [`Tamper`].
type Subject = (Arc<dyn LedgerStore>, Arc<dyn Tamper>);

/// Opens a store for one case, on that case's runtime.
type Open = dyn Fn() -> Pin<Box<dyn Future<Output = Option<Subject>>>> + Send + Sync;

/// A store to run the suite against: its name (the first half of every test name) and how to
/// open it for a case.
#[derive(Clone)]
pub struct Store {
    name: String,
    open: Arc<Open>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store named `name` (a Rust-path-like word: `sqlite`, `postgres`), opened by `open`.
    ///
    /// `open` is called once per case, at the start of that case's test and on its runtime, so
    /// each case may get its own store (a temporary SQLite file) or a new handle to a shared
    /// database. It answers `Arc<S>` for a concrete `S` that is both the [`LedgerStore`] and
    /// its harness's [`Tamper`] (a harness that cannot tamper does not compile here, so no store
    /// skips the tampering cases), or `None` to skip the case (no database server here; the
    /// harness says why on its own).
    pub fn new<S, F, Fut>(name: impl Into<String>, open: F) -> Self
    where
        S: LedgerStore + Tamper + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Arc<S>>> + 'static,
    {
        let open = move || -> Pin<Box<dyn Future<Output = Option<Subject>>>> {
            let opening = open();
            Box::pin(async move {
                let harnessed = opening.await?;
                let tamper: Arc<dyn Tamper> = harnessed.clone();
                let store: Arc<dyn LedgerStore> = harnessed;
                Some((store, tamper))
            })
        };
        Self {
            name: name.into(),
            open: Arc::new(open),
        }
    }
}

/// Runs every case of the suite against every store, as the `main` of a test target with
/// `harness = false`, and answers the test binary's exit code.
///
/// Each case is a test named `<store>::<case>`, run on a multi-thread tokio runtime of its own
/// with 4 workers, so the race cases really race. The command line is libtest's: a name
/// filter, `--exact`, `--skip`, `--list`, `--test-threads`; a case registered with
/// `#[ignore = "…"]` is reported ignored with that reason and runs with `--ignored` or
/// `--include-ignored`.
pub fn run(stores: impl IntoIterator<Item = Store>) -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for store in stores {
        trials.extend(crate::cases().map(|case| trial(&store, case, &args)));
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// One case on one store.
fn trial(store: &Store, case: &'static Case, args: &Arguments) -> Trial {
    let name = format!("{}::{}", store.name, case.name);
    match case.ignored {
        // libtest-mimic prints a flagged trial as ignored without its reason, so the flag is
        // kept for the runs that select or list ignored tests, and otherwise the trial reports
        // itself ignored with the reason.
        Some(why) if !(args.ignored || args.include_ignored || args.list) => {
            Trial::ignorable_test(name, move || Ok(Completion::ignored_with(why)))
        }
        Some(_) => {
            let open = Arc::clone(&store.open);
            Trial::ignorable_test(name, move || run_case(&*open, case)).with_ignored_flag(true)
        }
        None => {
            let open = Arc::clone(&store.open);
            Trial::ignorable_test(name, move || run_case(&*open, case))
        }
    }
}

/// Opens the store and runs the case on a runtime of its own. A failing case panics; the
/// runner reports the panic's message as the test's failure.
fn run_case(open: &Open, case: &Case) -> Result<Completion, Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the case's tokio runtime: {e}"))?;
    runtime.block_on(async {
        let Some((store, tamper)) = open().await else {
            return Ok(Completion::ignored_with(
                "the store is not available here; its harness printed why",
            ));
        };
        match case.body {
            Body::Store(body) => body(store).await,
            Body::Tampering(body) => body(store, tamper).await,
        }
        Ok(Completion::Completed)
    })
}
