//! Helpers for tests that run the real `ream` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod my;
pub mod pg;
pub mod server;

pub fn ream() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ream"));
    // A `ream serve` a test starts without a data directory of its own keeps its control
    // store here, not in the crate's directory.
    cmd.env("REAM_DATA_DIR", std::env::temp_dir().join(format!("ream-test-data-{}", std::process::id())));
    cmd
}

pub struct Ran {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    pub fn text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("utf-8 output")
    }
}

pub fn run(args: &[&str]) -> Ran {
    run_in(None, args)
}

pub fn run_in(dir: Option<&Path>, args: &[&str]) -> Ran {
    run_in_env(dir, args, &[])
}

/// As [`run`], with `env` set for the command.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Ran {
    run_in_env(None, args, env)
}

fn run_in_env(dir: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut c = ream();
    c.args(args).envs(env.iter().copied());
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let Output { status, stdout, stderr } = c.output().expect("ream runs");
    Ran { code: status.code().unwrap_or(-1), stdout, stderr: String::from_utf8_lossy(&stderr).into_owned() }
}

/// Run a Python script with its arguments; its stdout. The readers people use (pyarrow,
/// DuckDB, openpyxl; `.ci/run` installs them): under CI a missing one fails the test, a
/// plain `cargo test` without them skips loudly (`None`).
pub fn python(script: &str, args: &[&str]) -> Option<String> {
    let probe = Command::new("python3").args(["-c", "import pyarrow, duckdb, openpyxl"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        if std::env::var_os("CI").is_some() {
            panic!("pyarrow, duckdb and openpyxl are required in CI: {probe:?}");
        }
        eprintln!(
            "\n*** SKIPPED: python3 without pyarrow, duckdb, openpyxl (pip install pyarrow duckdb openpyxl) ***\n"
        );
        return None;
    }
    let out = Command::new("python3").arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "python failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap())
}

/// `ream run --source SOURCE --table TABLE EXTRA…`: an ad-hoc export.
pub fn run_table(source: &str, table: &str, extra: &[&str]) -> Ran {
    run(&[&["run", "--source", source, "--table", table][..], extra].concat())
}

/// A demo database shared by the tests of one binary (made once, read-only afterwards).
pub fn demo(invoices: u64) -> PathBuf {
    static DIRS: OnceLock<std::sync::Mutex<std::collections::HashMap<u64, PathBuf>>> = OnceLock::new();
    let map = DIRS.get_or_init(Default::default);
    let mut map = map.lock().unwrap();
    map.entry(invoices)
        .or_insert_with(|| {
            let dir = std::env::temp_dir().join(format!("ream-test-demo-{}-{invoices}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let r = run(&["demo", "--dir", dir.to_str().unwrap(), "--rows", &invoices.to_string()]);
            assert_eq!(r.code, 0, "demo failed: {}", r.stderr);
            dir
        })
        .clone()
}

/// Files in a directory (to check that nothing, not even a temporary, was left).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Wait until `count` reaches `n` (writers in another thread); a guard against a hang,
/// not a timing check: two minutes is far beyond any healthy run.
pub fn wait_for(count: &std::sync::atomic::AtomicUsize, n: usize) {
    let start = std::time::Instant::now();
    while count.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(start.elapsed() < std::time::Duration::from_secs(120), "the writers made no progress in two minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Bytes on stdin through `tool -dc` (gzip, zstd): the decompressed bytes.
pub fn decompress(tool: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "{tool} -dc failed");
    out.stdout
}

/// Run a Node.js script that drives headless Chromium with playwright-core (given as
/// `require(process.env.PLAYWRIGHT_CORE)`, the page's URL as `process.argv[2]`); the JSON
/// it prints. None when the tools are not installed outside CI (in CI, .ci/run installs them).
pub fn playwright(script: &str, url: &str) -> Option<serde_json::Value> {
    let tools = std::env::var("REAM_CI_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&std::env::var("HOME").unwrap()).join(".cache/ream-ci"));
    let playwright = tools.join("node_modules/playwright-core");
    if !playwright.is_dir() || !Path::new("/usr/bin/chromium").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium and playwright-core (see .ci/run)");
        eprintln!("\n*** chromium or playwright-core is not installed: skipping a browser test ***\n");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "browser.cjs", script);
    let out = Command::new("node").arg(&path).arg(url).env("PLAYWRIGHT_CORE", &playwright).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some(
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout))),
    )
}

/// How every browser test launches Chromium.
pub const CHROMIUM: &str = r#"chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox',
    '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'] })"#;

/// Start `ream` with its standard output piped; returns once the first line is out (for
/// a run: its snapshot is open and rows flow), with a reader for the rest.
pub fn start(args: &[&str]) -> (std::process::Child, std::io::BufReader<std::process::ChildStdout>, String) {
    use std::io::BufRead;
    let mut child =
        ream().args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    (child, out, first)
}

