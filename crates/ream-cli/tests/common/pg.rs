//! A PostgreSQL database of its own for each test, dropped afterwards. The server is
//! the machine's (`REAM_TEST_PG`, default postgres://postgres@127.0.0.1:5432). Without a
//! server a plain `cargo test` skips loudly; under CI (`CI` set) it fails.

use std::process::Command;

pub struct PgDb {
    pub name: String,
    /// The database's URL, for `ream --source`.
    pub url: String,
    base: String,
    /// Made and dropped by the test kit; None once dropped.
    db: Option<ream_testkit::PgDatabase>,
}

impl PgDb {
    /// A fresh database (C collation, so text sorts bytewise as in SQLite), or `None`
    /// when no server is reachable outside CI.
    pub fn create(tag: &str) -> Option<PgDb> {
        let db = ream_testkit::PgDatabase::create(&format!("test_{tag}"))?;
        Some(PgDb { name: db.name.clone(), url: db.url.clone(), base: db.base().to_string(), db: Some(db) })
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    pub fn exec(&self, sql: &str) {
        self.client().batch_execute(sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    }

    /// `psql -c` on this database; its standard output.
    pub fn psql(&self, sql: &str) -> Vec<u8> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &self.url, "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Statements of ours (application_name ream) still running on the server.
    pub fn active_ream_queries(&self) -> Vec<String> {
        self.client()
            .query(
                "SELECT query FROM pg_stat_activity WHERE datname = $1 AND application_name = 'ream' AND state = 'active'",
                &[&self.name],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Terminate ream's sessions on this database but those in `killed` (a terminated
    /// backend lingers in pg_stat_activity while it exits); how many there were. Their
    /// pids join `killed`.
    #[allow(dead_code)]
    pub fn kill_new_ream_sessions(&self, killed: &mut Vec<i32>) -> usize {
        let rows = self
            .client()
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'ream' AND NOT pid = ANY($2)",
                &[&self.name, &*killed],
            )
            .unwrap();
        let mut n = 0;
        for r in rows {
            let pid: i32 = r.get(0);
            let done: bool = self.client().query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get(0);
            killed.push(pid);
            n += usize::from(done);
        }
        n
    }

    /// Terminate ream's sessions on this database; how many there were.
    pub fn kill_ream_sessions(&self) -> usize {
        self.client()
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'ream'",
                &[&self.name],
            )
            .unwrap()
            .iter()
            .filter(|r| r.get::<_, bool>(0))
            .count()
    }
}

impl PgDb {
    /// `invoices(id, tenant_id, amount)` with `rows` rows for each of tenants 1 and 2,
    /// under `ENABLE` and `FORCE ROW LEVEL SECURITY` with a policy on
    /// `current_setting('app.tenant')`; the URL of a login role that owns nothing, may
    /// only SELECT and lacks BYPASSRLS. The role is dropped with the database.
    pub fn tenant_invoices(&self, rows: u32) -> String {
        let role = self.reader();
        self.exec(&format!(
            "CREATE TABLE invoices (id int PRIMARY KEY, tenant_id int NOT NULL, amount numeric(12,2) NOT NULL);
             INSERT INTO invoices SELECT i, 1 + i % 2, (i % 1000) / 10.0 FROM generate_series(1, {n}) i;
             ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
             ALTER TABLE invoices FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant ON invoices USING (tenant_id = current_setting('app.tenant')::int);
             DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN NOBYPASSRLS;
             GRANT SELECT ON invoices TO {role};",
            n = 2 * rows
        ));
        let host = self.base.split_once('@').map_or("127.0.0.1:5432", |(_, h)| h);
        format!("postgres://{role}@{host}/{}", self.name)
    }

    fn reader(&self) -> String {
        format!("{}_reader", self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // The database first: the role has grants in it.
        drop(self.db.take());
        if let Ok(mut admin) = postgres::Client::connect(&format!("{}/postgres", self.base), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.reader()));
        }
    }
}
