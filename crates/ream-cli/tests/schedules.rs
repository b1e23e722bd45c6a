//! Schedules over real HTTP: fires made exactly once by two instances on one PostgreSQL
//! control database, mail through aiosmtpd (a real SMTP server writing a maildir, read
//! back with Python's `email`), webhooks to a receiver in the test, copies to a store,
//! and every fire run as its owner.

mod common;
use common::pg::PgDb;
use common::server::Server;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Datelike;
use serde_json::{json, Value as Json};

/// aiosmtpd's `Mailbox` handler on a loopback port: every mail it accepts is a file in
/// a maildir, with the envelope's recipients in `X-RcptTo`.
struct Smtp {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// A relay that requires STARTTLS, then AUTH as `ream` with this password.
    password: Option<&'static str>,
}

/// aiosmtpd as a submission relay: STARTTLS with `relay.pem` (signed by the test's own
/// CA), required before anything else, then AUTH (PLAIN or LOGIN) required.
const TLS_RELAY: &str = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult
port, maildir, cert, key, password = sys.argv[1:6]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
def check(server, session, envelope, mechanism, data):
    ok = data.login == b"ream" and data.password == password.encode()
    return AuthResult(success=ok, handled=False)
Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), tls_context=ctx,
           require_starttls=True, authenticator=check, auth_required=True,
           auth_require_tls=True).start()
while True:
    time.sleep(3600)
"#;

/// A loopback port nothing listens on (as of now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Smtp {
    /// None (skipped loudly) without aiosmtpd outside CI; under CI it must be there.
    fn start() -> Option<Smtp> {
        let probe = Command::new("python3").args(["-c", "import aiosmtpd"]).output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            assert!(std::env::var_os("CI").is_none(), "aiosmtpd is required in CI: {probe:?}");
            eprintln!("\n*** SKIPPED: python3 without aiosmtpd (pip install aiosmtpd) ***\n");
            return None;
        }
        let mut smtp = Smtp { child: None, port: free_port(), dir: tempfile::tempdir().unwrap(), password: None };
        smtp.up();
        Some(smtp)
    }

    /// A relay that requires STARTTLS and a password, its certificate for `localhost`
    /// signed by a CA of its own (`ca()`, made with openssl).
    fn start_tls(password: &'static str) -> Option<Smtp> {
        let mut smtp = Smtp::start()?;
        smtp.down();
        let d = smtp.dir.path();
        std::fs::write(d.join("relay.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        for args in [
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ream test CA"],
            ]
            .concat(),
            &[&["req"][..], &ec, &["-keyout", "relay.key", "-out", "relay.csr", "-subj", "/CN=localhost"]].concat(),
            &["x509", "-req", "-in", "relay.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
                .into_iter()
                .chain(["-out", "relay.pem", "-days", "2", "-extfile", "relay.ext"])
                .collect::<Vec<_>>(),
        ] {
            let out = Command::new("openssl").args(args).current_dir(d).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        smtp.password = Some(password);
        smtp.up();
        Some(smtp)
    }

    /// The CA the TLS relay's certificate chains to.
    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The maildir (aiosmtpd makes it, with its `tmp`, `new` and `cur`).
    fn maildir(&self) -> std::path::PathBuf {
        self.dir.path().join("maildir")
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Start the sink (again) on its port, and wait until it answers.
    fn up(&mut self) {
        let mut command = Command::new("python3");
        match self.password {
            None => command.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port)]).args([
                "-c",
                "aiosmtpd.handlers.Mailbox",
                self.maildir().to_str().unwrap(),
            ]),
            Some(password) => {
                let d = self.dir.path();
                std::fs::create_dir_all(self.maildir()).unwrap();
                command.args(["-c", TLS_RELAY, &self.port.to_string(), self.maildir().to_str().unwrap()]).args([
                    d.join("relay.pem").to_str().unwrap(),
                    d.join("relay.key").to_str().unwrap(),
                    password,
                ])
            }
        };
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        self.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(30), "aiosmtpd never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every mail so far: `{rcpt, to, cc, subject, message_id, text, attachments: [{filename, bytes}]}`.
    fn mails(&self) -> Vec<Json> {
        let script = r#"
import base64, email, json, os, sys
from email import policy
out = []
for sub in ("new", "cur"):
    d = os.path.join(sys.argv[1], sub)
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        m = email.message_from_bytes(open(os.path.join(d, name), "rb").read(), policy=policy.default)
        text, files = "", []
        for part in m.walk():
            if part.is_multipart():
                continue
            if part.get_filename():
                files.append({"filename": part.get_filename(),
                              "b64": base64.b64encode(part.get_payload(decode=True)).decode()})
            elif part.get_content_type() == "text/plain":
                text += part.get_content()
        rcpt = [a.strip() for a in str(m.get("X-RcptTo", "")).split(",") if a.strip()]
        out.append({"rcpt": rcpt, "to": str(m.get("To", "")), "cc": str(m.get("Cc", "")),
                    "subject": str(m.get("Subject", "")), "message_id": str(m.get("Message-ID", "")),
                    "text": text, "attachments": files})
print(json.dumps(out))
"#;
        let out = python(script, &[self.maildir().to_str().unwrap()]).expect("python reads the maildir");
        serde_json::from_str(&out).unwrap()
    }

    /// Wait until the sink holds `n` mails (a guard against a hang, not a timing check).
    fn wait_mails(&self, n: usize) -> Vec<Json> {
        let t = Instant::now();
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "{} of {n} mails arrived", mails.len());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.down();
    }
}

