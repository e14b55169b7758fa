//! Several PostgreSQL hosts in one `--database-url`, as libpq takes them
//! (`postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write`), and following the one
//! that accepts writes when it changes (a standby promoted after its primary died).
//!
//! sqlx connects to one host, so the store picks one: on start, the first host (in the order
//! given) that answers and, with `target_session_attrs=read-write` (the default here, since a
//! ledger only writes), is not in recovery. A watcher then checks every
//! [`CHECK_EVERY`], on one of the pool's connections, that the pool's host still accepts writes; when it does not (it died, or
//! it was demoted), the watcher looks for the host that does and points the pool's future
//! connections at it. Connections to the dead host fail their health check and are dropped,
//! so the store follows the failover without a restart; until then its calls fail, the
//! server's `/readyz` says so, and gateway calls are answered `isp.service-busy` (or looked
//! up by request id when a commit's answer was lost).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Connection};

/// How often the watcher checks that the pool's host still accepts writes.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(500);

/// How long one host may take to answer a check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the pool's check may take. The pool keeps trying a dead host until its acquire
/// timeout, so this is what a failover waits before the hosts are looked at afresh; a busy
/// pool that cannot lend a connection this fast only costs one look at the hosts.
const POOL_CHECK_TIMEOUT: Duration = Duration::from_millis(750);

/// The most hosts one URL may name.
const MAX_HOSTS: usize = 16;

/// Which host a multi-host URL wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// One that accepts writes (`target_session_attrs=read-write`, the default).
    ReadWrite,
    /// The first that answers (`target_session_attrs=any`).
    Any,
}

/// A URL naming several hosts, as one single-host URL per host.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Hosts {
    /// One URL per host, in the order given, `target_session_attrs` removed.
    pub(crate) urls: Vec<String>,
    /// What the URL asked for.
    pub(crate) want: Want,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry a password.
        f.debug_struct("Hosts")
            .field("hosts", &self.urls.len())
            .field("want", &self.want)
            .finish()
    }
}

impl Hosts {
    /// The hosts of `url`: `Ok(None)` for a URL naming one host (left to sqlx as it is),
    /// `Err` with the reason for one that names several in a way this cannot follow.
    pub(crate) fn parse(url: &str) -> Result<Option<Hosts>, &'static str> {
        let Some(scheme_end) = url.find("://") else {
            return Ok(None);
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hostlist) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (tail, None),
        };
        let mut want = Want::ReadWrite;
        let mut kept = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("target_session_attrs", "read-write")) => want = Want::ReadWrite,
                Some(("target_session_attrs", "any")) => want = Want::Any,
                Some(("target_session_attrs", _)) => {
                    return Err("target_session_attrs must be read-write or any")
                }
                _ if !pair.is_empty() => kept.push(pair),
                _ => {}
            }
        }
        if !hostlist.contains(',') {
            return Ok(None);
        }
        let scheme = &url[..scheme_end];
        if !matches!(scheme, "postgres" | "postgresql") {
            return Err("several hosts are supported for PostgreSQL only");
        }
        let hosts: Vec<&str> = hostlist.split(',').collect();
        if hosts.len() > MAX_HOSTS {
            return Err("at most 16 hosts");
        }
        if hosts.iter().any(|h| h.is_empty()) {
            return Err("an empty host in the host list");
        }
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let urls = hosts
            .iter()
            .map(|host| format!("{scheme}://{userinfo}{host}{path}{query}"))
            .collect();
        Ok(Some(Hosts { urls, want }))
    }

    /// The first host, in order, that answers and is what the URL wants; `Err` with each
    /// host's failure when none is.
    pub(crate) async fn find(&self) -> Result<String, String> {
        let mut why = Vec::new();
        for (i, url) in self.urls.iter().enumerate() {
            match tokio::time::timeout(CHECK_TIMEOUT, check(url, self.want)).await {
                Ok(Ok(())) => return Ok(url.clone()),
                Ok(Err(e)) => why.push(format!("host {}: {e}", i + 1)),
                Err(_) => why.push(format!(
                    "host {}: no answer within {CHECK_TIMEOUT:?}",
                    i + 1
                )),
            }
        }
        Err(why.join("; "))
    }
}

