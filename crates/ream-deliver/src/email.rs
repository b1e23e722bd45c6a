//! Mail: the output attached when it is small enough, else a signed download link.

use std::path::Path;
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use ream_core::template::Template;

use crate::{DeliverError, Delivery, EmailConfig, Policy, ATTACH_MAX_BYTES};

/// The SMTP relay every mail goes through (`--smtp-url`, `--smtp-from`).
pub struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mailer(from {})", self.from)
    }
}

impl Mailer {
    /// `url` as lettre reads it: `smtp://host:port` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS required), `smtps://user:pass@host` (TLS); `from` is the sender's address.
    /// `ca_file` (PEM) is a root the relay's certificate may chain to besides the
    /// system's (a relay with a private CA).
    pub fn new(url: &str, from: &str, ca_file: Option<&Path>) -> Result<Mailer, DeliverError> {
        let shown = ream_core::redact(url);
        let bad_url = |e: &dyn std::fmt::Display| DeliverError::Email(format!("--smtp-url `{shown}`: {e}"));
        let mut builder = SmtpTransport::from_url(url).map_err(|e| bad_url(&e))?;
        if let Some(ca_file) = ca_file {
            builder = builder.tls(tls_with_root(url, ca_file).map_err(|e| bad_url(&e))?);
        }
        let transport = builder.timeout(Some(Duration::from_secs(30))).build();
        let from = from.parse().map_err(|e| DeliverError::Email(format!("--smtp-from `{from}`: {e}")))?;
        Ok(Mailer { transport, from })
    }
}

/// The TLS mode `url` asks for (as lettre reads it), trusting the PEM certificates of
/// `ca_file` too.
fn tls_with_root(url: &str, ca_file: &Path) -> Result<Tls, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?.to_string();
    let pem = std::fs::read(ca_file).map_err(|e| format!("--smtp-ca-file {}: {e}", ca_file.display()))?;
    let root = Certificate::from_pem(&pem)
        .map_err(|e| format!("--smtp-ca-file {}: not a PEM certificate ({e})", ca_file.display()))?;
    let params = TlsParameters::builder(host).add_root_certificate(root).build().map_err(|e| e.to_string())?;
    let tls = parsed.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    match (parsed.scheme(), tls.as_deref()) {
        ("smtps", _) => Ok(Tls::Wrapper(params)),
        ("smtp", Some("required")) => Ok(Tls::Required(params)),
        ("smtp", Some("opportunistic")) => Ok(Tls::Opportunistic(params)),
        _ => Err("--smtp-ca-file is for a TLS relay: smtps://, or smtp:// with ?tls=required".into()),
    }
}

/// A checked email target.
#[derive(Debug, Clone)]
pub struct Email {
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    subject: Template,
    body: Template,
    /// Whether the body places the link itself.
    body_links: bool,
    attach_max: u64,
}

/// `address` as a mailbox in an allowed domain.
pub(crate) fn recipient(address: &str, policy: &Policy, key: &str) -> Result<Mailbox, DeliverError> {
    let bad = |why: String| DeliverError::Target(format!("email.{key}: `{address}` {why}"));
    let mailbox: Mailbox = address.parse().map_err(|e| bad(format!("is not an address: {e}")))?;
    let domain = mailbox.email.domain().to_ascii_lowercase();
    let allowed = policy.allowed_domains.is_empty()
        || policy.allowed_domains.iter().any(|d| {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            domain == d || domain.ends_with(&format!(".{d}"))
        });
    if !allowed {
        return Err(bad(format!("is outside the allowed domains ({})", policy.allowed_domains.join(", "))));
    }
    Ok(mailbox)
}