fn attachment(mail: &Json) -> Vec<u8> {
    let files = mail["attachments"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{mail}");
    base64::engine::general_purpose::STANDARD.decode(files[0]["b64"].as_str().unwrap()).unwrap()
}

fn create(s: &Server, body: &Json) -> String {
    let (status, headers, saved) = s.post("/schedules", &body.to_string());
    assert_eq!(status, 201, "{saved}");
    let id = saved["id"].as_str().unwrap().to_string();
    assert_eq!(headers.get("location").unwrap().to_str().unwrap(), format!("/schedules/{id}"));
    id
}

/// The runs schedule `id` has made, newest fire first, with their deliveries.
fn runs_of(s: &Server, id: &str) -> Vec<Json> {
    let (status, list) = s.json(&format!("/runs?schedule={id}"));
    assert_eq!(status, 200, "{list}");
    list["runs"].as_array().unwrap().clone()
}

/// Wait until every run of schedule `id` has ended and none of its deliveries is
/// pending or being sent; those runs.
fn settled(s: &Server, id: &str) -> Vec<Json> {
    let t = Instant::now();
    loop {
        let runs = runs_of(s, id);
        let open = |r: &Json| {
            !["succeeded", "failed", "cancelled"].contains(&r["status"].as_str().unwrap())
                || (r["status"] == "succeeded"
                    && r["deliveries"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|d| ["pending", "sending"].contains(&d["status"].as_str().unwrap())))
        };
        if !runs.iter().any(open) {
            return runs;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "the schedule's runs never settled: {runs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Turn schedule `id` off (PUT of its body with `enabled: false`).
fn disable(s: &Server, id: &str, body: &Json) {
    let mut off = body.clone();
    off["enabled"] = json!(false);
    let (status, saved) = s.put(&format!("/schedules/{id}"), &off.to_string());
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["next_fire"], Json::Null, "{saved}");
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(120), "{what} never happened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two instances on one PostgreSQL control database and one output directory, mailing
/// through `smtp`, with leases of `lease` seconds.
fn pair(reports: &Path, control: &str, outputs: &Path, smtp: &Smtp, lease: &str) -> (Server, Server) {
    let url = smtp.url();
    Server::pair(reports, control, outputs, lease, &["--smtp-url", &url, "--smtp-allowed-domains", "example.com"])
}

#[test]
fn every_fire_of_a_five_second_schedule_makes_one_run_and_one_mail_to_each_recipient_across_two_instances() {
    let Some(smtp) = Smtp::start() else { return };
    let Some((_db, reports)) = pg_report("sched_pair", 40, "numbers", 1000, "'x'") else { return };
    let Some(control) = PgDb::create("sched_pair_control") else { return };
    let outputs = tempfile::tempdir().unwrap();
    let (a, b) = pair(reports.path(), &control.url, outputs.path(), &smtp, "15");
    let body = json!({
        "report": "numbers", "format": "csv", "cron": "*/5 * * * * *", "timezone": "Europe/Berlin",
        "deliver": [{"email": {"to": ["ap@example.com", "cfo@example.com"], "subject": "Numbers {fire_time}: {rows} rows"}}],
    });
    let id = create(&a, &body);
    let (_, seen) = b.json(&format!("/schedules/{id}"));
    assert_eq!((seen["cron"].as_str(), seen["timezone"].as_str()), (Some("*/5 * * * * *"), Some("Europe/Berlin")));
    std::thread::sleep(Duration::from_secs(30));
    disable(&b, &id, &body);
    let runs = settled(&a, &id);

    // One run per fire time, each on a five-second mark, and the fires list them.
    let fire_times: Vec<&str> = runs.iter().map(|r| r["fire_time"].as_str().unwrap()).collect();
    assert!(runs.len() >= 4, "{} fires in 30 s: {fire_times:?}", runs.len());
    assert_eq!(fire_times.iter().collect::<BTreeSet<_>>().len(), runs.len(), "a fire made two runs: {fire_times:?}");
    for r in &runs {
        let second: u32 = r["fire_time"].as_str().unwrap()[17..19].parse().unwrap();
        assert_eq!(second % 5, 0, "{r}");
        assert_eq!(
            (r["status"].as_str(), r["rows"].as_u64(), r["schedule"].as_str()),
            (Some("succeeded"), Some(40), Some(id.as_str()))
        );
        assert_eq!(r["deliveries"][0]["status"], "sent", "{r}");
        assert_eq!(r["deliveries"][0]["attempts"], 1, "{r}");
    }
    let (_, schedule) = a.json(&format!("/schedules/{id}"));
    let fired: BTreeSet<&str> =
        schedule["fires"].as_array().unwrap().iter().map(|f| f["run"].as_str().unwrap()).collect();
    assert_eq!(fired, runs.iter().map(|r| r["id"].as_str().unwrap()).collect::<BTreeSet<_>>());

    // One mail per fire, to both recipients, with that fire's output attached.
    let mails = smtp.mails();
    assert_eq!(mails.len(), runs.len(), "{mails:?}");
    for r in &runs {
        let fire_time = r["fire_time"].as_str().unwrap();
        let local = chrono::DateTime::parse_from_rfc3339(fire_time).unwrap().with_timezone(&chrono_tz::Europe::Berlin);
        let subject = format!("Numbers {}: 40 rows", local.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let theirs: Vec<&Json> = mails.iter().filter(|m| m["subject"] == subject.as_str()).collect();
        assert_eq!(theirs.len(), 1, "fire {fire_time}: {theirs:?}");
        assert_eq!(theirs[0]["rcpt"], json!(["ap@example.com", "cfo@example.com"]));
        let (_, _, output) = b.get(&format!("/runs/{}/output", r["id"].as_str().unwrap()));
        assert_eq!(attachment(theirs[0]), output);
        assert_eq!(output.iter().filter(|&&c| c == b'\n').count(), 41);
    }
    let ids: BTreeSet<&str> = mails.iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), mails.len(), "Message-IDs repeat: {ids:?}");
}

#[test]
fn an_instance_killed_during_a_fires_run_leaves_it_to_the_other_and_the_mail_goes_once() {
    let Some(smtp) = Smtp::start() else { return };
    // About 4 s a run: 2000 rows at 2 ms.
    let Some((_db, reports)) = pg_report("sched_kill", 2_000, "slow", 50, "pg_sleep(0.002)::text") else { return };
    let Some(control) = PgDb::create("sched_kill_control") else { return };
    let outputs = tempfile::tempdir().unwrap();
    let (mut a, mut b) = pair(reports.path(), &control.url, outputs.path(), &smtp, "2");
    let body = json!({
        "report": "slow", "format": "csv", "cron": "*/10 * * * * *",
        "deliver": [{"email": {"to": ["ops@example.com"], "subject": "run {run}"}}],
    });
    let id = create(&a, &body);
    // The first fire's run, once it streams rows: kill -9 the instance running it.
    let mut first = Json::Null;
    wait_until("a fire's run streaming", || {
        first = runs_of(&b, &id).last().cloned().unwrap_or(Json::Null);
        first["rows"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(first["status"], "running", "{first}");
    let on_a = first["instance"].as_str().unwrap().contains(&format!("-{}-", a.child.id()));
    let (killed, survivor) = if on_a { (&mut a, &b) } else { (&mut b, &a) };
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let run_id = first["id"].as_str().unwrap().to_string();
    let end = survivor.finished(&run_id);
    assert_eq!(
        (end["status"].as_str(), end["attempt"].as_u64(), end["rows"].as_u64()),
        (Some("succeeded"), Some(2), Some(2000))
    );
    disable(survivor, &id, &body);
    let runs = settled(survivor, &id);

    // Every fire, the killed one too, mailed once.
    let mails = smtp.mails();
    let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mails {
        *per_run.entry(m["subject"].as_str().unwrap().trim_start_matches("run ").to_string()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = runs.iter().map(|r| (r["id"].as_str().unwrap().to_string(), 1)).collect();
    assert_eq!(per_run, expected, "mails per run");
    assert!(expected.contains_key(&run_id));
    let (_, _, output) = survivor.get(&format!("/runs/{run_id}/output"));
    let mail = mails.iter().find(|m| m["subject"] == format!("run {run_id}").as_str()).unwrap();
    assert_eq!(attachment(mail), output);
}

/// One server on its own data directory for the demo's reports, with `extra` flags.
fn demo_server(extra: &[&str]) -> Server {
    let demo = demo(500);
    let reports = demo.join("reports");
    Server::start(&reports, extra)
}

const INVOICES: &str =
    r#"{"report": "invoice_export", "format": "csv", "parameters": {"status": ["paid", "open"]}, "cron": "0 6 1 1 *"}"#;

/// A schedule of the demo's invoice export (fired by hand) with these targets.
fn invoices_with(deliver: Json) -> Json {
    let mut body: Json = serde_json::from_str(INVOICES).unwrap();
    body["deliver"] = deliver;
    body
}

/// Fire schedule `id` now; its run once its deliveries have settled.
fn fire_now(s: &Server, id: &str) -> Json {
    let (status, _, run) = s.post(&format!("/schedules/{id}/run"), "");
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["schedule"], id);
    let run_id = run["id"].as_str().unwrap();
    settled(s, id).into_iter().find(|r| r["id"] == run_id).unwrap()
}

#[test]
fn an_output_over_attach_max_bytes_arrives_as_a_link_that_downloads_the_same_bytes() {
    let Some(smtp) = Smtp::start() else { return };
    let s = demo_server(&["--smtp-url", &smtp.url()]);
    let deliver = json!([
        {"email": {"to": ["small@example.com"], "cc": ["audit@example.com"], "subject": "attached: {status}",
                   "body": "{rows} invoices of {report} ({format}, {bytes} bytes)"}},
        {"email": {"to": ["big@example.com"], "subject": "linked", "attach_max_bytes": 1000}},
    ]);
    let id = create(&s, &invoices_with(deliver));
    let run = fire_now(&s, &id);
    assert_eq!(run["status"], "succeeded", "{run}");
    let (_, _, output) = s.get(&format!("/runs/{}/output", run["id"].as_str().unwrap()));
    assert!(output.len() > 1000, "{} bytes", output.len());
    let mails = smtp.wait_mails(2);
    // The subject takes a list parameter, the body the run's facts; the mail reaches cc too.
    let attached = mails.iter().find(|m| m["subject"] == "attached: paid, open").unwrap_or_else(|| panic!("{mails:?}"));
    assert_eq!(attached["rcpt"], json!(["small@example.com", "audit@example.com"]), "{attached}");
    assert_eq!(
        (attached["to"].as_str(), attached["cc"].as_str()),
        (Some("small@example.com"), Some("audit@example.com"))
    );
    let rows = run["rows"].as_u64().unwrap();
    let facts = format!("{rows} invoices of invoice_export (csv, {} bytes)", output.len());
    assert!(attached["text"].as_str().unwrap().contains(&facts), "{}: {facts}", attached["text"]);
    assert_eq!(
        attached["attachments"][0]["filename"],
        format!("invoice_export-{}.csv", &run["fire_time"].as_str().unwrap()[..10])
    );
    assert_eq!(attachment(attached), output);
    let linked = mails.iter().find(|m| m["subject"] == "linked").unwrap();
    assert_eq!(linked["attachments"], json!([]), "{linked}");
    let text = linked["text"].as_str().unwrap();
    let link = text.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no link: {text}"));
    let path = link.trim_start_matches(&format!("http://{}", s.addr));
    assert!(text.contains(&format!("({} bytes)", output.len())), "{text}");
    let (status, _, downloaded) = s.get(path);
    assert_eq!(status, 200);
    assert_eq!(downloaded, output);
}

#[test]
fn a_delivery_is_retried_without_running_the_query_again_and_fails_after_its_last_attempt() {
    let Some(mut smtp) = Smtp::start() else { return };
    smtp.down();
    let s = demo_server(&["--smtp-url", &smtp.url(), "--delivery-attempts", "3", "--delivery-backoff", "1s"]);
    let id = create(&s, &invoices_with(json!([{"email": {"to": ["ap@example.com"]}}])));

    // The sink is down at the first attempt and up for the second: sent, once.
    let (status, _, run) = s.post(&format!("/schedules/{id}/run"), "");
    assert_eq!(status, 202, "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();
    let mut seen = Json::Null;
    wait_until("a failed first attempt", || {
        seen = runs_of(&s, &id)[0].clone();
        seen["deliveries"][0]["attempts"] == 1 && seen["deliveries"][0]["status"] == "pending"
    });
    assert!(seen["deliveries"][0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{seen}");
    smtp.up();
    let run = settled(&s, &id).into_iter().find(|r| r["id"] == run_id.as_str()).unwrap();
    assert_eq!(run["deliveries"][0]["status"], "sent", "{run}");
    assert_eq!(run["deliveries"][0]["attempts"], 2, "{run}");
    assert_eq!(smtp.wait_mails(1).len(), 1);

    // Down for good: three attempts, then failed; the run itself succeeded, once.
    smtp.down();
    let run = fire_now(&s, &id);
    assert_eq!((run["status"].as_str(), run["attempt"].as_u64()), (Some("succeeded"), Some(1)), "{run}");
    let d = &run["deliveries"][0];
    assert_eq!((d["status"].as_str(), d["attempts"].as_u64()), (Some("failed"), Some(3)), "{run}");
    assert!(d["error"].as_str().is_some_and(|e| !e.is_empty()), "{run}");
    assert_eq!(runs_of(&s, &id).len(), 2, "a retry ran the query again");
    assert_eq!(smtp.mails().len(), 1);

    // A relay's password never shows in a delivery's error.
    let url = format!("smtp://mailer:hunter2@127.0.0.1:{}", smtp.port);
    let s = demo_server(&["--smtp-url", &url, "--delivery-attempts", "1"]);
    let id = create(&s, &invoices_with(json!([{"email": {"to": ["ap@example.com"]}}])));
    let run = fire_now(&s, &id);
    assert_eq!(run["deliveries"][0]["status"], "failed", "{run}");
    assert!(!run.to_string().contains("hunter2"), "the SMTP password leaked: {run}");
}

#[test]
fn a_relay_with_starttls_a_private_ca_and_a_password_gets_the_mail_and_a_wrong_one_gets_none() {
    let Some(relay) = Smtp::start_tls("s3cret-relay-pw") else { return };
    let ca = relay.ca();
    let ca = ca.to_str().unwrap();
    let deliver = json!([{"email": {"to": ["ap@example.com"], "subject": "over TLS"}}]);
    let url = |password: &str| format!("smtp://ream:{password}@localhost:{}?tls=required", relay.port);
    let once = |args: &[&str]| {
        let s = demo_server(&[&["--delivery-attempts", "1"], args].concat());
        let id = create(&s, &invoices_with(deliver.clone()));
        let run = fire_now(&s, &id);
        assert_eq!(run["status"], "succeeded", "{run}");
        run["deliveries"][0].clone()
    };

    // STARTTLS to a certificate that chains to --smtp-ca-file, then AUTH: delivered.
    let d = once(&["--smtp-url", &url("s3cret-relay-pw"), "--smtp-ca-file", ca]);
    assert_eq!((d["status"].as_str(), d["attempts"].as_u64()), (Some("sent"), Some(1)), "{d}");
    let mails = relay.wait_mails(1);
    assert_eq!((mails[0]["subject"].as_str(), mails[0]["to"].as_str()), (Some("over TLS"), Some("ap@example.com")));

    // Without the CA the certificate is not trusted; with a wrong password AUTH fails.
    // Neither sends, and neither error shows the password.
    for (args, why) in [
        (vec!["--smtp-url".to_string(), url("s3cret-relay-pw")], "certificate"),
        (vec!["--smtp-url".to_string(), url("wrong-pw"), "--smtp-ca-file".into(), ca.into()], "auth"),
    ] {
        let d = once(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(d["status"], "failed", "{d}");
        let error = d["error"].as_str().unwrap().to_lowercase();
        assert!(error.contains(why), "{why}: {error}");
        assert!(!error.contains("s3cret-relay-pw") && !error.contains("wrong-pw"), "a password leaked: {error}");
    }
    assert_eq!(relay.mails().len(), 1);

    // A plain relay under ?tls=required gets nothing: no STARTTLS, no mail.
    let Some(plain) = Smtp::start() else { return };
    let plain_url = format!("smtp://ream:s3cret-relay-pw@localhost:{}?tls=required", plain.port);
    let d = once(&["--smtp-url", &plain_url]);
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(plain.mails().len(), 0);

    // --smtp-ca-file for a relay without TLS is refused at start, naming it.
    // It leaves nothing behind: no data directory in the working directory.
    let reports = demo(500).join("reports");
    let cwd = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_ream"))
        .current_dir(cwd.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--reports", reports.to_str().unwrap()])
        .args(["--smtp-url", "smtp://localhost:25", "--smtp-ca-file", ca])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = serve.kill();
            panic!("ream serve started with --smtp-ca-file and a plain relay");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    serve.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--smtp-ca-file is for a TLS relay"), "{stderr}");
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "a refused start left files");
}

/// The POSTs a receiver got: headers (lowercased names) and body.
type Posts = Arc<Mutex<Vec<(BTreeMap<String, String>, Vec<u8>)>>>;

/// A webhook receiver: every POST it gets, answered 200.
fn receiver() -> (String, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/ream", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = BTreeMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((k, v)) = line.trim_end().split_once(':') else { break };
                headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
            }
            let mut body = vec![0; headers.get("content-length").map_or(0, |n| n.parse().unwrap())];
            reader.read_exact(&mut body).unwrap();
            seen.lock().unwrap().push((headers, body));
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn a_webhook_gets_the_run_signed_with_hmac_sha256_and_a_store_target_gets_a_copy() {
    let secrets = tempfile::tempdir().unwrap();
    let key = "a webhook secret shared with the receiver";
    write(secrets.path(), "hook.key", key);
    let exports = tempfile::tempdir().unwrap();
    let prefix = format!("file://{}/", exports.path().display());
    let s = demo_server(&["--secrets-dir", secrets.path().to_str().unwrap(), "--delivery-store-prefix", &prefix]);
    let (url, got) = receiver();
    let deliver = json!([
        {"webhook": {"url": url, "secret_file": secrets.path().join("hook.key")}},
        {"store": {"path": format!("{prefix}{{report}}/{{fire_date}}-{{status}}.csv")}},
    ]);
    let id = create(&s, &invoices_with(deliver));
    let run = fire_now(&s, &id);
    assert_eq!(
        run["deliveries"],
        json!([
            {"target": run["deliveries"][0]["target"], "status": "sent", "attempts": 1, "error": null},
            {"target": run["deliveries"][1]["target"], "status": "sent", "attempts": 1, "error": null},
        ])
    );
    let run_id = run["id"].as_str().unwrap();
    let (_, _, output) = s.get(&format!("/runs/{run_id}/output"));

    let posts = got.lock().unwrap().clone();
    assert_eq!(posts.len(), 1);
    let (headers, body) = &posts[0];
    assert_eq!(headers["x-ream-delivery"], format!("{run_id}.0"));
    // Python's hmac is the oracle of the signature.
    let check = "import hashlib, hmac, sys; print('sha256=' + hmac.new(sys.argv[1].encode(), open(sys.argv[2], 'rb').read(), hashlib.sha256).hexdigest())";
    let posted = write(secrets.path(), "posted.json", std::str::from_utf8(body).unwrap());
    if let Some(expected) = python(check, &[key, posted.to_str().unwrap()]) {
        assert_eq!(headers["x-ream-signature"], expected.trim());
    }
    let event: Json = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (event["event"].as_str(), event["run"].as_str(), event["schedule"].as_str()),
        (Some("run.succeeded"), Some(run_id), Some(id.as_str()))
    );
    assert_eq!((event["rows"].clone(), event["bytes"].as_u64()), (run["rows"].clone(), Some(output.len() as u64)));
    let link = event["link"].as_str().unwrap().trim_start_matches(&format!("http://{}", s.addr));
    assert_eq!(s.get(link).2, output);

    // The store copy: the path template filled from the fire and its parameters.
    let copy = exports
        .path()
        .join("invoice_export")
        .join(format!("{}-paid, open.csv", &run["fire_time"].as_str().unwrap()[..10]));
    assert_eq!(std::fs::read(&copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display())), output);
    assert_eq!(files_in(&exports.path().join("invoice_export")).len(), 1, "a temporary was left");
}

#[test]
fn a_schedule_runs_as_its_owner_with_their_rows_only_and_fails_with_403_once_they_lose_the_role() {
    let Some(db) = PgDb::create("sched_owner") else { return };
    let reader = db.tenant_invoices(30);
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let spec = |roles: &str| {
        format!(
            "report: ledger\naccess: {{ roles: [{roles}] }}\nsource:\n  url: {reader}\n  table: invoices\n  key: [id]\n  \
             session: {{ app.tenant: \"{{actor.tenant}}\" }}\n"
        )
    };
    write(&reports, "ledger.yaml", &spec("finance"));
    let (toml, t) = api_tokens(&[("alice", &["finance"], 1), ("bob", &["finance"], 2), ("root", &["admin"], 0)]);
    let file = write(dir.path(), "ream.toml", &format!("reports = \"reports\"\n[auth]\n{toml}"));
    let mut s = Server::start_args(&["--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()], &[]);
    s.token = Some(t[0].clone());
    let body = json!({"report": "ledger", "format": "csv", "cron": "* * * * * *", "catch_up": "none"});
    let id = create(&s, &body);

    // Fired by the scheduler as alice: tenant 1's rows only, even when root looks.
    let mut first = Json::Null;
    wait_until("a fire's run", || {
        first = runs_of(&s, &id).last().cloned().unwrap_or(Json::Null);
        first["status"] == "succeeded"
    });
    assert_eq!(first["actor"], "alice", "{first}");
    let link = first["links"]["output"].as_str().unwrap().to_string();
    let (status, _, output) = s.get_with(&link, &[("authorization", "")]);
    assert_eq!(status, 200, "the signed link needs no bearer token");
    let text = String::from_utf8(output).unwrap();
    assert_eq!(text.lines().count(), 31, "{text}");
    assert!(text.lines().skip(1).all(|l| l.split(',').nth(1) == Some("1")), "a foreign row: {text}");
    // Bob does not see alice's schedule; root, an admin, does.
    s.token = Some(t[1].clone());
    assert_eq!(s.json(&format!("/schedules/{id}")).0, 404);
    assert_eq!(s.json("/schedules").1["schedules"], json!([]));
    s.token = Some(t[2].clone());
    assert_eq!(s.json(&format!("/schedules/{id}")).0, 200);

    // The report moves to another role: the next fires fail with a 403 reason, no run.
    write(&reports, "ledger.yaml", &spec("auditors"));
    let mut fires = Json::Null;
    wait_until("a fire refused with 403", || {
        fires = s.json(&format!("/schedules/{id}")).1["fires"].clone();
        fires[0]["error"].as_str().is_some_and(|e| e.starts_with("403"))
    });
    assert_eq!(fires[0]["run"], Json::Null, "{fires}");
    assert!(fires[0]["error"].as_str().unwrap().contains("ledger"), "{fires}");
    s.token = Some(t[0].clone());
    let (status, _, refused) = s.post(&format!("/schedules/{id}/run"), "");
    assert_eq!(status, 403, "{refused}");
    assert_eq!(s.delete(&format!("/schedules/{id}")).0, 204);
    assert_eq!(s.json(&format!("/schedules/{id}")).0, 404);
}

#[test]
fn a_bad_cron_time_zone_recipient_target_or_parameter_is_refused_with_400_naming_it() {
    let secrets = tempfile::tempdir().unwrap();
    let s = demo_server(&[
        "--smtp-url",
        "smtp://127.0.0.1:1",
        "--smtp-allowed-domains",
        "example.com",
        "--delivery-store-prefix",
        "s3://reports/",
        "--secrets-dir",
        secrets.path().to_str().unwrap(),
    ]);
    let mail = |to: &str| json!([{"email": {"to": [to]}}]);
    let with = |key: &str, value: Json| {
        let mut b = invoices_with(mail("ap@example.com"));
        b[key] = value;
        b
    };
    for (body, names) in [
        (with("cron", json!("61 * * * *")), "cron `61 * * * *`"),
        (with("cron", json!("* * *")), "cron `* * *`"),
        (with("timezone", json!("Europe/Atlantis")), "Europe/Atlantis"),
        (with("catch_up", json!("sometimes")), "sometimes"),
        (invoices_with(mail("boss@example.org")), "deliver[0].email.to: `boss@example.org`"),
        (invoices_with(mail("not an address")), "deliver[0].email.to: `not an address`"),
        (invoices_with(json!([{"email": {"to": ["ap@example.com"], "subject": "{nope}"}}])), "{nope}"),
        (invoices_with(json!([{"store": {"path": "s3://elsewhere/x.csv"}}])), "s3://reports/"),
        (invoices_with(json!([{"store": {"path": "s3://reports/{nope}.csv"}}])), "{nope}"),
        (invoices_with(json!([{"webhook": {"url": "ftp://x", "secret_file": "k"}}])), "ftp://x"),
        (invoices_with(json!([{"webhook": {"url": "http://x", "secret_file": "/etc/passwd"}}])), "/etc/passwd"),
        (invoices_with(json!([{"fax": {"to": "1"}}])), "fax"),
        (with("parameters", json!({"status": ["{fire_date + 1 fortnight}"]})), "fortnight"),
        (with("parameters", json!({"no_such": "1"})), "no_such"),
    ] {
        let (status, _, error) = s.post("/schedules", &body.to_string());
        assert_eq!(status, 400, "{body}: {error}");
        let message = error["error"]["message"].as_str().unwrap_or_else(|| panic!("{error}"));
        assert!(message.contains(names), "{body}: `{message}` does not name `{names}`");
    }
    let (status, _, error) = s.post("/schedules", &with("report", json!("no_such_report")).to_string());
    assert_eq!(status, 404, "{error}");
    assert_eq!(s.json("/schedules").1["schedules"], json!([]), "a refused schedule was saved");
    let (status, _) = s.json("/runs?schedule=nope&x=1");
    assert_eq!(status, 400);
}

#[test]
fn date_expressions_in_parameters_are_filled_from_the_fire_time_on_the_schedules_clock() {
    let s = demo_server(&[]);
    let body = json!({
        "report": "sales_by_region", "format": "csv", "cron": "0 6 1 * *", "timezone": "America/New_York",
        "parameters": {"start_date": "{month_start - 1 month}", "end_date": "{month_end - 1 month}"},
    });
    let id = create(&s, &body);
    let (_, saved) = s.json(&format!("/schedules/{id}"));
    let next = saved["next_fire"].as_str().unwrap();
    assert!(next.ends_with("T10:00:00Z") || next.ends_with("T11:00:00Z"), "06:00 in New York: {next}");
    let run = fire_now(&s, &id);
    assert_eq!(run["status"], "succeeded", "{run}");
    let fire = chrono::DateTime::parse_from_rfc3339(run["fire_time"].as_str().unwrap()).unwrap();
    let local = fire.with_timezone(&chrono_tz::America::New_York).date_naive();
    // The month before the fire's, on New York's calendar.
    let this_month = local.with_day(1).unwrap();
    let start = this_month.checked_sub_months(chrono::Months::new(1)).unwrap();
    let end = this_month.pred_opt().unwrap();
    assert_eq!(run["parameters"], json!({"start_date": start.to_string(), "end_date": end.to_string()}), "{run}");
}

#[test]
fn a_500_customer_burst_mails_each_customer_only_their_rows_with_totals_equal_to_sql() {
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    statements(dir.path(), 500, |c| c % 5 + 1, "  filename: \"statement-{customer_id}.json\"\n");
    let args = ["--smtp-url", &smtp.url(), "--smtp-allowed-domains", "customers.example,example.com"];
    let s = Server::start(dir.path(), &args);
    // Each burst to its customer, and a copy of every one to accounts (Bcc).
    let body = json!({
        "report": "statements", "format": "json", "cron": "0 6 1 1 *",
        "deliver": [{"email": {"to": ["ar@example.com"], "subject": "Statement {burst} ({rows} lines)"}}],
    });
    let id = create(&s, &body);
    let run = fire_now(&s, &id);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!((run["bursts_done"].as_u64(), run["bursts_total"].as_u64()), (Some(500), Some(500)), "{run}");
    assert_eq!(run["deliveries"][0]["status"], "sent", "{run}");

    let sql = sql_totals(dir.path());
    let mails = smtp.wait_mails(500);
    assert_eq!(mails.len(), 500);
    let mut seen = BTreeSet::new();
    for mail in &mails {
        let to = mail["to"].as_str().unwrap();
        let c: i64 =
            to.trim_start_matches("billing").split('@').next().unwrap().parse().unwrap_or_else(|_| panic!("{to}"));
        assert!(seen.insert(c), "customer {c} mailed twice");
        assert_eq!(mail["rcpt"], json!([format!("billing{c}@customers.example"), "ar@example.com"]), "{mail}");
        // The copy is Bcc: the customer sees only their own address.
        assert_eq!((mail["to"].as_str(), mail["cc"].as_str()), (Some(to), Some("")));
        assert_eq!(to, format!("billing{c}@customers.example"));
        let (lines, total) = sql[&c];
        assert_eq!(mail["subject"], format!("Statement {c} ({lines} lines)"));
        assert_eq!(mail["attachments"][0]["filename"], format!("statement-{c}.json"));
        let doc: Json = serde_json::from_slice(&attachment(mail)).unwrap();
        let rows = doc["rows"].as_array().unwrap();
        assert!(rows.iter().all(|r| r["customer_id"] == c), "customer {c}'s mail holds another's rows");
        assert_eq!((rows.len() as i64, doc["variables"]["total"].as_i64()), (lines, Some(total)), "customer {c}");
    }
    assert_eq!(seen.len(), 500);
    // The run's output is the manifest, each burst downloadable by its path.
    let (_, manifest) = s.json(&format!("/runs/{}/output", run["id"].as_str().unwrap()));
    assert_eq!(manifest["files"].as_array().unwrap().len(), 500);
    let (status, _, one) = s.get(&format!("/runs/{}/output/part/statement-7.json", run["id"].as_str().unwrap()));
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Json>(&one).unwrap()["title"], "Statement for Customer 7");
}

#[test]
fn mail_without_to_and_a_burst_run_need_a_burst_report() {
    let s = demo_server(&["--smtp-url", "smtp://127.0.0.1:1"]);
    let (status, _, error) = s.post("/runs", r#"{"report": "invoice_export", "format": "csv", "burst": true}"#);
    assert_eq!(status, 400, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("has no `burst:`"), "{error}");
    let (status, _, error) = s.post("/schedules", &invoices_with(json!([{"email": {"subject": "x"}}])).to_string());
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("deliver[0].email.to: name at least one recipient"),
        "{error}"
    );
}
