//! Store targets: a copy of the output at a path template, under an allowed prefix.

use ream_core::template::Template;

use crate::{DeliverError, Delivery, Policy, StoreConfig};

/// A checked store target.
#[derive(Debug, Clone)]
pub struct Store {
    path: Template,
    /// The allowed prefix it is under.
    prefix: String,
}

/// The allowed prefix `url` starts with, if any.
fn allowed<'a>(url: &str, policy: &'a Policy) -> Option<&'a String> {
    policy.store_prefixes.iter().find(|p| url.starts_with(p.as_str()))
}

/// A store URL and an object name in it: `s3://bucket` and the key, or a `file://`
/// directory and the file's name.
fn split(url: &str) -> Option<(String, String)> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/')?;
        return (!bucket.is_empty() && !key.is_empty()).then(|| (format!("s3://{bucket}"), key.to_string()));
    }
    let path = url.strip_prefix("file://")?;
    let (dir, name) = path.rsplit_once('/')?;
    (path.starts_with('/') && !name.is_empty())
        .then(|| (format!("file://{}", if dir.is_empty() { "/" } else { dir }), name.to_string()))
}

impl Store {
    pub(crate) fn check(
        c: &StoreConfig,
        policy: &Policy,
        known: impl Fn(&str, &str) -> Result<Template, DeliverError>,
    ) -> Result<Store, DeliverError> {
        let bad = |why: String| DeliverError::Target(format!("store.path `{}`: {why}", c.path));
        let literal = c.path.split('{').next().unwrap_or("");
        let Some(prefix) = allowed(literal, policy) else {
            return Err(bad(match policy.store_prefixes.is_empty() {
                true => "this server allows no store targets (start it with --delivery-store-prefix)".into(),
                false => format!("is under none of the allowed prefixes ({})", policy.store_prefixes.join(", ")),
            }));
        };
        if split(&c.path).is_none() {
            return Err(bad("use s3://BUCKET/KEY or file:///DIR/NAME".into()));
        }
        Ok(Store { path: known(&c.path, "store.path")?, prefix: prefix.clone() })
    }

    pub(crate) fn send(&self, s3_endpoint: Option<&str>, d: &Delivery<'_>) -> Result<(), DeliverError> {
        let url = d.fill(&self.path);
        let bad = |why: &str| DeliverError::Target(format!("store.path `{url}`: {why}"));
        // A parameter's value must not walk the copy out of its prefix.
        if !url.starts_with(&self.prefix) || url.split('/').any(|s| s == "..") {
            return Err(bad(&format!("leaves the allowed prefix {}", self.prefix)));
        }
        let (store, name) = split(&url).ok_or_else(|| bad("names no object"))?;
        let dest = ream_outputs::Outputs::open(&store, s3_endpoint)?;
        d.outputs.copy_to(d.output_name, &dest, &name)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_store_url_splits_into_its_store_and_object() {
        assert_eq!(super::split("s3://reports/sales/2026.csv"), Some(("s3://reports".into(), "sales/2026.csv".into())));
        assert_eq!(super::split("file:///srv/out/a.csv"), Some(("file:///srv/out".into(), "a.csv".into())));
        assert_eq!(super::split("s3://reports"), None);
        assert_eq!(super::split("file://relative/a.csv"), None);
    }
}
