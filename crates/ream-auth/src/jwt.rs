//! JWT verification: the key by `kid` from a JWKS file, or the HS256 secret; `iss`,
//! `aud`, `exp` and `nbf` checked with the configured leeway; RS256, ES256, EdDSA and
//! HS256 only, each with a key of its own family (an RSA public key is never taken as an
//! HMAC secret).

use std::path::Path;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::{short, Actor, AuthError, ConfigError, JwtConfig};

const ACCEPTED: [Algorithm; 4] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256];

/// A key and the one algorithm it verifies.
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

pub(crate) struct Verifier {
    /// The keys from the file and secret, then those fetched from `jwks_url`.
    keys: std::sync::RwLock<Vec<Key>>,
    fixed: usize,
    url: Option<String>,
    /// When `url` was last fetched: a flood of unknown kids fetches at most every 10 s.
    fetched: std::sync::Mutex<Option<std::time::Instant>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    roles_claim: String,
}

impl Verifier {
    pub(crate) fn new(c: &JwtConfig, base: &Path) -> Result<Verifier, ConfigError> {
        let mut keys = Vec::new();
        if let Some(path) = &c.jwks_file {
            let text = read(base, path, "jwt.jwks_file")?;
            keys.extend(parse_jwks(&text).map_err(|e| invalid("jwt.jwks_file", e))?);
        }
        if let Some(path) = &c.hs256_secret_file {
            let mut secret = read(base, path, "jwt.hs256_secret_file")?;
            while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                secret.pop();
            }
            if secret.len() < 32 {
                return Err(invalid("jwt.hs256_secret_file", "the secret must be at least 32 bytes".into()));
            }
            keys.push(Key { kid: None, alg: Some(Algorithm::HS256), key: DecodingKey::from_secret(&secret) });
        }
        if c.jwks_url.is_some() && !cfg!(feature = "jwks-url") {
            return Err(invalid("jwt.jwks_url", "this build cannot fetch keys (cargo feature `jwks-url`)".into()));
        }
        if keys.is_empty() && c.jwks_url.is_none() {
            return Err(invalid("jwt", "no keys: give jwks_file, jwks_url or hs256_secret_file".into()));
        }
        let verifier = Verifier {
            fixed: keys.len(),
            keys: std::sync::RwLock::new(keys),
            url: c.jwks_url.clone(),
            fetched: std::sync::Mutex::new(None),
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            leeway: c.leeway_secs,
            roles_claim: c.roles_claim.clone(),
        };
        // The provider may be down at startup: its keys are fetched again on demand.
        if let Err(e) = verifier.refresh() {
            eprintln!("ream: auth.jwt.jwks_url: {e} (fetched again when a token needs it)");
        }
        Ok(verifier)
    }

    /// Whether a token naming an unknown kid may find it by fetching `jwks_url` now.
    pub(crate) fn may_refresh(&self) -> bool {
        let last = *self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        self.url.is_some() && last.is_none_or(|t| t.elapsed() >= REFETCH_EVERY)
    }

    /// Fetch `jwks_url` (blocking, 5 s at most) and replace the keys it gave before.
    pub(crate) fn refresh(&self) -> Result<(), String> {
        let Some(url) = &self.url else { return Ok(()) };
        *self.fetched.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        let body = fetch(url)?;
        let fetched = parse_jwks(&body).map_err(|e| format!("{url}: {e}"))?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.truncate(self.fixed);
        keys.extend(fetched);
        Ok(())
    }

    pub(crate) fn verify(&self, token: &str) -> Result<Actor, AuthError> {
        let alg = algorithm(token)?;
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let candidates: Vec<&Key> = keys
            .iter()
            .filter(|k| k.alg.is_none_or(|a| a == alg))
            .filter(|k| kid.is_none() || k.kid.is_none() || k.kid == kid)
            .collect();
        if candidates.is_empty() {
            return Err(match kid {
                Some(kid) => AuthError::UnknownKey(short(&kid)),
                None => AuthError::BadSignature,
            });
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let mut last = AuthError::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &validation) {
                Ok(data) => return self.actor(data.claims),
                // Another key of the same kid-less set may verify it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm) => {
                    last = AuthError::BadSignature
                }
                Err(e) => return Err(refusal(e.kind())),
            }
        }
        Err(last)
    }

    fn actor(&self, claims: serde_json::Map<String, serde_json::Value>) -> Result<Actor, AuthError> {
        let sub = claims.get("sub").and_then(|s| s.as_str()).ok_or(AuthError::MissingClaim("sub".into()))?;
        let roles = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|r| r.as_str().map(String::from)).collect()
            }
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            _ => vec![],
        };
        Ok(Actor::new(sub, roles, claims.clone()))
    }
}

