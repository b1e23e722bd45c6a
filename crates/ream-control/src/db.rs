//! The two control databases behind one small interface, so every statement of the
//! control store is written once: parameters are `$1…$n` (SQLite reads them as `?1…?n`),
//! columns are TEXT or BIGINT (`String` and `i64` on both sides).

use std::sync::Mutex;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

use crate::ControlError;

mod migrations {
    refinery::embed_migrations!("migrations");
}

/// A statement's parameter.
#[derive(Debug, Clone)]
pub(crate) enum P {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
}

impl From<&str> for P {
    fn from(s: &str) -> P {
        P::Text(s.to_string())
    }
}

impl From<String> for P {
    fn from(s: String) -> P {
        P::Text(s)
    }
}

impl From<Option<String>> for P {
    fn from(s: Option<String>) -> P {
        P::OptText(s)
    }
}

impl From<i64> for P {
    fn from(n: i64) -> P {
        P::Int(n)
    }
}

impl From<Option<i64>> for P {
    fn from(n: Option<i64>) -> P {
        P::OptInt(n)
    }
}

/// A result row of either database, read by column index.
pub(crate) trait Row {
    fn text(&self, i: usize) -> Result<String, String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, String>;
    fn int(&self, i: usize) -> Result<i64, String>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, String>;
}

