//! Who runs a report: the actor's subject, roles and claims. Spec SQL sees the actor as
//! bound parameters, `:actor.sub` and `:actor.<claim>` (typed from the JSON claim, never
//! pasted); a request's own parameters cannot name them, since `actor` is no parameter
//! name a spec may declare.
//!
//! ```
//! use ream_core::actor::{bind_claims, Actor};
//! use ream_core::params::{BoundParams, ParamValue};
//! use ream_core::Value;
//!
//! let actor = Actor::new("alice", vec![], serde_json::json!({ "tenant": 7 }).as_object().cloned().unwrap());
//! let mut params = BoundParams::new();
//! bind_claims(&mut params, Some(&actor), &["actor.tenant".to_string()]).unwrap();
//! assert_eq!(params["actor.tenant"], ParamValue::One(Value::Int(7)));
//! ```

use serde::Serialize;

use crate::params::{BoundParams, ParamValue};
use crate::value::Value;

/// The name before the dot in `:actor.claim` and `{actor.claim}`.
pub const PREFIX: &str = "actor";

/// A verified caller: who (`sub`), its roles, and the claims its token carried.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Actor {
    pub sub: String,
    pub roles: Vec<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Actor {
    pub fn new(sub: &str, roles: Vec<String>, claims: serde_json::Map<String, serde_json::Value>) -> Actor {
        Actor { sub: sub.to_string(), roles, claims }
    }

    /// The caller of a server without authentication, and of the CLI without `--claim`.
    pub fn anonymous() -> Actor {
        Actor::new("anonymous", vec![], serde_json::Map::new())
    }

    /// An actor from `NAME=VALUE` pairs (`ream run --claim`): `sub` is the subject,
    /// `roles` a comma-separated list, any other name a claim, read as JSON where it
    /// parses as JSON (`7`, `true`, `["a","b"]`) and as text otherwise.
    pub fn from_pairs(pairs: &[String]) -> Result<Actor, String> {
        let mut actor = Actor::new("cli", vec![], serde_json::Map::new());
        for pair in pairs {
            let Some((name, value)) = pair.split_once('=').filter(|(n, _)| !n.trim().is_empty()) else {
                return Err(format!("claim `{pair}`: expected NAME=VALUE"));
            };
            match name.trim() {
                "sub" => actor.sub = value.to_string(),
                "roles" => {
                    actor.roles = value.split(',').map(str::trim).filter(|r| !r.is_empty()).map(String::from).collect()
                }
                name => {
                    let json = match serde_json::from_str::<serde_json::Value>(value) {
                        Ok(v) if !v.is_object() => v,
                        _ => serde_json::Value::String(value.to_string()),
                    };
                    actor.claims.insert(name.to_string(), json);
                }
            }
        }
        Ok(actor)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The value `:actor.<name>` binds: `sub` is the subject; any other name is the claim,
    /// typed from its JSON (a string, integer, number, boolean or null; an array of them
    /// binds as a list, for `IN (:actor.groups)`).
    pub fn claim(&self, name: &str) -> Result<ParamValue, ClaimError> {
        let fail = |problem| ClaimError { claim: name.to_string(), problem };
        if name == "sub" {
            return Ok(ParamValue::One(Value::Str(self.sub.as_str().into())));
        }
        let json = self.claims.get(name).ok_or(fail(ClaimProblem::Missing))?;
        match json {
            serde_json::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(ParamValue::List)
                .ok_or(fail(ClaimProblem::NotScalar)),
            other => scalar(other).map(ParamValue::One).ok_or(fail(ClaimProblem::NotScalar)),
        }
    }
}

fn scalar(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::Str(s.as_str().into()),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => return None,
    })
}

/// A claim a report uses that the actor cannot supply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the report uses `:actor.{claim}`, and {problem}")]
pub struct ClaimError {
    pub claim: String,
    pub problem: ClaimProblem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimProblem {
    #[error("the actor has no such claim")]
    Missing,
    #[error("the claim is an object, which cannot be bound")]
    NotScalar,
    #[error("no actor is given (on the command line: --claim NAME=VALUE)")]
    NoActor,
}

/// The claim of a placeholder name: `actor.tenant` → `tenant`.
pub fn claim_name(placeholder: &str) -> Option<&str> {
    placeholder.strip_prefix(PREFIX)?.strip_prefix('.')
}

/// Bind each `actor.<claim>` of `names` (placeholder names; others are skipped) into
/// `params`, under its placeholder name.
pub fn bind_claims(params: &mut BoundParams, actor: Option<&Actor>, names: &[String]) -> Result<(), ClaimError> {
    for name in names {
        let Some(claim) = claim_name(name) else { continue };
        let value = match actor {
            Some(a) => a.claim(claim)?,
            None => return Err(ClaimError { claim: claim.to_string(), problem: ClaimProblem::NoActor }),
        };
        params.insert(name.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(claims: serde_json::Value) -> Actor {
        Actor::new("alice", vec!["finance".into()], claims.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn claims_bind_typed_from_their_json() {
        let a = actor(serde_json::json!({ "tenant": 7, "name": "x", "ratio": 0.5, "ok": true, "groups": ["a", "b"] }));
        assert_eq!(a.claim("sub").unwrap(), ParamValue::One(Value::Str("alice".into())));
        assert_eq!(a.claim("tenant").unwrap(), ParamValue::One(Value::Int(7)));
        assert_eq!(a.claim("name").unwrap(), ParamValue::One(Value::Str("x".into())));
        assert_eq!(a.claim("ratio").unwrap(), ParamValue::One(Value::Float(0.5)));
        assert_eq!(a.claim("ok").unwrap(), ParamValue::One(Value::Bool(true)));
        assert_eq!(a.claim("groups").unwrap(), ParamValue::List(vec![Value::Str("a".into()), Value::Str("b".into())]));
    }

    #[test]
    fn a_missing_or_object_claim_is_an_error_naming_it() {
        let a = actor(serde_json::json!({ "org": { "id": 1 } }));
        let e = a.claim("tenant").unwrap_err();
        assert_eq!(e.to_string(), "the report uses `:actor.tenant`, and the actor has no such claim");
        assert_eq!(a.claim("org").unwrap_err().problem, ClaimProblem::NotScalar);
        let mut p = BoundParams::new();
        let e = bind_claims(&mut p, None, &["actor.tenant".into()]).unwrap_err();
        assert_eq!(e.problem, ClaimProblem::NoActor);
    }

    #[test]
    fn command_line_claims_are_json_where_they_parse() {
        let pairs: Vec<String> =
            ["sub=bob", "tenant=1", "code=007", "roles=a, b", "x={\"k\":1}"].map(String::from).into();
        let a = Actor::from_pairs(&pairs).unwrap();
        assert_eq!((a.sub.as_str(), a.roles.clone()), ("bob", vec!["a".to_string(), "b".to_string()]));
        assert_eq!(a.claims["tenant"], serde_json::json!(1));
        assert_eq!(a.claims["code"], serde_json::json!("007"));
        assert_eq!(a.claims["x"], serde_json::json!("{\"k\":1}"));
        assert!(Actor::from_pairs(&["tenant".into()]).unwrap_err().contains("expected NAME=VALUE"));
    }

    #[test]
    fn only_actor_names_are_bound() {
        let a = actor(serde_json::json!({ "tenant": "t1" }));
        let mut p = BoundParams::new();
        bind_claims(&mut p, Some(&a), &["region".into(), "actor.tenant".into()]).unwrap();
        assert_eq!(p.len(), 1);
        assert!(a.has_role("finance") && !a.has_role("admin"));
    }
}
