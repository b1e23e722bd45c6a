//! Secrets kept out of messages.

/// The URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_string() };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else { return url.to_string() };
    match rest[..at].find(':') {
        Some(colon) => format!("{}://{}:***{}", &url[..scheme_end], &rest[..colon], &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(redact("postgres://ream:s3cret@db:5432/x"), "postgres://ream:***@db:5432/x");
        assert_eq!(redact("postgres://ream@db/x"), "postgres://ream@db/x");
        assert_eq!(redact("sqlite:/tmp/a.db"), "sqlite:/tmp/a.db");
    }
}