impl Row for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<String, String> {
        self.get(i).map_err(|e| e.to_string())
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, String> {
        self.get(i).map_err(|e| e.to_string())
    }
    fn int(&self, i: usize) -> Result<i64, String> {
        self.get(i).map_err(|e| e.to_string())
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, String> {
        self.get(i).map_err(|e| e.to_string())
    }
}

impl Row for postgres::Row {
    fn text(&self, i: usize) -> Result<String, String> {
        self.try_get(i).map_err(|e| e.to_string())
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, String> {
        self.try_get(i).map_err(|e| e.to_string())
    }
    fn int(&self, i: usize) -> Result<i64, String> {
        self.try_get(i).map_err(|e| e.to_string())
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, String> {
        self.try_get(i).map_err(|e| e.to_string())
    }
}

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

pub(crate) enum Db {
    /// One connection: one instance owns the file.
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(PgPool),
}

/// The PostgreSQL pool, used and dropped off the async workers. postgres's sync client
/// blocks on a runtime of its own, which panics on a thread that drives async tasks: a
/// run ending in an async handler, or the server's last handle dropped in a task at
/// SIGTERM (seen as an abort, exit 134, instead of exit 0).
pub(crate) struct PgPool(Option<Pool>);

impl PgPool {
    fn get(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, String> {
        self.0.as_ref().ok_or("the pool is closed")?.get().map_err(|e| e.to_string())
    }
}

impl Drop for PgPool {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            off_runtime(move || drop(pool));
        }
    }
}

/// Run `f` here, or on a thread of its own when this thread drives async tasks.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|p| std::panic::resume_unwind(p))
}

impl Db {
    pub fn sqlite(path: &std::path::Path) -> Result<Db, ControlError> {
        let open = |e: &dyn std::fmt::Display| ControlError::Open {
            store: format!("sqlite:{}", path.display()),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open(&e))?;
        }
        let mut conn = rusqlite::Connection::open(path).map_err(|e| open(&e))?;
        // WAL: readers (a backup) never block the writer; a writer waits for a lock
        // instead of failing at once.
        conn.pragma_update(None, "journal_mode", "wal").map_err(|e| open(&e))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| open(&e))?;
        migrations::migrations::runner().run(&mut conn).map_err(|e| ControlError::Migrate(e.to_string()))?;
        Ok(Db::Sqlite(Mutex::new(conn)))
    }

    pub fn postgres(url: &str) -> Result<Db, ControlError> {
        off_runtime(|| Db::connect_postgres(url))
    }

    fn connect_postgres(url: &str) -> Result<Db, ControlError> {
        let open = |reason: String| ControlError::Open { store: ream_core::redact(url), reason };
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| open(e.to_string()))?;
        if config.get_application_name().is_none() {
            config.application_name("ream-control");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // One direct connection first: it fails with the real reason (the pool only says
        // it timed out), and it runs the migrations.
        let mut client = config.connect(NoTls).map_err(|e| open(db_message(&e)))?;
        migrations::migrations::runner().run(&mut client).map_err(|e| ControlError::Migrate(e.to_string()))?;
        drop(client);
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build_unchecked(PostgresConnectionManager::new(config, NoTls));
        Ok(Db::Postgres(PgPool(Some(pool))))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Run `sql`; the number of rows it changed.
    pub fn execute(&self, what: &'static str, sql: &str, params: &[P]) -> Result<u64, ControlError> {
        let fail = |reason: String| ControlError::Query { what, reason };
        match self {
            Db::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let n = conn
                    .execute(&sqlite_sql(sql), rusqlite::params_from_iter(params.iter().map(sqlite_value)))
                    .map_err(|e| fail(e.to_string()))?;
                Ok(n as u64)
            }
            Db::Postgres(pool) => off_runtime(|| {
                let mut client = pool.get().map_err(fail)?;
                client.execute(sql, &pg_params(params)).map_err(|e| fail(db_message(&e)))
            }),
        }
    }

    /// Run `sql` and read each row with `read`.
    pub fn query<T: Send>(
        &self,
        what: &'static str,
        sql: &str,
        params: &[P],
        read: impl Fn(&dyn Row) -> Result<T, String> + Sync,
    ) -> Result<Vec<T>, ControlError> {
        let fail = |reason: String| ControlError::Query { what, reason };
        match self {
            Db::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let mut stmt = conn.prepare_cached(&sqlite_sql(sql)).map_err(|e| fail(e.to_string()))?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params.iter().map(sqlite_value)))
                    .map_err(|e| fail(e.to_string()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(|e| fail(e.to_string()))? {
                    out.push(read(row).map_err(fail)?);
                }
                Ok(out)
            }
            Db::Postgres(pool) => off_runtime(|| {
                let mut client = pool.get().map_err(fail)?;
                let rows = client.query(sql, &pg_params(params)).map_err(|e| fail(db_message(&e)))?;
                rows.iter().map(|r| read(r).map_err(fail)).collect()
            }),
        }
    }

    /// Run `statements` in one transaction; on PostgreSQL under the transaction-scoped
    /// advisory lock `lock` first, so that what they read and write is decided by one
    /// instance at a time. Returns the rows of the last statement.
    pub fn serialized<T: Send>(
        &self,
        what: &'static str,
        lock: i64,
        statements: &[(&str, Vec<P>)],
        read: impl Fn(&dyn Row) -> Result<T, String> + Sync,
    ) -> Result<Vec<T>, ControlError> {
        Ok(self.serialized_if(what, lock, None, statements, read)?.unwrap_or_default())
    }

    /// [`Db::serialized`] after a `guard` statement, in the same transaction: when the
    /// guard changes no row, nothing is changed and the answer is `None`. (A condition
    /// repeated in each statement cannot tell this transaction's change from an equal
    /// one another made first.)
    pub fn serialized_if<T: Send>(
        &self,
        what: &'static str,
        lock: i64,
        guard: Option<(&str, Vec<P>)>,
        statements: &[(&str, Vec<P>)],
        read: impl Fn(&dyn Row) -> Result<T, String> + Sync,
    ) -> Result<Option<Vec<T>>, ControlError> {
        let fail = |reason: String| ControlError::Query { what, reason };
        let Some(((last, last_params), rest)) = statements.split_last() else { return Ok(Some(Vec::new())) };
        match self {
            Db::Sqlite(conn) => {
                // The mutex is the lock; a transaction keeps the statements one change.
                let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let tx = conn.transaction().map_err(|e| fail(e.to_string()))?;
                let execute = |sql: &str, params: &[P]| {
                    tx.execute(&sqlite_sql(sql), rusqlite::params_from_iter(params.iter().map(sqlite_value)))
                        .map_err(|e| fail(e.to_string()))
                };
                if let Some((sql, params)) = &guard {
                    if execute(sql, params)? == 0 {
                        return Ok(None);
                    }
                }
                for (sql, params) in rest {
                    execute(sql, params)?;
                }
                let out = {
                    let mut stmt = tx.prepare(&sqlite_sql(last)).map_err(|e| fail(e.to_string()))?;
                    let mut rows = stmt
                        .query(rusqlite::params_from_iter(last_params.iter().map(sqlite_value)))
                        .map_err(|e| fail(e.to_string()))?;
                    let mut out = Vec::new();
                    while let Some(row) = rows.next().map_err(|e| fail(e.to_string()))? {
                        out.push(read(row).map_err(fail)?);
                    }
                    out
                };
                tx.commit().map_err(|e| fail(e.to_string()))?;
                Ok(Some(out))
            }
            Db::Postgres(pool) => off_runtime(|| {
                let mut client = pool.get().map_err(fail)?;
                let mut tx = client.transaction().map_err(|e| fail(db_message(&e)))?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock]).map_err(|e| fail(db_message(&e)))?;
                if let Some((sql, params)) = &guard {
                    if tx.execute(*sql, &pg_params(params)).map_err(|e| fail(db_message(&e)))? == 0 {
                        return Ok(None);
                    }
                }
                for (sql, params) in rest {
                    tx.execute(*sql, &pg_params(params)).map_err(|e| fail(db_message(&e)))?;
                }
                let rows = tx.query(*last, &pg_params(last_params)).map_err(|e| fail(db_message(&e)))?;
                let out = rows.iter().map(|r| read(r).map_err(fail)).collect::<Result<Vec<T>, _>>()?;
                tx.commit().map_err(|e| fail(db_message(&e)))?;
                Ok(Some(out))
            }),
        }
    }
}

/// `$n` parameters as SQLite's numbered `?n` (a `$name` there is named, and numbered by
/// first appearance, which is not always `n`).
fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_value(p: &P) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match p {
        P::Text(s) => V::Text(s.clone()),
        P::OptText(Some(s)) => V::Text(s.clone()),
        P::Int(n) | P::OptInt(Some(n)) => V::Integer(*n),
        P::OptText(None) | P::OptInt(None) => V::Null,
    }
}

fn pg_params(params: &[P]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            P::Text(s) => s as &(dyn ToSql + Sync),
            P::OptText(s) => s as &(dyn ToSql + Sync),
            P::Int(n) => n as &(dyn ToSql + Sync),
            P::OptInt(n) => n as &(dyn ToSql + Sync),
        })
        .collect()
}

/// The server's own message, not the driver's "db error".
fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbered_parameters_become_sqlites_and_other_dollars_stay() {
        assert_eq!(super::sqlite_sql("a = $1 AND b = $12 AND c = '$x'"), "a = ?1 AND b = ?12 AND c = '$x'");
    }
}
