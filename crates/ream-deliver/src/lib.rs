//! ream-deliver: sends a finished run's output where a schedule says. A
//! [`TargetConfig`] is one entry of a schedule's `deliver` list, as its owner writes it;
//! [`TargetConfig::check`] parses it against the server's [`Policy`] (allowed mail
//! domains, store prefixes, the secrets directory) into a [`Target`], whose type holds
//! the proof. [`Senders::send`] makes one attempt: an email through SMTP (`lettre`) with
//! the output attached or linked, a POST signed with HMAC-SHA256, or a copy into an
//! object store. Retries and their backoff are the caller's (the server records each
//! attempt in its control store). Nothing here logs, and no error carries a password.
//!
//! ```
//! use ream_deliver::{Policy, TargetConfig};
//!
//! let policy = Policy { allowed_domains: vec!["example.com".into()], smtp: true, ..Policy::default() };
//! let target: TargetConfig = serde_json::from_str(
//!     r#"{"email": {"to": ["ap@example.com"], "subject": "Invoices {fire_date}"}}"#).unwrap();
//! assert!(target.check(&policy, &["region"], false).is_ok());
//! let elsewhere: TargetConfig = serde_json::from_str(r#"{"email": {"to": ["x@evil.test"]}}"#).unwrap();
//! let e = elsewhere.check(&policy, &[], false).unwrap_err().to_string();
//! assert!(e.contains("x@evil.test") && e.contains("example.com"), "{e}");
//! ```

mod email;
mod store;
mod webhook;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ream_core::template::Template;
use serde::{Deserialize, Serialize};

pub use crate::email::Mailer;
pub use crate::webhook::sign;

/// Why a target was refused or a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The target itself is wrong (HTTP 400 when the schedule is saved).
    #[error("{0}")]
    Target(String),
    #[error("email: {0}")]
    Email(String),
    #[error("webhook {url}: {reason}")]
    Webhook { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] ream_outputs::OutputError),
}

/// The largest output attached to a mail when its target does not say (10 MiB).
pub const ATTACH_MAX_BYTES: u64 = 10 << 20;

/// One entry of a schedule's `deliver` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetConfig {
    Email(EmailConfig),
    Webhook(WebhookConfig),
    Store(StoreConfig),
}

/// A mail of the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients. Bursting: empty sends each burst to its own recipient only.
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// A template of the run's facts and parameters (default `{report} {fire_date}`).
    #[serde(default = "default_subject")]
    pub subject: String,
    /// A template as `subject`; the link is added when the output is not attached and
    /// the body does not place `{link}` itself.
    #[serde(default = "default_body")]
    pub body: String,
    /// The largest output attached, as bytes or `"10MiB"` (default 10 MiB); a larger
    /// one is sent as a signed download link.
    #[serde(default)]
    pub attach_max_bytes: Option<serde_json::Value>,
}

fn default_subject() -> String {
    "{report} {fire_date}".into()
}

fn default_body() -> String {
    "{report}: {rows} rows, run {run} of {fire_time}.".into()
}

/// A signed POST describing the run, with a download link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://`.
    pub url: String,
    /// The HMAC-SHA256 key, a file inside the server's secrets directory (read at each
    /// send, so it can be rotated). None: the POST is not signed.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// A copy of the output in an object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `s3://BUCKET/KEY` or `file:///PATH`, a template (`s3://reports/{report}/{fire_date}.csv`)
    /// under one of the server's allowed prefixes.
    pub path: String,
}

/// What the server allows targets to do (its flags).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Mail domains recipients must be in (`--smtp-allowed-domains`); empty: any.
    pub allowed_domains: Vec<String>,
    /// Prefixes a store target's path must start with (`--delivery-store-prefix`);
    /// empty: no store targets.
    pub store_prefixes: Vec<String>,
    /// Where webhook secret files live (`--secrets-dir`); None: no signed webhooks.
    pub secrets_dir: Option<PathBuf>,
    /// Whether a mailer is configured (`--smtp-url`).
    pub smtp: bool,
}

/// A target, checked: its templates parse and name only known facts, its recipients and
/// paths are allowed.
#[derive(Debug, Clone)]
pub enum Target {
    Email(email::Email),
    Webhook(webhook::Webhook),
    Store(store::Store),
}

