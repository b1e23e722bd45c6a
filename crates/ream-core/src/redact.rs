//! Secrets kept out of messages.

/// The URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match password_at(url) {
        Some((start, end)) => format!("{}:***{}", &url[..start], &url[end..]),
        None => url.to_string(),
    }
}

/// The URL without its password (for a file, where even `***` does not belong), and
/// whether it had one.
pub fn without_password(url: &str) -> (String, bool) {
    match password_at(url) {
        Some((start, end)) => (format!("{}{}", &url[..start], &url[end..]), true),
        None => (url.to_string(), false),
    }
}

/// Where `:PASSWORD` stands in `scheme://user:PASSWORD@host`: from the colon to the `@`.
fn password_at(url: &str) -> Option<(usize, usize)> {
    let user = url.find("://")? + 3;
    let at = user + url[user..].find('@')?;
    let colon = user + url[user..at].find(':')?;
    Some((colon, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(redact("postgres://ream:s3cret@db:5432/x"), "postgres://ream:***@db:5432/x");
        assert_eq!(redact("postgres://ream@db/x"), "postgres://ream@db/x");
        assert_eq!(redact("sqlite:/tmp/a.db"), "sqlite:/tmp/a.db");
        assert_eq!(without_password("mysql://root:pw@h/x"), ("mysql://root@h/x".to_string(), true));
        assert_eq!(without_password("mysql://root@h/x"), ("mysql://root@h/x".to_string(), false));
    }
}
