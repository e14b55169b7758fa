//! Apps: registration and lookup.

use std::sync::Arc;

use crate::model::App;
use crate::{LedgerError, LedgerStore};

use super::build::{app, app_key, Fresh};

fn assert_same_app(got: &App, want: &App, ctx: &str) {
    assert_eq!(
        (&got.app_key, &got.name, &got.secret, got.created_at),
        (&want.app_key, &want.name, &want.secret, want.created_at),
        "{ctx}: (app_key, name, secret, created_at)"
    );
}

/// A registered app is found by its key with everything it was registered with; an unknown
/// key finds nothing (and is not an error).
pub async fn created_app_is_found_by_key(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let new = app(&f.key("app"));
    let created = store
        .create_app(new.clone())
        .await
        .expect("create_app of a fresh key should succeed");
    assert_same_app(&created, &new, "create_app's answer");

    let found = store
        .app(&new.app_key)
        .await
        .expect("app() should answer")
        .expect("app() should find the app just created");
    assert_same_app(&found, &new, "app() after create_app");

    let unknown = store
        .app(&app_key(&f.key("nobody")))
        .await
        .expect("app() of an unknown key should answer Ok(None), not fail");
    assert!(
        unknown.is_none(),
        "app() of an unknown key should be None, got {unknown:?}"
    );
}

/// Registering a key twice is refused with `AppExists`, and the first registration stays.
pub async fn duplicate_app_key_is_refused_with_app_exists(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let first = app(&f.key("app"));
    store
        .create_app(first.clone())
        .await
        .expect("the first create_app should succeed");

    let mut second = app(&f.key("app"));
    second.name = "an impostor".to_owned();
    second.secret = "another secret".to_owned();
    let err = store
        .create_app(second)
        .await
        .expect_err("a second create_app with the same key should be refused");
    assert_eq!(err, LedgerError::AppExists, "duplicate app key");

    let found = store
        .app(&first.app_key)
        .await
        .expect("app() should answer")
        .expect("the first app should still exist");
    assert_same_app(&found, &first, "app() after the refused duplicate");
}

/// The store answers a readiness ping.
pub async fn store_answers_ping(store: Arc<dyn LedgerStore>) {
    store
        .ping()
        .await
        .expect("ping() should succeed on a working store");
}
