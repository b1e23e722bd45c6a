//! `[auth]` in the server's TOML: the JWT keys and checks, API tokens, the admin role.

use std::path::PathBuf;

use serde::Deserialize;

/// `[auth]`: how callers prove who they are. A server with this section refuses every
/// request without a valid `Authorization: Bearer …` (except `/healthz`, and `/metrics`
/// unless closed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// JSON Web Tokens from an identity provider.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// API tokens (`[[auth.tokens]]`), for programs; `ream token new` makes one.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// The role that may run every report and sees every run (default `admin`).
    #[serde(default = "default_admin_role")]
    pub admin_role: String,
    /// Seconds a signed download link stays valid (default 600).
    #[serde(default = "default_link_ttl")]
    pub link_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { jwt: None, tokens: vec![], admin_role: default_admin_role(), link_ttl_secs: default_link_ttl() }
    }
}

/// `[auth.jwt]`: where the keys are and what a token must say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS file (`{"keys": [...]}`): RSA (RS256), EC P-256 (ES256) and Ed25519
    /// (EdDSA) public keys, picked by the token's `kid`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The identity provider's JWKS URL: fetched at startup, and again (at most every
    /// 10 s) when a token names a `kid` the keys do not have, as after a key rotation.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A file holding the HS256 shared secret (its bytes, a trailing newline dropped).
    #[serde(default)]
    pub hs256_secret_file: Option<PathBuf>,
    /// The `iss` a token must carry, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The `aud` a token must carry (one of its audiences), when set.
    #[serde(default)]
    pub audience: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf` (default 60).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The claim holding the actor's roles: a list, or a space-separated string
    /// (default `roles`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
}

/// `[[auth.tokens]]`: one API token, stored only as its SHA-256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token's SHA-256, 64 hex digits (as `ream token new` prints it).
    pub sha256: String,
    /// Who the token is.
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The claims the token's runs see as `:actor.<claim>`.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

fn default_admin_role() -> String {
    "admin".into()
}

fn default_link_ttl() -> u64 {
    600
}

fn default_leeway() -> u64 {
    60
}

fn default_roles_claim() -> String {
    "roles".into()
}