/// The names every template may use, besides the run's parameters.
pub const FACTS: &[&str] =
    &["report", "schedule", "run", "fire_date", "fire_time", "rows", "bytes", "format", "filename", "link"];

/// The names a burst run's templates may use besides: the burst's recipient and its
/// `burst.by` value.
pub const BURST_FACTS: &[&str] = &["to", "burst"];

/// `address` as a burst's recipient may be: an address in an allowed domain (bursts'
/// addresses come from the data, so they are checked as each is sent).
pub fn check_recipient(address: &str, policy: &Policy) -> Result<(), DeliverError> {
    email::recipient(address, policy, "to").map(|_| ())
}

impl TargetConfig {
    /// Parse the target against `policy`; `parameters` are the names its report's
    /// parameters add to [`FACTS`]; `bursts`: the run is a burst run (its email targets
    /// may leave `to` to the bursts, and its templates may use [`BURST_FACTS`]).
    pub fn check(&self, policy: &Policy, parameters: &[&str], bursts: bool) -> Result<Target, DeliverError> {
        let names: Vec<&str> = FACTS.iter().chain(if bursts { BURST_FACTS } else { &[] }).copied().collect();
        let known = |t: &str, key: &str| -> Result<Template, DeliverError> {
            let parsed = Template::parse(t).map_err(|e| DeliverError::Target(format!("{key}: {e}")))?;
            if let Some(bad) = parsed.names().find(|n| !names.contains(n) && !parameters.contains(n)) {
                return Err(DeliverError::Target(format!(
                    "{key}: unknown `{{{bad}}}`; use {} or a parameter of the report",
                    names.join(", ")
                )));
            }
            Ok(parsed)
        };
        match self {
            TargetConfig::Email(c) => email::Email::check(c, policy, known, bursts).map(Target::Email),
            TargetConfig::Webhook(c) => webhook::Webhook::check(c, policy).map(Target::Webhook),
            TargetConfig::Store(c) => store::Store::check(c, policy, known).map(Target::Store),
        }
    }
}

/// What a delivery sends: the run's output and the facts its templates read.
pub struct Delivery<'a> {
    /// Template values by name: [`FACTS`] and the run's parameters.
    pub facts: &'a BTreeMap<String, String>,
    /// Where the output is, and its name there.
    pub outputs: &'a ream_outputs::Outputs,
    pub output_name: &'a str,
    pub bytes: u64,
    /// The file name an attachment gets.
    pub filename: &'a str,
    pub content_type: &'a str,
    /// A link that downloads the output without credentials.
    pub link: &'a str,
    /// Unique to this run and target: the mail's Message-ID and the webhook's
    /// `X-Ream-Delivery`, so a receiver can tell a retry from a new delivery.
    pub key: &'a str,
    /// The run as the webhook's body describes it.
    pub summary: &'a serde_json::Value,
    /// A burst's own recipient: its mail goes to this address, and to the target's
    /// own `to` as Bcc (a customer sees only their address).
    pub burst_to: Option<&'a str>,
}

impl Delivery<'_> {
    fn fill(&self, t: &Template) -> String {
        t.render(|name| self.facts.get(name).map(|v| ream_core::Value::Str(v.as_str().into())))
    }
}

/// What sends: the mailer, an HTTP agent, the object-store endpoint.
pub struct Senders {
    pub mailer: Option<Mailer>,
    http: ureq::Agent,
    /// The S3-compatible endpoint of `s3://` store targets (credentials from `AWS_*`).
    pub s3_endpoint: Option<String>,
}

impl Senders {
    pub fn new(mailer: Option<Mailer>, s3_endpoint: Option<String>) -> Senders {
        let config =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).max_redirects(0).build();
        Senders { mailer, http: config.into(), s3_endpoint }
    }

    /// One attempt at delivering `d` to `target`.
    pub fn send(&self, target: &Target, d: &Delivery<'_>) -> Result<(), DeliverError> {
        match target {
            Target::Email(e) => {
                let mailer = self.mailer.as_ref().ok_or_else(|| DeliverError::Email("no --smtp-url".into()))?;
                e.send(mailer, d)
            }
            Target::Webhook(w) => w.send(&self.http, d),
            Target::Store(s) => s.send(self.s3_endpoint.as_deref(), d),
        }
    }
}