impl Email {
    pub(crate) fn check(
        c: &EmailConfig,
        policy: &Policy,
        known: impl Fn(&str, &str) -> Result<Template, DeliverError>,
        bursts: bool,
    ) -> Result<Email, DeliverError> {
        if !policy.smtp {
            return Err(DeliverError::Target("email: this server has no mailer (start it with --smtp-url)".into()));
        }
        if c.to.is_empty() && !bursts {
            return Err(DeliverError::Target(
                "email.to: name at least one recipient (only a burst report's mail may leave `to` to its bursts)"
                    .into(),
            ));
        }
        let list =
            |addrs: &[String], key| addrs.iter().map(|a| recipient(a, policy, key)).collect::<Result<Vec<_>, _>>();
        let attach_max = match &c.attach_max_bytes {
            None => ATTACH_MAX_BYTES,
            Some(serde_json::Value::Number(n)) => n.as_u64().ok_or_else(|| {
                DeliverError::Target(format!("email.attach_max_bytes: {n} is not a whole number of bytes"))
            })?,
            Some(serde_json::Value::String(s)) => ream_core::units::parse_bytes(s)
                .map_err(|e| DeliverError::Target(format!("email.attach_max_bytes: {e}")))?,
            Some(other) => {
                return Err(DeliverError::Target(format!(
                    "email.attach_max_bytes: {other} is neither bytes nor a size such as \"10MiB\""
                )))
            }
        };
        let body = known(&c.body, "email.body")?;
        let body_links = body.names().any(|n| n == "link");
        Ok(Email {
            to: list(&c.to, "to")?,
            cc: list(&c.cc, "cc")?,
            subject: known(&c.subject, "email.subject")?,
            body_links,
            body,
            attach_max,
        })
    }

    /// Whether the target names recipients of its own (else a burst's own only).
    pub fn has_recipients(&self) -> bool {
        !self.to.is_empty()
    }

    pub(crate) fn send(&self, mailer: &Mailer, d: &Delivery<'_>) -> Result<(), DeliverError> {
        let burst: Option<Mailbox> = (d.burst_to)
            .map(|a| a.parse().map_err(|e| DeliverError::Target(format!("the burst's recipient `{a}`: {e}"))))
            .transpose()?;
        if self.to.is_empty() && burst.is_none() {
            return Err(DeliverError::Target("no recipient".into()));
        }
        let mut b = Message::builder()
            .from(mailer.from.clone())
            .subject(d.fill(&self.subject))
            .message_id(Some(format!("<{}@ream>", d.key.replace(|c: char| !c.is_ascii_alphanumeric(), "."))));
        match burst {
            Some(to) => {
                b = b.to(to);
                for copy in &self.to {
                    b = b.bcc(copy.clone());
                }
            }
            None => {
                for to in &self.to {
                    b = b.to(to.clone());
                }
            }
        }
        for cc in &self.cc {
            b = b.cc(cc.clone());
        }
        let mut text = d.fill(&self.body);
        let attach = d.bytes <= self.attach_max;
        if !attach && !self.body_links {
            text.push_str(&format!(
                "\n\nThe output ({} bytes) is too large to attach; download it here:\n{}\n",
                d.bytes, d.link
            ));
        }
        let text = SinglePart::plain(text);
        let message = if attach {
            let content = d.outputs.read_all(d.output_name)?;
            let kind = ContentType::parse(d.content_type).unwrap_or(ContentType::TEXT_PLAIN);
            // Base64 always: lettre would send ASCII bytes as 7bit with their bare LFs,
            // which an SMTP server reads as one overlong line (aiosmtpd refused it,
            // `500 Line too long`), and the reader must get the bytes exactly.
            let body = Body::new_with_encoding(content, ContentTransferEncoding::Base64)
                .map_err(|_| DeliverError::Email("the attachment cannot be encoded".into()))?;
            let file = Attachment::new(d.filename.to_string()).body(body, kind);
            b.multipart(MultiPart::mixed().singlepart(text).singlepart(file))
        } else {
            b.singlepart(text)
        };
        let message = message.map_err(|e| DeliverError::Email(format!("building the message: {e}")))?;
        mailer.transport.send(&message).map_err(|e| DeliverError::Email(e.to_string()))?;
        Ok(())
    }
}