/// The token's `alg`, if it is one ream accepts; `none` and the rest are refused here,
/// before any key is tried.
fn algorithm(token: &str) -> Result<Algorithm, AuthError> {
    let malformed = || AuthError::Malformed("the token is not a JWT (header.payload.signature)".into());
    if token.split('.').count() != 3 {
        return Err(malformed());
    }
    let head = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head).map_err(|_| malformed())?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    let name = header.get("alg").and_then(|a| a.as_str()).ok_or_else(malformed)?;
    match name.parse::<Algorithm>() {
        Ok(a) if ACCEPTED.contains(&a) => Ok(a),
        _ => Err(AuthError::Algorithm(short(name))),
    }
}

/// GET `url`, 5 s and 1 MiB at most.
#[cfg(feature = "jwks-url")]
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(5))).build().into();
    (agent.get(url).call())
        .and_then(|mut r| r.body_mut().with_config().limit(1 << 20).read_to_vec())
        .map_err(|e| format!("fetching {url}: {e}"))
}

/// A build without the fetch never gets here: a `jwks_url` is refused when the verifier
/// is made.
#[cfg(not(feature = "jwks-url"))]
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    Err(format!("fetching {url}: this build cannot fetch keys"))
}

/// How often `jwks_url` may be fetched for an unknown kid.
const REFETCH_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The keys of a JWKS document.
fn parse_jwks(text: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("keys[{i}]: {e}"))?;
        let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
        keys.push(Key { kid: jwk.common.key_id.clone(), alg, key });
    }
    Ok(keys)
}

fn refusal(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => AuthError::BadSignature,
        _ => AuthError::Malformed("the token does not decode".into()),
    }
}

fn read(base: &Path, path: &Path, key: &'static str) -> Result<Vec<u8>, ConfigError> {
    let full = base.join(path);
    std::fs::read(&full).map_err(|source| ConfigError::Read { key, path: full.display().to_string(), source })
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(dir: &Path, roles_claim: &str) -> Verifier {
        std::fs::write(dir.join("s"), "0123456789abcdef0123456789abcdef\n").unwrap();
        let c = JwtConfig {
            jwks_file: None,
            jwks_url: None,
            hs256_secret_file: Some("s".into()),
            issuer: None,
            audience: None,
            leeway_secs: 60,
            roles_claim: roles_claim.into(),
        };
        Verifier::new(&c, dir).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[test]
    fn roles_come_from_a_list_or_a_space_separated_string_in_the_configured_claim() {
        let dir = tempfile::tempdir().unwrap();
        let exp = 4_000_000_000u64;
        let v = verifier(dir.path(), "scope");
        let a = v.verify(&token(serde_json::json!({ "sub": "a", "exp": exp, "scope": "finance  sales" }))).unwrap();
        assert_eq!(a.roles, ["finance", "sales"]);
        let b = v
            .verify(&token(serde_json::json!({ "sub": "b", "exp": exp, "scope": ["ops"], "roles": ["admin"] })))
            .unwrap();
        assert_eq!(b.roles, ["ops"], "only the configured claim counts");
        let e = v.verify(&token(serde_json::json!({ "exp": exp }))).unwrap_err();
        assert_eq!(e, AuthError::MissingClaim("sub".into()));
        let e = v.verify(&token(serde_json::json!({ "sub": "c" }))).unwrap_err();
        assert_eq!(e, AuthError::MissingClaim("exp".into()), "a token without exp is refused");
    }
}
