//! `Authorization` headers: whatever the bytes, verifying them never panics, and nothing
//! authenticates but the one configured API token (a JWT under the HS256 secret cannot be
//! forged from random bytes, and `alg: none` is refused).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ream_auth::{AuthConfig, Authenticator, JwtConfig, TokenConfig};

const TOKEN: &str = "ream_fuzz-token-0123456789";

fn auth() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ream-fuzz-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "0123456789abcdef0123456789abcdef").unwrap();
        let config = AuthConfig {
            jwt: Some(JwtConfig {
                jwks_file: None,
                jwks_url: None,
                hs256_secret_file: Some("secret".into()),
                issuer: None,
                audience: None,
                leeway_secs: 60,
                roles_claim: "roles".into(),
            }),
            tokens: vec![TokenConfig {
                sha256: ream_auth::token::hex(&ream_auth::token::sha256(TOKEN)),
                sub: "fuzz".into(),
                roles: vec![],
                claims: Default::default(),
            }],
            ..AuthConfig::default()
        };
        Authenticator::new(&config, &dir).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    if let Ok(actor) = auth().authenticate(Some(header)) {
        let given = header.trim().split_once(' ').map(|(_, t)| t.trim());
        assert_eq!(given, Some(TOKEN), "authenticated {header:?} as {}", actor.sub);
    }
});
