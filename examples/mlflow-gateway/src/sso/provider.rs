//! The OpenID Connect issuer as the gateway uses it: discovery (lazy, cached once it
//! succeeds, retried after a failure, one fetch at a time, `issuer` matching exactly), the
//! authorization URL, the token endpoint (authorization code with PKCE, refresh token;
//! `client_secret_basic`) and the verification of the ID tokens it returns.
//!
//! The protocol types and the token requests come from the `oauth2` crate, with our
//! [`HttpClient`] plugged in (so its TLS settings, timeout and size cap apply); ID tokens are
//! checked by `tower_mlflow_auth`'s [`Jwt`].
//!
//! This file holds [`Provider`] and its token requests; `discovery.rs` finds the endpoints,
//! `error.rs` holds [`ProviderError`].

mod discovery;
mod error;

use std::{fmt, pin::Pin, sync::Arc, time::SystemTime};

use bytes::Bytes;
use http::Uri;
use oauth2::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse,
    basic::{
        BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
        BasicTokenType,
    },
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tower_mlflow_auth::authenticators::{IdTokenClaims, Jwt};
use tower_mlflow_core::{
    http::{HttpClient, scheme_is_safe, status_is_transient},
    sync::Reloading,
};

pub(crate) use self::error::{ProviderError, Unreachable};
use self::{
    discovery::Endpoints,
    error::{Failure, token_error},
};
use super::transaction::Transaction;

/// What the gateway knows of its OpenID Connect client registration.
pub(crate) struct ProviderSettings {
    /// The issuer URL, exactly as its discovery document and ID tokens spell it.
    pub issuer: String,
    /// The client id: the audience of the ID tokens.
    pub client_id: String,
    /// The client secret, sent with `client_secret_basic`.
    pub client_secret: SecretString,
    /// The callback URL registered with the issuer (`…/_gateway/callback`).
    pub redirect_url: String,
    /// The scopes asked for; `openid` among them.
    pub scopes: Vec<String>,
    /// A PEM bundle trusted beside the public roots (`--jwt-ca-file`).
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("ca_pem", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// The issuer. Cloning is cheap: clones share the discovery cache, the HTTP pool and the
/// ID-token keys.
#[derive(Clone)]
pub(crate) struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    client_id: String,
    client_secret: SecretString,
    redirect_url: RedirectUrl,
    scopes: Vec<String>,
    discovery_url: Uri,
    http: HttpClient,
    id_tokens: Jwt,
    endpoints: Reloading<Endpoints, ProviderError>,
}

/// The `oauth2` client once the endpoints are known.
type OidcClient = oauth2::Client<
    BasicErrorResponse,
    OidcTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// One exchange with the token endpoint, as `oauth2` awaits it.
type Exchange = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, Unreachable>> + Send>>;

/// A token response with OpenID Connect's `id_token`.
type OidcTokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

#[derive(Clone, Debug, Deserialize, Serialize)]
struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

impl Provider {
    /// The scope that asks for a refresh token, and with it `prompt=consent`.
    const OFFLINE_ACCESS: &str = "offline_access";

