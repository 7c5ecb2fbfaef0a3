//! The Vault token: a fixed token, or an AppRole login; renewed with `renew-self` before its
//! lease runs out, logged in again when renewal fails or the token has expired.
//!
//! A fixed token's lease is unknown until asked: before its first use it is looked up
//! (`GET /v1/auth/token/lookup-self`, which the `default` policy allows). When Vault says
//! it is renewable and has a TTL, it is renewed like a login's token; a token without a TTL
//! (a root token) is used as is. A failed lookup is not fatal (the token may lack the
//! permission): the token is used without renewal, and a transient failure is retried on the
//! next fetch.

use std::time::Duration;

use http::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use super::{Inner, State, VaultAuth, api::ReadError};
use crate::source::{SourceError, lifetime};

pub(super) struct TokenState {
    pub(super) token: SecretString,
    /// `None`: no known expiry (a fixed token that was never looked up, or a root token).
    expires_at: Option<Instant>,
    renew_at: Option<Instant>,
    renewable: bool,
    /// Whether the lease is known (always, except for a fixed token before its lookup).
    known: bool,
}

impl TokenState {
    pub(super) fn fixed(token: SecretString) -> Self {
        Self {
            token,
            expires_at: None,
            renew_at: None,
            renewable: false,
            known: false,
        }
    }
}

impl Inner {
    /// The token to use, logging in or renewing first when needed.
    pub(super) async fn current_token(
        &self,
        state: &mut State,
        relogged: &mut bool,
    ) -> Result<SecretString, SourceError> {
        if let Some(current) = state.token.as_mut().filter(|t| !t.known) {
            match self.look_up(&current.token).await {
                Ok(looked_up) => *current = looked_up,
                Err(e) => {
                    tracing::debug!(target: "tower_mlflow_secrets", error = %e.error, "vault token lookup failed; the token is not renewed");
                    current.known = !e.error.is_transient();
                }
            }
        }
        let now = Instant::now();
        if let Some(current) = &state.token {
            let expired = current.expires_at.is_some_and(|at| now >= at);
            let due = current.renew_at.is_some_and(|at| now >= at);
            if !expired && !due {
                return Ok(current.token.clone());
            }
            if !expired && current.renewable {
                match self.renew(&current.token).await {
                    Ok(renewed) => {
                        let token = renewed.token.clone();
                        state.token = Some(renewed);
                        return Ok(token);
                    }
                    Err(e) => {
                        tracing::debug!(target: "tower_mlflow_secrets", error = %e.error, "vault token renewal failed");
                    }
                }
            }
            if let VaultAuth::Token(_) = self.auth {
                if expired {
                    return Err(SourceError::permanent(
                        "the Vault token has expired and cannot be renewed",
                    ));
                }
                // Renewal failed but the token still works for now: use it.
                return Ok(current.token.clone());
            }
            state.token = None;
        }
        match &self.auth {
            VaultAuth::Token(token) => {
                state.token = Some(TokenState::fixed(token.clone()));
                Ok(token.clone())
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                *relogged = true;
                let body = serde_json::json!({
                    "role_id": role_id,
                    "secret_id": secret_id.expose_secret(),
                });
                let request = self.request(
                    Method::POST,
                    &format!("auth/{}/login", mount.trim_matches('/')),
                    None,
                    Some(body),
                )?;
                let response = self.call(request, "vault approle login").await?;
                let fresh = self.token_from_auth(&response, None)?;
                tracing::debug!(target: "tower_mlflow_secrets", "vault approle login succeeded");
                let token = fresh.token.clone();
                state.token = Some(fresh);
                Ok(token)
            }
        }
    }

    async fn renew(&self, token: &SecretString) -> Result<TokenState, ReadError> {
        let request = self.request(
            Method::POST,
            "auth/token/renew-self",
            Some(token),
            Some(serde_json::json!({})),
        )?;
        let response = self.call(request, "vault token renewal").await?;
        tracing::debug!(target: "tower_mlflow_secrets", "vault token renewed");
        Ok(self.token_from_auth(&response, Some(token))?)
    }

    /// A fixed token's lease, from `lookup-self` (`data.ttl` and `data.renewable`).
    async fn look_up(&self, token: &SecretString) -> Result<TokenState, ReadError> {
        let request = self.request(Method::GET, "auth/token/lookup-self", Some(token), None)?;
        let response = self.call(request, "vault token lookup").await?;
        let data = response
            .get("data")
            .ok_or_else(|| SourceError::permanent("vault token lookup: no data block"))?;
        let ttl = lifetime::seconds(data.get("ttl"), "vault token lookup", "data.ttl")?;
        let renewable = data
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(self.token_state(token.clone(), ttl.unwrap_or(Duration::ZERO), renewable))
    }

    /// Reads the `auth` block of a login or renewal response.
    fn token_from_auth(
        &self,
        response: &Value,
        current: Option<&SecretString>,
    ) -> Result<TokenState, SourceError> {
        let auth = response
            .get("auth")
            .ok_or_else(|| SourceError::permanent("vault response has no auth block"))?;
        let token = match auth.get("client_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => SecretString::from(t.to_owned()),
            _ => match current {
                Some(t) => t.clone(),
                None => return Err(SourceError::permanent("vault login returned no token")),
            },
        };
        let lease = lifetime::seconds(
            auth.get("lease_duration"),
            "vault token",
            "auth.lease_duration",
        )?
        .unwrap_or(Duration::ZERO);
        let renewable = auth
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(self.token_state(token, lease, renewable))
    }

    /// A token with `lease` left (zero: no expiry).
    fn token_state(&self, token: SecretString, lease: Duration, renewable: bool) -> TokenState {
        let now = Instant::now();
        let (expires_at, renew_at) = if lease.is_zero() {
            (None, None)
        } else {
            // `lease` is at most `lifetime::MAX_LIFETIME`: the sums cannot overflow.
            let lead = self.renew_before.unwrap_or(lease / 3).min(lease);
            (Some(now + lease), Some(now + (lease - lead)))
        };
        TokenState {
            token,
            expires_at,
            renew_at,
            renewable,
            known: true,
        }
    }
}
