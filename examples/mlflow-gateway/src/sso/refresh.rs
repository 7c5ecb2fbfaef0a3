//! The refresh of a session that is due: its refresh token redeemed once (see
//! [`Refreshes`](super::session::Refreshes)), the access rules applied again, a new cookie.

use std::{sync::Arc, time::SystemTime};

use http::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};

use super::{
    Sso,
    access::Identity,
    session::{Refreshed, SessionData},
};

impl Sso {
    /// Refreshes `session` (due at `now`) with its refresh token: the new session and its
    /// `Set-Cookie`s, or, when the session ends, the cookies that remove it.
    pub(super) async fn renew(
        &self,
        session: &SessionData,
        request: &HeaderMap,
        now: SystemTime,
    ) -> Result<(Arc<SessionData>, Vec<HeaderValue>), Vec<HeaderValue>> {
        let renewed = self.refreshed(session, now).await;
        let sealed = renewed.and_then(|new| match new.seal(&self.cookie, request, now) {
            Ok(cookies) => Some((new, cookies)),
            Err(error) => {
                tracing::warn!(%error, user = %session.identity.user, "the session ends: the refreshed session cannot be sealed");
                None
            }
        });
        sealed.ok_or_else(|| self.cookie.removal_cookies(request))
    }

    /// The refreshed session, once per refresh token (see [`Refreshes`](super::session::Refreshes)).
    async fn refreshed(&self, session: &SessionData, now: SystemTime) -> Refreshed {
        let token = SecretString::from(session.refresh_token.clone()?);
        self.refreshes
            .run(&token, || self.refresh_once(session, &token, now))
            .await
    }

    async fn refresh_once(
        &self,
        session: &SessionData,
        token: &SecretString,
        now: SystemTime,
    ) -> Refreshed {
        let old = &session.identity;
        let tokens = match self
            .provider
            .refresh(token, &old.subject, &session.nonce)
            .await
        {
            Ok(tokens) => tokens,
            Err(error) => {
                let error: &dyn std::error::Error = &error;
                tracing::info!(error, user = %old.user, "the session ends: the refresh failed");
                return None;
            }
        };
        let identity = match &tokens.claims {
            Some(claims) => self.rules.admit(claims),
            None => self.rules.readmit(old).map(|()| old.clone()),
        };
        let identity: Identity = match identity {
            Ok(identity) => identity,
            Err(denied) => {
                tracing::info!(reason = %denied, user = %old.user, "the session ends: denied by the access rules at refresh");
                return None;
            }
        };
        // An issuer that does not rotate refresh tokens keeps the old one valid.
        let refresh_token = Some(match &tokens.refresh_token {
            Some(new) => new.expose_secret().to_owned(),
            None => token.expose_secret().to_owned(),
        });
        let nonce = session.nonce.clone();
        let new = SessionData::start(identity, nonce, &tokens, refresh_token, now, self.lifetime);
        tracing::debug!(user = %new.identity.user, expires_at = new.expires_at, "session refreshed");
        Some(Arc::new(new))
    }
}
