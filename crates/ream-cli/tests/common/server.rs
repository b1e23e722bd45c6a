//! `ream serve` started on a free loopback port, and a small HTTP client for it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::ream;

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub agent: ureq::Agent,
    pub _outputs: tempfile::TempDir,
    /// Sent as `Authorization: Bearer …` with every request of the helpers.
    pub token: Option<String>,
    /// Every line the server wrote to stderr after its address.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(reports: &Path, extra: &[&str]) -> Server {
        Server::start_env(reports, extra, &[])
    }

    pub fn start_env(reports: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["--listen", "127.0.0.1:0", "--reports", reports.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start_args(&args, env)
    }

    pub fn start_args(args: &[&str], env: &[(&str, &str)]) -> Server {
        // A data directory (control store and outputs) of its own, unless the test gives
        // one or stores of its own.
        let outputs = tempfile::tempdir().unwrap();
        let own = ["--data-dir", "--control", "--output-dir", "--output-store"].iter().any(|f| args.contains(f));
        let mut cmd = ream();
        cmd.arg("serve").args(args);
        if !own {
            cmd.arg("--data-dir").arg(outputs.path());
        }
        let mut child = cmd.envs(env.iter().copied()).stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the server printed its address").unwrap();
            if let Some(a) = line.strip_prefix("ream: listening on http://") {
                break a.to_string();
            }
        };
        // Keep reading so the server never blocks on a full stderr pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| kept.lock().unwrap().push(l)));
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Server { child, addr, agent, _outputs: outputs, token: None, log }
    }

    /// Two instances on one control database (`control`, a PostgreSQL URL) and one
    /// output directory, with leases of `lease` seconds and `extra` flags.
    pub fn pair(reports: &Path, control: &str, outputs: &Path, lease: &str, extra: &[&str]) -> (Server, Server) {
        let start = || {
            let mut args = vec!["--listen", "127.0.0.1:0", "--reports", reports.to_str().unwrap()];
            args.extend(["--control", control, "--output-dir", outputs.to_str().unwrap(), "--lease-secs", lease]);
            args.extend_from_slice(extra);
            Server::start_args(&args, &[])
        };
        (start(), start())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET: status, the response's headers, body.
    pub fn get(&self, path: &str) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
        let mut req = self.agent.get(self.url(path));
        // An Authorization given here wins over the server's default token.
        let given = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        if let (Some(t), false) = (&self.token, given) {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut r = req.call().unwrap();
        let body = r.body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap();
        (r.status().as_u16(), r.headers().clone(), body)
    }

    pub fn json(&self, path: &str) -> (u16, Json) {
        let (status, _, body) = self.get(path);
        (status, serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body))))
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, ureq::http::HeaderMap, Json) {
        self.send(self.agent.post(self.url(path)), body)
    }

    pub fn put(&self, path: &str, body: &str) -> (u16, Json) {
        let (status, _, json) = self.send(self.agent.put(self.url(path)), body);
        (status, json)
    }

    /// A JSON body sent with the server's default token.
    fn send(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithBody>,
        body: &str,
    ) -> (u16, ureq::http::HeaderMap, Json) {
        let mut req = req.header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut r = req.send(body).unwrap();
        let body = r.body_mut().read_to_vec().unwrap();
        (r.status().as_u16(), r.headers().clone(), serde_json::from_slice(&body).unwrap())
    }

    pub fn delete(&self, path: &str) -> (u16, Json) {
        let mut req = self.agent.delete(self.url(path));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut r = req.call().unwrap();
        let body = r.body_mut().read_to_vec().unwrap();
        // 204 has no body.
        (r.status().as_u16(), if body.is_empty() { Json::Null } else { serde_json::from_slice(&body).unwrap() })
    }

    /// Poll a run until `done` holds for it; its last state.
    pub fn wait_run(&self, id: &str, done: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, run) = self.json(&format!("/runs/{id}"));
            assert_eq!(status, 200, "{run}");
            if done(&run) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} never got there: {run}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn finished(&self, id: &str) -> Json {
        self.wait_run(id, |r| ["succeeded", "failed", "cancelled"].contains(&r["status"].as_str().unwrap()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
