//! Webhooks: a POST of the run's description, signed with HMAC-SHA256 when the target
//! names a secret. The receiver checks `X-Ream-Signature: sha256=<hex>` over the exact
//! body, and can tell a retry by `X-Ream-Delivery`.

use std::path::{Path, PathBuf};

use crate::{DeliverError, Delivery, Policy, WebhookConfig};

/// A checked webhook target.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    /// The secret file, resolved inside the secrets directory.
    secret: Option<PathBuf>,
}

/// `file` inside `dir` (no way out through `..` or a link), as it is now.
fn inside(dir: &Path, file: &Path) -> Result<PathBuf, String> {
    let dir = dir.canonicalize().map_err(|e| format!("the secrets directory {}: {e}", dir.display()))?;
    let path = dir.join(file).canonicalize().map_err(|e| format!("{}: {e}", file.display()))?;
    if !path.starts_with(&dir) {
        return Err(format!("{} is outside the secrets directory {}", file.display(), dir.display()));
    }
    Ok(path)
}

impl Webhook {
    pub(crate) fn check(c: &WebhookConfig, policy: &Policy) -> Result<Webhook, DeliverError> {
        let lower = c.url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(DeliverError::Target(format!(
                "webhook.url `{}`: use an http:// or https:// URL",
                ream_core::redact(&c.url)
            )));
        }
        let secret = match (&c.secret_file, &policy.secrets_dir) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(DeliverError::Target(
                    "webhook.secret_file: this server has no secrets directory (start it with --secrets-dir)".into(),
                ))
            }
            (Some(f), Some(dir)) => {
                Some(inside(dir, f).map_err(|e| DeliverError::Target(format!("webhook.secret_file: {e}")))?)
            }
        };
        Ok(Webhook { url: c.url.clone(), secret })
    }

    pub(crate) fn send(&self, http: &ureq::Agent, d: &Delivery<'_>) -> Result<(), DeliverError> {
        let fail = |reason: String| DeliverError::Webhook { url: ream_core::redact(&self.url), reason };
        let body = serde_json::to_vec(d.summary).map_err(|e| fail(e.to_string()))?;
        let mut req = http.post(&self.url).header("X-Ream-Delivery", d.key);
        if let Some(path) = &self.secret {
            // Read at each send: a rotated key is used from the next attempt on.
            let key = std::fs::read(path).map_err(|e| fail(format!("its secret file: {e}")))?;
            req = req.header("X-Ream-Signature", format!("sha256={}", sign(key.trim_ascii(), &body)));
        }
        match req.content_type("application/json").send(&body[..]) {
            Ok(_) => Ok(()),
            Err(ureq::Error::StatusCode(code)) => Err(fail(format!("answered {code}"))),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

/// The HMAC-SHA256 of `body` under `key`, in hex.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_the_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(super::sign(b"Jefe", b"what do ya want for nothing?"), want);
    }
}