    /// Checks the settings and builds the client. No request is made: discovery happens on
    /// first use.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Settings`] naming the bad setting: an issuer or redirect URL that is
    /// not an absolute `https` URL (or `http` to loopback), an empty client id, a CA bundle
    /// without a usable certificate.
    pub(crate) fn new(settings: ProviderSettings) -> Result<Self, ProviderError> {
        let ProviderSettings {
            issuer,
            client_id,
            client_secret,
            redirect_url,
            scopes,
            ca_pem,
        } = settings;
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery_url = safe_uri(&discovery_url).ok_or_else(|| {
            ProviderError::Settings(format!(
                "the issuer {issuer:?} is not an https URL (or http to loopback)"
            ))
        })?;
        if client_id.is_empty() {
            return Err(ProviderError::Settings("the client id is empty".into()));
        }
        let redirect = safe_uri(&redirect_url)
            .and_then(|_| RedirectUrl::new(redirect_url.clone()).ok())
            .ok_or_else(|| {
                ProviderError::Settings(format!(
                    "the redirect URL {redirect_url:?} is not an https URL (or http to loopback)"
                ))
            })?;
        let mut http = HttpClient::builder();
        let mut id_tokens = Jwt::builder()
            .issuer(issuer.as_str())
            .audience(client_id.as_str())
            // ID tokens are never cached by `Jwt`; no cache to build.
            .max_cached_tokens(0);
        if let Some(pem) = ca_pem {
            // Beside the public roots, as --jwt-ca-file promises.
            http = http.ca_pem(pem.clone());
            id_tokens = id_tokens.root_certificates_pem(pem).public_roots(true);
        }
        let http = http
            .build()
            .map_err(|e| ProviderError::Settings(format!("the CA bundle cannot be used: {e}")))?;
        let id_tokens = id_tokens.build().map_err(|e| {
            ProviderError::Settings(format!("cannot check the issuer's ID tokens: {e}"))
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                issuer,
                client_id,
                client_secret,
                redirect_url: redirect,
                scopes,
                discovery_url,
                http,
                id_tokens,
                endpoints: Reloading::new(),
            }),
        })
    }

    /// Where to send the browser to sign in for `tx`: the authorization endpoint with
    /// `response_type=code`, `client_id`, `state`, the S256 `code_challenge`,
    /// `redirect_uri`, `scope`, `nonce`, and `prompt=consent` when the scopes include
    /// `offline_access` (OpenID Connect Core §11).
    ///
    /// # Errors
    ///
    /// [`ProviderError::Unavailable`] or [`ProviderError::Discovery`] when discovery fails.
    pub(crate) async fn authorization_url(
        &self,
        tx: &Transaction,
    ) -> Result<String, ProviderError> {
        let client = self.client().await?;
        let challenge = tx.pkce_challenge();
        let mut request = client
            .authorize_url(|| CsrfToken::new(tx.state.clone()))
            .add_scopes(self.inner.scopes.iter().cloned().map(Scope::new))
            .add_extra_param("code_challenge", challenge)
            .add_extra_param("code_challenge_method", "S256")
            .add_extra_param("nonce", tx.nonce.as_str());
        if self.inner.scopes.iter().any(|s| s == Self::OFFLINE_ACCESS) {
            request = request.add_extra_param("prompt", "consent");
        }
        let (url, _state) = request.url();
        Ok(url.into())
    }

    /// Redeems an authorization code of `tx` (with its PKCE verifier) and verifies the ID
    /// token against `tx`'s nonce. The result always has claims.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Refused`] with the issuer's error code (`invalid_grant` for a used
    /// or expired code), [`ProviderError::NoIdToken`], [`ProviderError::IdToken`] for a
    /// token that fails a check, [`ProviderError::Unavailable`], [`ProviderError::Response`].
    pub(crate) async fn redeem(
        &self,
        code: &str,
        tx: &Transaction,
    ) -> Result<Tokens, ProviderError> {
        let client = self.client().await?;
        let send = self.sender();
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                tx.pkce_verifier.expose_secret().to_owned(),
            ));
        let response = request.request_async(&send).await.map_err(token_error)?;
        let id_token = response
            .extra_fields()
            .id_token
            .as_deref()
            .ok_or(ProviderError::NoIdToken)?;
        let claims = self
            .inner
            .id_tokens
            .verify_id_token(id_token, &tx.nonce)
            .await
            .map_err(ProviderError::IdToken)?;
        Ok(Tokens::new(Some(claims), &response, None))
    }

    /// Uses a refresh token. An ID token in the answer must be for `subject` (and, when it
    /// has a nonce, for `nonce`, the login's); without one, `claims` is `None`. The answer's
    /// refresh token, or `refresh_token` again when the issuer sent none (RFC 6749 §6: the
    /// old one stays valid then).
    ///
    /// # Errors
    ///
    /// As for [`redeem`](Self::redeem), except that a missing ID token is no error.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &SecretString,
        subject: &str,
        nonce: &str,
    ) -> Result<Tokens, ProviderError> {
        let client = self.client().await?;
        let send = self.sender();
        let token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .request_async(&send)
            .await
            .map_err(token_error)?;
        let claims = match response.extra_fields().id_token.as_deref() {
            Some(id_token) => Some(
                self.inner
                    .id_tokens
                    .verify_refreshed_id_token(id_token, subject, nonce)
                    .await
                    .map_err(ProviderError::IdToken)?,
            ),
            None => None,
        };
        Ok(Tokens::new(claims, &response, Some(refresh_token)))
    }

    /// The issuer's `end_session_endpoint` with `client_id` and `post_logout_redirect_uri`
    /// (RP-initiated logout), or `None` when discovery has none (or fails).
    pub(crate) async fn end_session_url(&self, post_logout_redirect_uri: &str) -> Option<String> {
        let endpoints = self.endpoints().await.ok()?;
        let mut url = endpoints.value().end_session.clone()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.inner.client_id)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        Some(url.into())
    }

    /// The `oauth2` client for the discovered endpoints.
    async fn client(&self) -> Result<OidcClient, ProviderError> {
        let endpoints = self.endpoints().await?;
        let endpoints = endpoints.value();
        let inner = &self.inner;
        Ok(oauth2::Client::new(ClientId::new(inner.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                inner.client_secret.expose_secret().to_owned(),
            ))
            // client_secret_basic, with RFC 6749 §2.3.1's form-encoding of id and secret.
            .set_auth_type(AuthType::BasicAuth)
            .set_auth_uri(endpoints.authorization.clone())
            .set_token_uri(endpoints.token.clone())
            .set_redirect_uri(inner.redirect_url.clone()))
    }

    /// Our HTTP client as `oauth2`'s: a transient failure status (429, 5xx) is a transport
    /// error, so it reads as the issuer being unavailable rather than a malformed answer.
    fn sender(&self) -> impl Fn(oauth2::HttpRequest) -> Exchange + Sync {
        let http = self.inner.http.clone();
        move |request: oauth2::HttpRequest| {
            let http = http.clone();
            Box::pin(async move {
                let endpoint = request.uri().to_string();
                let response = http
                    .send(request.map(Bytes::from))
                    .await
                    .map_err(|e| Unreachable::new(endpoint.clone(), Failure::Http(e)))?;
                if status_is_transient(response.status()) {
                    return Err(Unreachable::new(
                        endpoint,
                        Failure::Status(response.status()),
                    ));
                }
                Ok(response.map(Vec::from))
            })
        }
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.inner.issuer)
            .field("client_id", &self.inner.client_id)
            .field("discovered", &self.inner.endpoints.snapshot().is_some())
            .finish_non_exhaustive()
    }
}

