//! Scratch databases on the real servers, for tests (feature `test-support`).
//!
//! A test run creates its own database, `ticketd_test_<unix seconds>_<pid>_<random>`, on the
//! server named by `TICKETD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) or `TICKETD_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`), so concurrent runs never see each other's rows. The
//! database is left behind for inspection when the run ends; a later run drops scratch
//! databases older than [`KEEP`].
//!
//! When the server cannot be reached, [`ScratchDatabase::shared`] and
//! [`ScratchDatabase::fresh`] return `None` after printing once how to start it — so a
//! newcomer's `cargo test` without database servers still runs everything else — unless the
//! environment variable `CI` is set, where a missing server fails the test.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, Connection, Row};

use crate::sql::Engine;

/// How long scratch databases are kept for inspection before a later run drops them.
pub const KEEP: Duration = Duration::from_secs(6 * 3600);

const PREFIX: &str = "ticketd_test_";

/// A database created for this test run.
#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    engine: Engine,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// One database per engine for the whole test process (behaviour-suite cases share it;
    /// they keep apart by their own names). `None`: skip, see the module docs.
    pub fn shared(engine: Engine) -> Option<&'static ScratchDatabase> {
        static POSTGRES: OnceLock<Option<ScratchDatabase>> = OnceLock::new();
        static MYSQL: OnceLock<Option<ScratchDatabase>> = OnceLock::new();
        let cell = match engine {
            Engine::Postgres => &POSTGRES,
            Engine::MySql => &MYSQL,
        };
        cell.get_or_init(|| Self::fresh(engine)).as_ref()
    }

    /// A new, empty database of its own (for tests that need an empty ledger). `None`: skip.
    pub fn fresh(engine: Engine) -> Option<ScratchDatabase> {
        let base = base_url(engine);
        // Its own thread and runtime: callers may be inside a runtime, even a
        // current-thread one, and must not block it.
        let created = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(create(engine, &base))
        })
        .join()
        .unwrap_or_else(|_| Err("the scratch database thread panicked".to_owned()));
        match created {
            Ok(db) => Some(db),
            Err(why) => {
                unreachable_server(engine, &why);
                None
            }
        }
    }

    /// Its engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL that opens it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The environment variable naming an engine's base URL.
pub fn url_variable(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "TICKETD_TEST_POSTGRES_URL",
        Engine::MySql => "TICKETD_TEST_MYSQL_URL",
    }
}

fn base_url(engine: Engine) -> String {
    std::env::var(url_variable(engine)).unwrap_or_else(|_| {
        match engine {
            Engine::Postgres => "postgres://postgres@127.0.0.1:5432/postgres",
            Engine::MySql => "mysql://root@127.0.0.1:3306/test",
        }
        .to_owned()
    })
}

/// `url` naming database `name` instead of the one it names.
fn with_database(url: &str, name: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (head, tail) = url.split_at(start);
    let (authority, rest) = tail.split_once('/').unwrap_or((tail, ""));
    let query = rest.find('?').map_or("", |i| &rest[i..]);
    format!("{head}{authority}/{name}{query}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn create(engine: Engine, base: &str) -> Result<ScratchDatabase, String> {
    sqlx::any::install_default_drivers();
    let connect = sqlx::AnyConnection::connect(base);
    let mut conn = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "no answer within 10 s".to_owned())?
        .map_err(|e| crate::error::chain(&e))?;
    drop_stale(engine, &mut conn).await;
    let name = format!(
        "{PREFIX}{}_{}_{:08x}",
        now_secs(),
        std::process::id(),
        rand::random::<u32>()
    );
    let create = match engine {
        Engine::Postgres => format!("CREATE DATABASE {name}"),
        Engine::MySql => {
            format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        }
    };
    sqlx::raw_sql(AssertSqlSafe(create))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("creating {name}: {}", crate::error::chain(&e)))?;
    let _ = conn.close().await;
    Ok(ScratchDatabase {
        engine,
        url: with_database(base, &name),
        name,
    })
}

/// Drops scratch databases of earlier runs older than [`KEEP`]. Best effort: a failure only
/// leaves them for the next run.
async fn drop_stale(engine: Engine, conn: &mut sqlx::AnyConnection) {
    let list = match engine {
        Engine::Postgres => {
            "SELECT datname FROM pg_database WHERE datname LIKE 'ticketd\\_test\\_%'"
        }
        Engine::MySql => {
            "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata \
                          WHERE schema_name LIKE 'ticketd\\_test\\_%'"
        }
    };
    let Ok(rows) = sqlx::query(list).fetch_all(&mut *conn).await else {
        return;
    };
    let horizon = now_secs().saturating_sub(KEEP.as_secs());
    for row in rows {
        let Ok(name) = row.try_get::<String, _>(0) else {
            continue;
        };
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        let safe_name = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if safe_name && created.is_some_and(|t| t < horizon) {
            let drop = match engine {
                Engine::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                Engine::MySql => format!("DROP DATABASE IF EXISTS {name}"),
            };
            let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut *conn).await;
        }
    }
}

/// Fails under CI; otherwise says once, on the real stderr (not the captured test output), how
/// to start the server.
fn unreachable_server(engine: Engine, why: &str) {
    let start = match engine {
        Engine::Postgres => {
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        }
        Engine::MySql => {
            "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
        }
    };
    let message = format!(
        "the {} tests need a server at {} (set {} to use another): {why}. Start it with `{start}`.",
        engine.name(),
        crate::sql::redact(&base_url(engine)),
        url_variable(engine)
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, so a missing database server fails the run: {message}");
    }
    static SAID_POSTGRES: OnceLock<()> = OnceLock::new();
    static SAID_MYSQL: OnceLock<()> = OnceLock::new();
    let said = match engine {
        Engine::Postgres => &SAID_POSTGRES,
        Engine::MySql => &SAID_MYSQL,
    };
    said.get_or_init(|| {
        let _ = writeln!(std::io::stderr(), "note: skipping: {message}");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_url_names_the_scratch_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306/test?ssl-mode=disabled", "x"),
            "mysql://root@127.0.0.1:3306/x?ssl-mode=disabled"
        );
        assert_eq!(with_database("mysql://h", "x"), "mysql://h/x");
    }
}