/// The exit code and standard error of a started run, once it ends.
pub fn wait(mut child: std::process::Child) -> (i32, String) {
    use std::io::Read;
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

/// Ctrl-C (SIGINT) to a started run while its output is still read, so the signal alone
/// stops it: its exit code and standard error.
pub fn interrupt(child: std::process::Child, out: impl std::io::Read + Send + 'static) -> (i32, String) {
    let drain = std::thread::spawn(move || {
        let mut out = out;
        std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    });
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let ended = wait(child);
    drain.join().unwrap();
    ended
}

/// Read a run's standard output slowly (100 ms of pause every 10,000 lines, so
/// backpressure makes a run of 400,000 rows last 4 s or more), after its `first` line;
/// all of it once the run ends.
pub fn slow_reader(out: impl std::io::BufRead + Send + 'static, first: String) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = out;
        let (mut text, mut line, mut n) = (first, String::new(), 0u64);
        while out.read_line(&mut line).unwrap() > 0 {
            text.push_str(&line);
            line.clear();
            n += 1;
            if n.is_multiple_of(10_000) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        text
    })
}

/// Call `kill` every 300 ms until it has killed `times` times (each call counts once at
/// most) or a minute has passed; how many times it did.
pub fn kill_times(times: usize, mut kill: impl FnMut() -> usize) -> usize {
    let (mut kills, started) = (0, std::time::Instant::now());
    while kills < times && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(300));
        kills += kill().min(1);
    }
    kills
}

/// A PostgreSQL database with a table `t(id)` of `rows` rows, and a reports directory
/// holding one spec that reads it: `report: NAME`, batches of `batch` rows, and a column
/// `pad` computed by the database from `pad` (an SQL expression; it may sleep).
pub fn pg_report(tag: &str, rows: u32, name: &str, batch: usize, pad: &str) -> Option<(pg::PgDb, tempfile::TempDir)> {
    let db = pg::PgDb::create(tag)?;
    db.exec(&format!(
        "CREATE TABLE t (id int8 PRIMARY KEY); INSERT INTO t SELECT generate_series(1, {rows}); ANALYZE t;"
    ));
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!("{name}.yaml"),
        &format!(
            "report: {name}\nsource:\n  url: \"{}\"\n  table: t\n  key: [id]\n  batch_size: {batch}\n  columns:\n    id: id\n    pad: \"{pad}\"\n",
            db.url
        ),
    );
    Some((db, dir))
}

/// Wait until PostgreSQL runs (or no longer runs) a statement of ours.
pub fn wait_pg(db: &pg::PgDb, active: bool) -> std::time::Duration {
    let t = std::time::Instant::now();
    while db.active_ream_queries().is_empty() == active {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "PostgreSQL never got there (active: {active})");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    t.elapsed()
}

/// `[[auth.tokens]]` for each (sub, roles, tenant), and the tokens themselves.
pub fn api_tokens(entries: &[(&str, &[&str], u32)]) -> (String, Vec<String>) {
    let mut toml = String::new();
    let mut tokens = vec![];
    for (sub, roles, tenant) in entries {
        let out = ream().args(["token", "new"]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
        let (token, hash) = (field("token:"), field("sha256:"));
        assert_eq!(hash.len(), 64);
        let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
        toml.push_str(&format!(
            "[[auth.tokens]]\nsha256 = \"{hash}\"\nsub = \"{sub}\"\nroles = [{}]\nclaims = {{ tenant = {tenant} }}\n",
            roles.join(", ")
        ));
        tokens.push(token);
    }
    (toml, tokens)
}

/// `lines.sqlite` beside a statements spec: `customers` customers, customer c with
/// `lines_of(c)` lines of integer amounts, stored out of customer order.
pub fn statements(dir: &Path, customers: i64, lines_of: impl Fn(i64) -> i64, extra: &str) -> PathBuf {
    let conn = rusqlite::Connection::open(dir.join("lines.sqlite")).unwrap();
    conn.execute_batch(
        "CREATE TABLE lines (line_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, \
         customer_name TEXT NOT NULL, email TEXT NOT NULL, amount INTEGER NOT NULL);",
    )
    .unwrap();
    let mut rows = vec![];
    for c in 1..=customers {
        for l in 0..lines_of(c) {
            rows.push((c, (c * 7919 + l * 104_729) % 100_000 - 20_000));
        }
    }
    // Line ids that interleave the customers: the burst order is the read's, not the table's.
    let n = rows.len() as i64;
    let tx = conn.unchecked_transaction().unwrap();
    for (i, (c, amount)) in rows.iter().enumerate() {
        let id = (i as i64 * 7_919) % n.max(1) + 1 + (i as i64 / n.max(1)) * n;
        tx.execute(
            "INSERT INTO lines VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![id, c, format!("Customer {c}"), format!("billing{c}@customers.example"), amount],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    write(
        dir,
        "statements.yaml",
        &format!(
            "report: statements\ntitle: All statements\nsource:\n  url: \"sqlite:lines.sqlite\"\n  table: lines\n  key: [line_id]\n\
             burst:\n  by: customer_id\n  to: \"{{email}}\"\n  title: \"Statement for {{customer_name}}\"\n{extra}\
             variables:\n  total: {{sum: amount}}\n  lines: {{count: \"*\"}}\nsummary: \"Total due: {{total}}\"\n"
        ),
    )
}

/// Per customer, from SQL: (lines, sum of amounts).
pub fn sql_totals(dir: &Path) -> std::collections::BTreeMap<i64, (i64, i64)> {
    let conn = rusqlite::Connection::open(dir.join("lines.sqlite")).unwrap();
    let mut q = conn.prepare("SELECT customer_id, count(*), sum(amount) FROM lines GROUP BY customer_id").unwrap();
    q.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))).unwrap().map(Result::unwrap).collect()
}
