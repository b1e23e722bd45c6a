//! Signed download links: an HS256 token, under a key made at startup, that names one
//! run and expires. It is good for that run's output (and its parts) and nothing else,
//! and it outlives the bearer token of whoever asked for it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// What a link token says: its run, its purpose and its expiry.
#[derive(Serialize, Deserialize)]
struct LinkClaims {
    run: String,
    purpose: String,
    exp: u64,
}

const PURPOSE: &str = "download";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link has expired: ask for the run again for a fresh one")]
    Expired,
    #[error("the link is not valid for this run")]
    WrongRun,
    #[error("the link token does not verify")]
    Invalid,
}

/// Signs and checks download links.
pub struct Links {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl Links {
    pub fn new(ttl: Duration) -> Result<Links, ConfigError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| ConfigError::Invalid {
            key: "link_ttl_secs".into(),
            message: format!("no random key: {e}"),
        })?;
        Ok(Links { encoding: EncodingKey::from_secret(&secret), decoding: DecodingKey::from_secret(&secret), ttl })
    }

    /// Links signed with `secret`, which every instance of a cluster shares (the
    /// control store keeps it), so a link one instance signs downloads from any.
    pub fn with_secret(secret: &[u8], ttl: Duration) -> Links {
        Links { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), ttl }
    }

    /// The time a link lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for downloading `run`'s output, valid for the configured time.
    pub fn sign(&self, run: &str) -> String {
        self.sign_for(run, self.ttl)
    }

    /// A token for downloading `run`'s output, valid for `ttl` (a mailed link lasts
    /// longer than one a caller fetches and follows at once).
    pub fn sign_for(&self, run: &str, ttl: Duration) -> String {
        let exp = (SystemTime::now() + ttl).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = LinkClaims { run: run.to_string(), purpose: PURPOSE.into(), exp };
        // Encoding an HS256 token with an in-memory key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    /// Whether `token` is a live link for `run`.
    pub fn check(&self, token: &str, run: &str) -> Result<(), LinkError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<LinkClaims>(token, &self.decoding, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => LinkError::Expired,
            _ => LinkError::Invalid,
        })?;
        if data.claims.purpose != PURPOSE {
            return Err(LinkError::Invalid);
        }
        if data.claims.run != run {
            return Err(LinkError::WrongRun);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_its_own_run_only_and_expires() {
        let links = Links::new(Duration::from_secs(600)).unwrap();
        let t = links.sign("r1");
        assert_eq!(links.check(&t, "r1"), Ok(()));
        assert_eq!(links.check(&t, "r2"), Err(LinkError::WrongRun));
        assert_eq!(links.check("x.y.z", "r1"), Err(LinkError::Invalid));
        let other = Links::new(Duration::from_secs(600)).unwrap();
        assert_eq!(other.check(&t, "r1"), Err(LinkError::Invalid));
        let gone = Links::new(Duration::ZERO).unwrap();
        let t = gone.sign("r1");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(gone.check(&t, "r1"), Err(LinkError::Expired));
    }
}