/// Whether the host of `url` answers and, for [`Want::ReadWrite`], accepts writes.
async fn check(url: &str, want: Want) -> Result<(), String> {
    let mut conn = AnyConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let verdict = accepts(&mut conn, want).await;
    let _ = conn.close().await;
    verdict
}

/// Whether the host `conn` is connected to is what `want` asks for.
async fn accepts(conn: &mut AnyConnection, want: Want) -> Result<(), String> {
    match want {
        Want::Any => Ok(()),
        Want::ReadWrite => {
            let (in_recovery,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            if in_recovery {
                Err("a standby (in recovery), not accepting writes".to_owned())
            } else {
                Ok(())
            }
        }
    }
}

/// Whether the pool's host is still what `want` asks for, asked on one of the pool's own
/// connections: the check every [`CHECK_EVERY`] opens no connection of its own.
async fn pool_accepts(pool: &AnyPool, want: Want) -> Result<(), String> {
    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
    accepts(&mut conn, want).await
}

/// The URL the store's connections go to now, shared by the pool's watcher and the
/// connections made outside the pool.
#[derive(Clone)]
pub(crate) struct Current(Arc<RwLock<Arc<str>>>);

impl Current {
    pub(crate) fn new(url: &str) -> Self {
        Self(Arc::new(RwLock::new(url.into())))
    }

    pub(crate) fn get(&self) -> Arc<str> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, url: &str) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url.into();
    }
}

/// Follows the host that accepts writes until the pool closes (module docs).
pub(crate) fn watch(hosts: Hosts, pool: AnyPool, current: Current) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(CHECK_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if pool.is_closed() {
                return;
            }
            if tokio::time::timeout(POOL_CHECK_TIMEOUT, pool_accepts(&pool, hosts.want))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                continue;
            }
            let url = current.get();
            match hosts.find().await {
                Ok(found) if *found != *url => match super::pool_options(&found) {
                    Ok(options) => {
                        pool.set_connect_options(options);
                        current.set(&found);
                        tracing::warn!(
                            host = hosts.urls.iter().position(|u| *u == found).map_or(0, |i| i + 1),
                            "the database host that accepts writes changed; new connections go there"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "a database host's URL does not parse"),
                },
                Ok(_) => {}
                Err(why) => tracing::warn!(%why, "no database host accepts writes"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_url_naming_several_hosts_becomes_one_url_per_host() {
        let hosts = Hosts::parse(
            "postgres://u:p%40w@10.0.0.1:5432,10.0.0.2:5433/ledger?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            hosts.urls,
            vec![
                "postgres://u:p%40w@10.0.0.1:5432/ledger?sslmode=disable",
                "postgres://u:p%40w@10.0.0.2:5433/ledger?sslmode=disable",
            ]
        );
        assert_eq!(hosts.want, Want::ReadWrite);
        let any = Hosts::parse("postgresql://a,b/db?target_session_attrs=any")
            .unwrap()
            .unwrap();
        assert_eq!(any.want, Want::Any);
        assert_eq!(any.urls, vec!["postgresql://a/db", "postgresql://b/db"]);
        assert!(
            !format!("{hosts:?}").contains("p%40w"),
            "no password in Debug"
        );
    }

    #[test]
    fn one_host_is_left_alone_and_bad_lists_are_refused() {
        assert_eq!(Hosts::parse("postgres://u@h:5432/db"), Ok(None));
        assert_eq!(Hosts::parse("sqlite://data/ticketd.db"), Ok(None));
        assert!(Hosts::parse("mysql://root@a:3306,b:3306/test").is_err());
        assert!(Hosts::parse("postgres://a,,b/db").is_err());
        assert!(Hosts::parse("postgres://a,b/db?target_session_attrs=standby").is_err());
        let many = format!("postgres://{}/db", vec!["h"; 10_000].join(","));
        assert!(Hosts::parse(&many).is_err());
    }
}
