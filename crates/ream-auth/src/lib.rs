//! ream-auth: who is calling. A bearer token (a JWT from an identity provider, or an API
//! token from the server's configuration) is verified and becomes an [`Actor`] with a
//! subject, roles and claims; every failure is an [`AuthError`] that says what was wrong
//! with the token, never what it held. Signed download links ([`Links`]) are short-lived
//! tokens good for one run's output only.
//!
//! ```
//! use ream_auth::{token, AuthConfig, Authenticator, TokenConfig};
//!
//! let (secret, hash) = token::new_token().unwrap();
//! let config = AuthConfig {
//!     tokens: vec![TokenConfig { sha256: hash, sub: "etl".into(), roles: vec!["finance".into()], claims: Default::default() }],
//!     ..AuthConfig::default()
//! };
//! let auth = Authenticator::new(&config, std::path::Path::new(".")).unwrap();
//! let actor = auth.authenticate(Some(&format!("Bearer {secret}"))).unwrap();
//! assert_eq!((actor.sub.as_str(), actor.has_role("finance")), ("etl", true));
//! assert!(auth.authenticate(Some("Bearer nope")).is_err());
//! ```

mod config;
mod jwt;
mod links;
pub mod token;

use std::collections::HashMap;
use std::path::Path;

pub use ream_core::Actor;

pub use crate::config::{AuthConfig, JwtConfig, TokenConfig};
pub use crate::links::{LinkError, Links};

/// Why a request's credentials were refused (HTTP 401). The message names the problem
/// and never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's issuer is not the one configured")]
    WrongIssuer,
    #[error("the token's audience is not the one configured")]
    WrongAudience,
    #[error("the token's algorithm {0} is not accepted (RS256, ES256, EdDSA, HS256)")]
    Algorithm(String),
    #[error("no key with the token's kid `{0}`")]
    UnknownKey(String),
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("unknown API token")]
    UnknownToken,
}

/// A configuration that cannot work: a key file that cannot be read, a bad hash.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("auth.{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.{key}: {message}")]
    Invalid { key: String, message: String },
}

/// Verifies bearer tokens against `[auth]`.
pub struct Authenticator {
    jwt: Option<jwt::Verifier>,
    /// API tokens by their SHA-256.
    tokens: HashMap<[u8; 32], Actor>,
    admin_role: String,
    links: Links,
}

impl Authenticator {
    /// Read the keys `config` names (paths relative to `base`) and check every token hash.
    pub fn new(config: &AuthConfig, base: &Path) -> Result<Authenticator, ConfigError> {
        let jwt = config.jwt.as_ref().map(|j| jwt::Verifier::new(j, base)).transpose()?;
        let mut tokens = HashMap::new();
        for (i, t) in config.tokens.iter().enumerate() {
            let hash = token::parse_hash(&t.sha256).ok_or_else(|| ConfigError::Invalid {
                key: format!("tokens[{i}].sha256"),
                message: "expected 64 hex digits (the token's SHA-256, as `ream token new` prints it)".into(),
            })?;
            tokens.insert(hash, Actor::new(&t.sub, t.roles.clone(), t.claims.clone()));
        }
        if jwt.is_none() && tokens.is_empty() {
            return Err(ConfigError::Invalid {
                key: "jwt".into(),
                message: "[auth] needs [auth.jwt] or at least one [[auth.tokens]]".into(),
            });
        }
        let links = Links::new(std::time::Duration::from_secs(config.link_ttl_secs))?;
        Ok(Authenticator { jwt, tokens, admin_role: config.admin_role.clone(), links })
    }

    /// The actor of an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Actor, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, credentials) =
            header.trim().split_once(' ').ok_or_else(|| AuthError::Malformed("expected `Bearer <token>`".into()))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed(format!("the scheme must be Bearer, not `{}`", short(scheme))));
        }
        let credentials = credentials.trim();
        if credentials.is_empty() {
            return Err(AuthError::Malformed("an empty token".into()));
        }
        // A JWT has three dot-separated parts; an API token has none.
        if credentials.contains('.') {
            return match &self.jwt {
                Some(v) => v.verify(credentials),
                None => Err(AuthError::Malformed("this server takes API tokens, not JWTs".into())),
            };
        }
        self.tokens.get(&token::sha256(credentials)).cloned().ok_or(AuthError::UnknownToken)
    }

    /// Whether `error` may go away by fetching the provider's keys again (an unknown
    /// `kid` with `jwks_url` configured, not fetched in the last 10 s). The caller then
    /// calls [`Authenticator::refresh_keys`] off its async threads and tries once more.
    pub fn may_refresh(&self, error: &AuthError) -> bool {
        matches!(error, AuthError::UnknownKey(_)) && self.jwt.as_ref().is_some_and(|j| j.may_refresh())
    }

    /// Fetch `jwks_url` now (blocking, at most 5 s).
    pub fn refresh_keys(&self) -> Result<(), String> {
        self.jwt.as_ref().map_or(Ok(()), |j| j.refresh())
    }

    /// The actor the API tokens of subject `sub` stand for now, as configured (None: no
    /// token of that subject). A schedule an API token saved runs with this, so a
    /// token's revoked role, or the token itself, stops its schedules too.
    pub fn token_actor(&self, sub: &str) -> Option<Actor> {
        let mut of_sub = self.tokens.values().filter(|a| a.sub == sub);
        let first = of_sub.next()?.clone();
        // Two tokens of one subject: the roles of either (as a caller of each would have).
        Some(of_sub.fold(first, |mut acc, a| {
            acc.roles.extend(a.roles.iter().filter(|r| !acc.roles.contains(r)).cloned().collect::<Vec<_>>());
            acc
        }))
    }

    /// Whether the actor holds the admin role: every report, every run.
    pub fn is_admin(&self, actor: &Actor) -> bool {
        actor.has_role(&self.admin_role)
    }

    /// Sign download links with `secret` (shared by the instances of a cluster) from now on.
    pub fn share_link_secret(&mut self, secret: &[u8]) {
        self.links = Links::with_secret(secret, self.links.ttl());
    }

    /// The signer of download links.
    pub fn links(&self) -> &Links {
        &self.links
    }
}

/// At most 16 characters of a caller's text, for an error message.
fn short(s: &str) -> String {
    s.chars().take(16).collect()
}
