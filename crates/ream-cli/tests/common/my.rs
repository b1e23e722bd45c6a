//! A MariaDB/MySQL database of its own for each test, dropped afterwards. The server is
//! the machine's (`REAM_TEST_MYSQL_HOST`, `_PORT`, `_USER`; default root@127.0.0.1:3306,
//! no password), driven with the `mariadb` client. Without a server a plain `cargo test`
//! skips loudly; under CI (`CI` set) it fails.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct MyDb {
    pub name: String,
    /// The database's URL, for `ream --source`.
    pub url: String,
}

fn conn_args() -> Vec<String> {
    let host = std::env::var("REAM_TEST_MYSQL_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("REAM_TEST_MYSQL_PORT").unwrap_or_else(|_| "3306".into());
    let user = std::env::var("REAM_TEST_MYSQL_USER").unwrap_or_else(|_| "root".into());
    vec![format!("-h{host}"), format!("-P{port}"), format!("-u{user}")]
}

fn client() -> Command {
    let bin = if which("mariadb") { "mariadb" } else { "mysql" };
    let mut c = Command::new(bin);
    c.args(conn_args());
    c
}

fn which(bin: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().is_ok_and(|o| o.status.success())
}

impl MyDb {
    pub fn create(tag: &str) -> Option<MyDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let probe = client().args(["-e", "SELECT 1"]).output();
        match probe {
            Ok(o) if o.status.success() => {}
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var_os("CI").is_some() {
                    panic!("MariaDB/MySQL is required in CI: {why}");
                }
                eprintln!("\n*** SKIPPED: no MariaDB/MySQL server ({why}); set REAM_TEST_MYSQL_HOST to run the MySQL tests ***\n");
                return None;
            }
        }
        let name = format!("ream_test_{tag}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let host = std::env::var("REAM_TEST_MYSQL_HOST").unwrap_or_else(|_| "127.0.0.1".into());
        let port = std::env::var("REAM_TEST_MYSQL_PORT").unwrap_or_else(|_| "3306".into());
        let user = std::env::var("REAM_TEST_MYSQL_USER").unwrap_or_else(|_| "root".into());
        let db = MyDb { url: format!("mysql://{user}@{host}:{port}/{name}"), name };
        db.admin(&format!(
            "DROP DATABASE IF EXISTS {0}; CREATE DATABASE {0} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            db.name
        ));
        Some(db)
    }

    fn admin(&self, sql: &str) -> Vec<u8> {
        let out = client().args(["--batch", "-e", sql]).output().unwrap();
        assert!(out.status.success(), "mariadb failed: {}\n{sql}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Run SQL in this database; its `--batch` output (tab-separated, with a header).
    pub fn sql(&self, sql: &str) -> Vec<u8> {
        let out = client().args(["--batch", "-D", &self.name, "-e", sql]).output().unwrap();
        assert!(out.status.success(), "mariadb failed: {}\n{sql}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Load a CSV file with a header row into `table` (LOAD DATA LOCAL INFILE).
    pub fn load_csv(&self, table: &str, path: &std::path::Path) {
        let sql = format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE {table} FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' \
             LINES TERMINATED BY '\\n' IGNORE 1 LINES",
            path.display()
        );
        let out = client().args(["--local-infile=1", "-D", &self.name, "-e", &sql]).output().unwrap();
        assert!(out.status.success(), "mariadb failed: {}\n{sql}", String::from_utf8_lossy(&out.stderr));
    }

    fn ream_sessions(&self, only_running: bool) -> Vec<String> {
        let filter = if only_running { " AND command IN ('Execute', 'Query')" } else { "" };
        let out = self.admin(&format!(
            "SELECT id FROM information_schema.processlist WHERE db = '{}' AND id <> CONNECTION_ID(){filter}",
            self.name
        ));
        String::from_utf8_lossy(&out).lines().skip(1).map(String::from).collect()
    }

    /// Statements of ours still running on the server.
    pub fn active_queries(&self) -> Vec<String> {
        self.ream_sessions(true)
    }

    /// Kill every session on this database but ours; how many there were.
    pub fn kill_sessions(&self) -> usize {
        let ids = self.ream_sessions(false);
        for id in &ids {
            let _ = client().args(["-e", &format!("KILL {id}")]).output();
        }
        ids.len()
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = client().args(["-e", &format!("DROP DATABASE IF EXISTS {}", self.name)]).output();
    }
}
