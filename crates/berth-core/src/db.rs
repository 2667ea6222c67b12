//! Where a service keeps its records: an SQLite file of its own under its
//! directory of the data root (the default: embedded, nothing to set up), or a
//! schema of its own in a Postgres database (`state-url = "postgres://..."`),
//! say a managed one, or one beside services split across hosts. One Berth
//! per database: the schemas are named after the services only, and each
//! service is its records' only writer (the runtime caches them).
//!
//! Both are reached through sqlx's `Any` driver, and every store runs the same
//! statements on both: portable SQL with `$1`-style parameters (which SQLite
//! takes as well), `ON CONFLICT` rather than `INSERT OR IGNORE`. The schemas
//! differ only in types (`BLOB`/`BYTEA`), so each service has two migration
//! sets: `migrations/<service>/` for SQLite and `migrations/<service>/postgres/`.
//!
//! SQLite: WAL mode keeps readers off the writer's back, and a busy timeout rides
//! out short write contention. Postgres: a pool of connections, each with the
//! service's schema as its search path; a connection the server dropped
//! (restart, failover) is noticed before it is handed out and replaced, and
//! while the server cannot be reached requests fail at once as unavailable
//! (HTTP 503 at the API), then work again when it is back.

use std::path::Path;
use std::time::Duration;

pub use sqlx::AnyPool;
use sqlx::Executor as _;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

use crate::error::{Error, Result};

/// How long a request waits for a database connection before it fails as
/// unavailable: long enough for a busy pool, short enough that a client sees
/// a 503 rather than a hang while Postgres is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A service's two migration sets.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// `migrations/<service>/`.
    pub sqlite: &'static Migrator,
    /// `migrations/<service>/postgres/`.
    pub postgres: &'static Migrator,
}

/// Where the services keep their state (`state-url`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum State {
    /// An SQLite file per service under `<data-root>/<service>/`.
    #[default]
    Embedded,
    /// A Postgres database; each service keeps a schema of its own in it.
    Postgres(String),
}

impl State {
    /// Reads a `state-url`: empty or absent for the embedded default, else a
    /// `postgres://` or `postgresql://` URL.
    pub fn parse(url: Option<&str>) -> Result<Self> {
        match url.map(str::trim) {
            None | Some("") => Ok(State::Embedded),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                u.parse::<sqlx::postgres::PgConnectOptions>().map_err(|e| Error::invalid(format!("state-url: {e}")))?;
                Ok(State::Postgres(u.to_string()))
            }
            Some(u) => Err(Error::invalid(format!(
                "state-url {:?}: want a postgres:// URL, or none for the embedded SQLite files",
                redact(u)
            ))),
        }
    }

    /// What the logs may show: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            State::Embedded => "sqlite".into(),
            State::Postgres(url) => redact(url),
        }
    }

    /// Opens `service`'s database (creating it, or its schema, on first use)
    /// and brings it up to date with its migrations. `dir` is the service's
    /// own directory of the data root, where the embedded file lives.
    pub async fn open(&self, service: &str, dir: &Path, migrations: &Migrations) -> Result<AnyPool> {
        sqlx::any::install_default_drivers();
        // The service's own directory, whichever holds the records: nobody
        // else lists or reads it (layers, bundles, volumes' records are there).
        crate::perms::ensure_dir(dir, crate::perms::PRIVATE_DIR)?;
        match self {
            State::Embedded => open_sqlite(&dir.join(format!("{service}.db")), migrations.sqlite).await,
            State::Postgres(url) => open_postgres(url, &format!("berth_{service}"), migrations.postgres).await,
        }
    }
}

/// A URL with its password, if any, replaced by `xxxxx`.
fn redact(url: &str) -> String {
    // scheme://user:password@host...
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:xxxxx@{host}"),
        None => url.to_string(),
    }
}

/// Opens (creating if needed) the SQLite database at `path` and runs `migrator`.
pub async fn open_sqlite(path: &Path, migrator: &Migrator) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    // The service's own directory: nobody else lists or reads it.
    if let Some(parent) = path.parent() {
        crate::perms::ensure_dir(parent, crate::perms::PRIVATE_DIR)?;
    }
    let path_str = path.to_str().ok_or_else(|| Error::invalid(format!("database path {}", path.display())))?;
    // `mode=rwc`: create the file when missing. sqlx turns foreign keys on.
    // The path is percent-encoded where a URL would read it otherwise.
    let encoded = path_str.replace('%', "%25").replace('?', "%3F").replace('#', "%23");
    let url = format!("sqlite://{encoded}?mode=rwc");
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _| {
            Box::pin(async move {
                for pragma in
                    ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", "PRAGMA busy_timeout = 10000"]
                {
                    conn.execute(pragma).await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| Error::unavailable(format!("open database {}: {e}", path.display())))?;
    migrator.run(&pool).await?;
    // The database and its WAL hold every record (containers' environments among them).
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        crate::perms::set_mode_if_exists(Path::new(&file), crate::perms::PRIVATE_FILE)?;
    }
    Ok(pool)
}

/// Connects to the Postgres database at `url`, creates `schema` when missing,
/// and runs `migrator` in it.
pub async fn open_postgres(url: &str, schema: &str, migrator: &Migrator) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    if !schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(Error::invalid(format!("schema name {schema:?}")));
    }
    let search_path = format!("SET search_path TO {schema}");
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // Ping a pooled connection before use: one the server dropped is
        // replaced instead of failing the request it was handed to.
        .test_before_acquire(true)
        .idle_timeout(Duration::from_secs(300))
        .after_connect(move |conn, _| {
            let search_path = search_path.clone();
            Box::pin(async move { conn.execute(search_path.as_str()).await.map(drop) })
        })
        .connect_lazy(url)
        .map_err(|e| Error::invalid(format!("state-url {}: {e}", redact(url))))?;
    // Several services may start together on one database: creating the same
    // schema at once can still collide, so an error is only one if the
    // schema is not there afterwards.
    let created = sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&pool).await;
    if let Err(e) = created {
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1::BIGINT FROM pg_namespace WHERE nspname = $1")
            .bind(schema)
            .fetch_optional(&pool)
            .await?;
        if exists.is_none() {
            return Err(Error::unavailable(format!("create schema {schema} in {}: {e}", redact(url))));
        }
    }
    migrator.run(&pool).await?;
    Ok(pool)
}

/// Whether a database error means the server could not be reached or went
/// away, rather than that the statement was wrong: the request can be retried.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Postgres: class 08 (connection exception), 57P01-57P03 (shutdown,
        // crash shutdown, cannot connect now), 53300 (too many connections).
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls_are_checked_and_passwords_kept_out_of_logs() {
        assert_eq!(State::parse(None).ok(), Some(State::Embedded));
        assert_eq!(State::parse(Some(" ")).ok(), Some(State::Embedded));
        let pg = State::parse(Some("postgres://berth:s3cret@db:5432/berth")).expect("postgres");
        assert_eq!(pg.describe(), "postgres://berth:xxxxx@db:5432/berth");
        assert!(matches!(State::parse(Some("postgresql://db/berth")), Ok(State::Postgres(_))));
        let err = State::parse(Some("mysql://root:pw@db/x")).expect_err("mysql");
        assert!(err.to_string().contains("mysql://root:xxxxx@db/x"), "{err}");
        assert!(State::parse(Some("postgres://db:notaport/x")).is_err());
    }
}
