//! The database: one `AnyPool` over SQLite (embedded default) or PostgreSQL, with the migrations of
//! `migrations/<backend>/` embedded in the binary. Queries use `$1`-style parameters, which both
//! backends accept; times are stored as Unix milliseconds (`BIGINT`).

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use include_dir::{include_dir, Dir};
use sqlx::any::AnyPoolOptions;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::AnyConnection;
use sqlx::{AnyPool, Executor};

pub use crate::config::Backend;

pub mod wake;

static MIGRATIONS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Setup(String),
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Bumped by the store's writes of this process, for what is kept in memory from its reads.
    pub generations: std::sync::Arc<Generations>,
}

/// Counters the store's writes bump, so that what a reader keeps in memory (the appointments'
/// availability) is dropped as soon as this process changed it; another process's writes are
/// seen when the kept copy ages out.
#[derive(Debug, Default)]
pub struct Generations {
    /// Places of appointment slots taken or freed.
    pub places: std::sync::atomic::AtomicU64,
}

impl Db {
    /// Opens a pool. For SQLite the file's folder is created; WAL, foreign keys and a busy
    /// timeout are set on each connection.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).map_err(|e| DbError::Setup(e.to_string()))?;
        if backend == Backend::Sqlite {
            if let Some(parent) = sqlite_file(url).and_then(|p| p.parent().map(Path::to_path_buf)) {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(&parent).map_err(|e| {
                        DbError::Setup(format!("creating {}: {e}", parent.display()))
                    })?;
                }
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { max_connections.min(8) } else { max_connections })
            .acquire_timeout(Duration::from_secs(5))
            // Kept open once `warm` has opened them; PostgreSQL's are recycled every half hour.
            .min_connections(if backend == Backend::Sqlite { max_connections.min(8) } else { max_connections })
            .after_connect(move |conn: &mut AnyConnection, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Db {
            pool,
            backend,
            generations: Default::default(),
        })
    }

    /// Opens every connection of the pool now (and keeps them open), so that the first requests
    /// after a start do not each wait for a connection to be made: on PostgreSQL a new connection
    /// is a new server process, and a click day's first second would otherwise make them all at once.
    pub async fn warm(&self) -> Result<(), DbError> {
        let mut held = Vec::new();
        for _ in 0..self.pool.options().get_max_connections() {
            let mut conn = self.pool.acquire().await?;
            conn.execute("SELECT 1").await?;
            held.push(conn);
        }
        Ok(())
    }

    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = Migrator::new(Embedded(self.backend)).await?;
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The database answers and carries every migration this binary knows.
    pub async fn ready(&self) -> Result<(), DbError> {
        let expected = embedded_migrations(self.backend)?
            .last()
            .map(|m| m.version)
            .unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await?;
        if applied.unwrap_or(0) < expected {
            return Err(DbError::Setup("migrations pending".into()));
        }
        Ok(())
    }
}

/// `$from, $from+1, …`: `n` numbered parameters, as both backends write them.
/// The names of the enti among `codes`, as (code, name), by name: what people read where the
/// database keeps a code.
pub async fn ente_names(db: &Db, codes: &[String]) -> Result<Vec<(String, String)>, sqlx::Error> {
    let all: Vec<(String, String)> = sqlx::query_as("SELECT code, name FROM enti ORDER BY name")
        .fetch_all(&db.pool)
        .await?;
    Ok(all
        .into_iter()
        .filter(|(code, _)| codes.contains(code))
        .collect())
}

pub fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, …, $cols), ($cols+1, …), …`: the parameters of `rows` rows of `cols` values, for a
/// multi-row `VALUES`.
pub fn value_rows(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(1 + r * cols, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

fn embedded_migrations(backend: Backend) -> Result<Vec<Migration>, DbError> {
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = MIGRATIONS
        .get_dir(folder)
        .ok_or_else(|| DbError::Setup(format!("no migrations for {folder}")))?;
    let mut migrations = Vec::new();
    for file in dir.files() {
        let name = file
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        let (version, description) = stem.split_once('_').ok_or_else(|| {
            DbError::Setup(format!("migration {name}: expected NNNN_description.sql"))
        })?;
        let version: i64 = version
            .parse()
            .map_err(|_| DbError::Setup(format!("migration {name}: bad version")))?;
        let sql = file
            .contents_utf8()
            .ok_or_else(|| DbError::Setup(format!("migration {name}: not UTF-8")))?;
        migrations.push(Migration::new(
            version,
            Cow::Owned(description.replace('_', " ")),
            MigrationType::Simple,
            Cow::Borrowed(sql),
            false,
        ));
    }
    migrations.sort_by_key(|m| m.version);
    Ok(migrations)
}

#[derive(Debug)]
struct Embedded(Backend);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures_core::future::BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { embedded_migrations(self.0).map_err(|e| Box::new(e) as BoxDynError) })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_are_numbered_row_after_row() {
        assert_eq!(super::placeholders(3, 2), "$3, $4");
        assert_eq!(super::value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::value_rows(0, 3), "");
    }
}
