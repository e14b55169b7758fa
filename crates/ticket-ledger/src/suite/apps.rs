//! Apps: registration, lookup, access settings and secret rotation.

use std::sync::Arc;

use chrono::Duration;

use crate::{App, AppAccess, IpRange, PreviousSecret, RateLimit, SecretRotation};
use crate::{AppKey, LedgerError, LedgerStore};

use super::build::{app, app_created_at, app_key, Fresh};

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

/// An allow-list entry; panics if `text` is not one.
fn range(text: &str) -> IpRange {
    IpRange::parse(text).unwrap_or_else(|e| panic!("{text:?} should be an IP range: {e}"))
}

/// A rate limit; panics if `rate` is not one.
fn rate(rate: &str, burst: Option<u32>) -> RateLimit {
    RateLimit::parse(rate, burst).unwrap_or_else(|e| panic!("{rate:?} should be a rate: {e}"))
}

/// The app as `app()` reads it; panics if it is not found.
async fn stored(store: &dyn LedgerStore, key: &AppKey, ctx: &str) -> App {
    store
        .app(key)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: app() should answer, got {e:?}"))
        .unwrap_or_else(|| panic!("{ctx}: app() should find {key:?}"))
}

/// Access settings given at registration are stored, and `set_app_access` replaces them
/// whole: a limited rate with its burst, `unlimited`, none (the server's default), IPv4 and
/// IPv6 addresses and ranges, and an empty allow-list. Each answer is what a later read
/// returns, and nothing else about the app changes.
pub async fn app_access_settings_are_stored_and_replaced_whole(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let mut new = app(&f.key("app"));
    new.access = AppAccess {
        rate_limit: Some(rate("20/s", Some(40))),
        ip_allowlist: vec![range("203.0.113.0/24"), range("::1"), range("10.1.2.3")],
    };
    let created = store
        .create_app(new.clone())
        .await
        .expect("create_app with access settings should succeed");
    assert_eq!(
        created, new,
        "create_app's answer keeps the access settings"
    );
    assert_eq!(
        stored(&*store, &new.app_key, "after create_app").await,
        new,
        "app() after create_app with access settings"
    );

    let steps = [
        AppAccess {
            rate_limit: Some(rate("600/m", None)),
            ip_allowlist: vec![range("2001:db8::/32"), range("0.0.0.0/0")],
        },
        AppAccess {
            rate_limit: Some(RateLimit::Unlimited),
            ip_allowlist: vec![range("192.168.0.0/16")],
        },
        AppAccess::default(),
    ];
    for access in steps {
        let answered = store
            .set_app_access(&new.app_key, access.clone())
            .await
            .unwrap_or_else(|e| panic!("set_app_access({access:?}) should succeed, got {e:?}"));
        let want = App {
            access: access.clone(),
            ..new.clone()
        };
        assert_eq!(answered, want, "set_app_access's answer for {access:?}");
        assert_eq!(
            stored(&*store, &new.app_key, "after set_app_access").await,
            want,
            "app() after set_app_access({access:?})"
        );
    }
}

