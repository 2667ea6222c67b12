//! Opening a service's database. Each service owns one SQLite file under its own
//! directory of the data root (the Postgres backend plugs in behind each service's
//! store trait). WAL mode keeps readers off the writer's back; a busy timeout
//! rides out short write contention.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Error, Result};

/// Opens (creating if needed) the SQLite database at `path` and runs `migrator`.
pub async fn open_sqlite(path: &Path, migrator: &sqlx::migrate::Migrator) -> Result<SqlitePool> {
    // The service's own directory: nobody else lists or reads it.
    if let Some(parent) = path.parent() {
        crate::perms::ensure_dir(parent, crate::perms::PRIVATE_DIR)?;
    }
    let url = format!("sqlite://{}", path.display());
    let options = SqliteConnectOptions::from_str(&url)
        .map_err(|e| Error::invalid(format!("database path {}: {e}", path.display())))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
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
