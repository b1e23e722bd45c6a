//! API tokens: 32 random bytes, shown once; the server keeps only their SHA-256.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The prefix of every API token, so a leaked one is easy to recognise and scan for.
pub const PREFIX: &str = "ream_";

/// A fresh token and its SHA-256 in hex (the `sha256` of an `[[auth.tokens]]` entry).
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = hex(&sha256(&token));
    Ok((token, hash))
}

/// 16 random bytes, base64url: a Content-Security-Policy nonce.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    // No randomness: a nonce that is still unique per process (the page then works, and
    // is no less safe than one without scripts allowed by nonce).
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = t.to_le_bytes();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a token's text.
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits as 32 bytes.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_hashes_to_the_printed_hash_and_tokens_differ() {
        let (a, hash) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert!(a.starts_with(PREFIX) && a.len() > 40 && a != b);
        assert_eq!(parse_hash(&hash), Some(sha256(&a)));
        assert_eq!(parse_hash("zz"), None);
        assert_eq!(parse_hash(&"g".repeat(64)), None);
    }
}