/// `value` as an `http::Uri` when it is `https`, or `http` to loopback.
fn safe_uri(value: &str) -> Option<Uri> {
    let uri: Uri = value.parse().ok()?;
    (uri.host().is_some() && scheme_is_safe(&uri, false)).then_some(uri)
}

/// What a token endpoint answered, checked.
#[derive(Clone)]
pub(crate) struct Tokens {
    /// The verified ID token's claims: always `Some` after [`Provider::redeem`].
    pub claims: Option<IdTokenClaims>,
    /// The refresh token, when the issuer gave one.
    pub refresh_token: Option<SecretString>,
    /// The earlier of the ID token's `exp` and now + `expires_in`, when either is known.
    pub expires_at: Option<SystemTime>,
}

impl Tokens {
    fn new(
        claims: Option<IdTokenClaims>,
        response: &OidcTokenResponse,
        old_refresh_token: Option<&SecretString>,
    ) -> Self {
        let access_expiry = response
            .expires_in()
            .and_then(|ttl| SystemTime::now().checked_add(ttl));
        let id_token_expiry = claims.as_ref().and_then(IdTokenClaims::expires_at);
        let expires_at = match (access_expiry, id_token_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let refresh_token = response
            .refresh_token()
            .map(|token| SecretString::from(token.secret().as_str()))
            .or_else(|| old_refresh_token.cloned());
        Self {
            claims,
            refresh_token,
            expires_at,
        }
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("subject", &self.claims.as_ref().map(IdTokenClaims::subject))
            .field("refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests;
