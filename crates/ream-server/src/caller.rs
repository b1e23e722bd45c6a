//! Who makes a request, and what they may do: every handler that runs, lists or reads
//! runs takes a [`Caller`]. Without `[auth]` everyone is `anonymous` and sees everything
//! (a server that listens only on loopback, unless `--allow-anonymous`). With it, a
//! request without a valid bearer token is refused with 401 before it reaches any
//! handler's work, so never the database.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use ream_core::load::LoadedSpec;
use ream_core::Actor;

use crate::error::ApiError;
use crate::AppState;

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    /// Holds the admin role (or the server has no auth): every report, every run.
    pub admin: bool,
}

impl Caller {
    /// Whether the caller may run `spec` (its `access.roles`); a refusal is a 403 that
    /// names the roles.
    pub fn may_run(&self, id: &str, spec: &LoadedSpec) -> Result<(), ApiError> {
        let Some(access) = &spec.spec().access else { return Ok(()) };
        if self.admin || access.roles.iter().any(|r| self.actor.has_role(r)) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!("report `{id}` needs one of the roles: {}", access.roles.join(", "))))
    }

    /// Whether the caller sees a run of `actor`: its own, or any for an admin.
    pub fn sees(&self, actor: &str) -> bool {
        self.admin || actor == self.actor.sub
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(auth) = &state.auth else {
            return Ok(Caller { actor: Actor::anonymous(), admin: true });
        };
        let header = parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
        let mut verdict = auth.authenticate(header);
        // A kid the keys lack, as after a rotation: fetch the provider's keys, try again.
        if verdict.as_ref().is_err_and(|e| auth.may_refresh(e)) {
            let s = state.clone();
            let fetched =
                tokio::task::spawn_blocking(move || s.auth.as_ref().map_or(Ok(()), |a| a.refresh_keys())).await;
            if let Ok(Err(e)) = fetched {
                tracing::warn!("auth.jwt.jwks_url: {e}");
            }
            verdict = auth.authenticate(header);
        }
        match verdict {
            Ok(actor) => {
                // For the audit line of a request this caller is then denied.
                if let Some(slot) = parts.extensions.get::<crate::audit::ActorSlot>() {
                    *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(actor.sub.clone());
                }
                Ok(Caller { admin: auth.is_admin(&actor), actor })
            }
            Err(e) => Err(ApiError::Unauthorized(e)),
        }
    }
}