/// A rotation makes the new secret current and keeps the old one, with its expiry, as the
/// previous secret; a second rotation forgets the first secret. A previous secret given at
/// registration (an import) is stored too.
pub async fn secret_rotation_keeps_the_replaced_secret_until_it_expires(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let new = app(&f.key("app"));
    let key = new.app_key.clone();
    store.create_app(new.clone()).await.expect("create_app");
    let first_expiry = app_created_at() + Duration::hours(24);
    let rotated = store
        .rotate_app_secret(
            &key,
            SecretRotation {
                new_secret: "second-secret".to_owned(),
                previous_expires_at: first_expiry,
            },
        )
        .await
        .expect("rotate_app_secret of a registered app should succeed");
    let want = App {
        secret: "second-secret".to_owned(),
        previous_secret: Some(PreviousSecret {
            secret: new.secret.clone(),
            expires_at: first_expiry,
        }),
        ..new.clone()
    };
    assert_eq!(rotated, want, "rotate_app_secret's answer");
    assert_eq!(stored(&*store, &key, "after a rotation").await, want);
    assert_eq!(
        want.secrets_at(first_expiry - Duration::seconds(1)),
        ["second-secret", new.secret.as_str()],
        "both secrets are accepted during the overlap"
    );
    assert_eq!(
        want.secrets_at(first_expiry),
        ["second-secret"],
        "the previous secret is refused from its expiry on"
    );

    let second_expiry = first_expiry + Duration::hours(1);
    let again = store
        .rotate_app_secret(
            &key,
            SecretRotation {
                new_secret: "third-secret".to_owned(),
                previous_expires_at: second_expiry,
            },
        )
        .await
        .expect("a second rotation should succeed");
    let want = App {
        secret: "third-secret".to_owned(),
        previous_secret: Some(PreviousSecret {
            secret: "second-secret".to_owned(),
            expires_at: second_expiry,
        }),
        ..new.clone()
    };
    assert_eq!(again, want, "the second rotation forgets the first secret");
    assert_eq!(stored(&*store, &key, "after a second rotation").await, want);

    let mut imported = app(&f.key("imported"));
    imported.previous_secret = Some(PreviousSecret {
        secret: "old-imported".to_owned(),
        expires_at: second_expiry,
    });
    store
        .create_app(imported.clone())
        .await
        .expect("create_app with a previous secret");
    assert_eq!(
        stored(
            &*store,
            &imported.app_key,
            "an app registered with a previous secret"
        )
        .await,
        imported
    );
}

/// Changing the access settings or the secret of an unregistered key is refused with
/// `UnknownApp`, and registers nothing.
pub async fn access_changes_of_an_unknown_app_are_refused_with_unknown_app(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let key = app_key(&f.key("nobody"));
    let err = store
        .set_app_access(&key, AppAccess::default())
        .await
        .expect_err("set_app_access of an unknown app should be refused");
    assert_eq!(err, LedgerError::UnknownApp, "set_app_access");
    let err = store
        .rotate_app_secret(
            &key,
            SecretRotation {
                new_secret: "s".to_owned(),
                previous_expires_at: app_created_at(),
            },
        )
        .await
        .expect_err("rotate_app_secret of an unknown app should be refused");
    assert_eq!(err, LedgerError::UnknownApp, "rotate_app_secret");
    let found = store.app(&key).await.expect("app() should answer");
    assert!(found.is_none(), "nothing was registered: {found:?}");
}

/// `/metrics`: the totals count what the ledger holds. Other cases may write to the same
/// database meanwhile, so the totals are checked to have grown by at least this case's writes.
pub async fn metrics_totals_count_orders_capacity_and_uses(store: Arc<dyn LedgerStore>) {
    use super::build::{order, verify_cmd};
    use super::check::{given_app, given_order};
    let before = store.metrics().await.expect("metrics before");
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 3), ("B", 2)])).await;
    store
        .verify(verify_cmd(&a, f.id(1)).entry("A", 2).build())
        .await
        .expect("verify");
    let after = store.metrics().await.expect("metrics after");
    assert!(
        after.orders > before.orders,
        "orders: {before:?} -> {after:?}"
    );
    assert!(
        after.capacity >= before.capacity + 5.0,
        "capacity: {before:?} -> {after:?}"
    );
    assert!(
        after.used >= before.used + 2.0,
        "used: {before:?} -> {after:?}"
    );
    assert!(
        after.used <= after.capacity,
        "used within capacity: {after:?}"
    );
    if let (Some(b), Some(a)) = (before.batches, after.batches) {
        assert!(
            a.commits > b.commits && a.jobs > b.jobs,
            "batches: {b:?} -> {a:?}"
        );
        assert!(a.largest_batch >= 1, "{a:?}");
    }
}
