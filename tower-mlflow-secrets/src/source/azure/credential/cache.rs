//! The access token cache of one Key Vault source.

use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;

use super::AzureCredential;
use crate::source::{SourceError, http::HttpClient};

/// One cached access token.
#[derive(Default)]
pub(in crate::source::azure) struct TokenCache {
    current: Option<(String, SecretString, Instant)>,
}

impl TokenCache {
    pub(in crate::source::azure) fn clear(&mut self) {
        self.current = None;
    }

    pub(in crate::source::azure) async fn get(
        &mut self,
        credential: &AzureCredential,
        http: &HttpClient,
        scope: &str,
    ) -> Result<SecretString, SourceError> {
        // Refresh five minutes early (or halfway, for short tokens).
        if let Some((cached_scope, token, refresh_at)) = &self.current {
            if cached_scope == scope && Instant::now() < *refresh_at {
                return Ok(token.clone());
            }
        }
        let (token, lasts) = credential.request(http, scope).await?;
        let lead = Duration::from_secs(300).min(lasts / 2);
        self.current = Some((
            scope.to_owned(),
            token.clone(),
            Instant::now() + (lasts - lead),
        ));
        Ok(token)
    }
}
