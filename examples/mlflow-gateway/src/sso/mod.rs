//! Browser sign-in with OpenID Connect (issue 14): the authorization-code flow with PKCE,
//! then an encrypted session cookie that the gateway alone reads.
//!
//! [`SsoLayer`] sits between the origin check and the `AuthLayer` (see `assemble.rs`):
//! the gateway answers `/_gateway/*` itself ([`Sso::answer`]), takes its own cookies out of
//! every request it forwards, lets a request with an `Authorization` header through to the
//! `AuthLayer`, sends a request with a valid session straight to the proxy with the
//! session's principal, and redirects a browser's page load without either to the issuer.
//! [`SsoOriginLayer`], in front of the origin check, notes whether a write came from the
//! gateway's origin before that check removes a verified `Origin` for MLflow.
//!
//! This file holds [`Sso`], the state every request shares, and its construction; the rest:
//!
//! - `provider.rs`: discovery, the authorization URL, the token endpoint, ID tokens;
//! - `transaction.rs`: one short-lived cookie per sign-in (state, nonce, PKCE verifier);
//! - `access.rs`: who may sign in ([`AccessRules`]) and the [`Identity`](access::Identity)
//!   they get;
//! - `session.rs`: the session cookie's payload and its refresh;
//! - `refresh.rs`: refreshing a due session at the issuer;
//! - `service.rs`: the tower service and the routing of each request;
//! - `routes.rs`: the answers of `/_gateway/login`, `callback`, `logout` and `userinfo`;
//! - `pages.rs`: the HTML pages and JSON bodies;
//! - `query.rs`: query parameters of those routes;
//! - `error.rs`: [`SsoError`].

pub(crate) mod access;
mod error;
mod opened;
mod pages;
pub(crate) mod provider;
mod query;
mod refresh;
mod routes;
mod service;
mod session;
pub(crate) mod transaction;

use std::{fmt, path::PathBuf, time::Duration};

use http::{
    HeaderMap,
    header::{ORIGIN, REFERER},
};
use secrecy::{ExposeSecret as _, SecretString};
use tower_mlflow_auth::{
    Exemptions,
    session::{SessionCookie, SessionKeys},
};

pub use self::error::SsoError;
pub(crate) use self::pages::rejection as rejection_response;
pub(crate) use self::service::{SsoLayer, SsoOriginLayer};
use self::{
    access::AccessRules,
    provider::{Provider, ProviderSettings},
    session::Refreshes,
    transaction::UsedStates,
};
use crate::config::SsoConfig;

/// The session cookie's name (its chunks are `mlflow_gateway_session.0`, …).
pub(crate) const SESSION_COOKIE: &str = "mlflow_gateway_session";

/// Everything browser sign-in needs, built once when the gateway is assembled and shared by
/// every request.
pub(crate) struct Sso {
    provider: Provider,
    keys: SessionKeys,
    cookie: SessionCookie,
    rules: AccessRules,
    used_states: UsedStates,
    refreshes: Refreshes,
    exemptions: Exemptions,
    /// Cookies without `Secure` (plain http on loopback).
    insecure: bool,
    /// `scheme://authority` of the redirect URL: where people see the gateway.
    redirect_origin: String,
    /// The issuer's origin: the denied page's sign-out form may end up there.
    issuer_origin: Option<String>,
    end_session: bool,
    lifetime: Duration,
}

impl Sso {
    /// Reads the secrets and builds everything; nothing is fetched from the issuer yet.
    pub(crate) fn new(config: &SsoConfig, exemptions: Exemptions) -> Result<Self, SsoError> {
        let (client_secret, keys) = load_secrets(config)?;
        Self::with_secrets(config, client_secret, keys, exemptions)
    }

    /// [`new`](Self::new) with the secrets at hand.
    pub(crate) fn with_secrets(
        config: &SsoConfig,
        client_secret: SecretString,
        keys: SessionKeys,
        exemptions: Exemptions,
    ) -> Result<Self, SsoError> {
        let ca_pem = match &config.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| SsoError::Read {
                flag: "--jwt-ca-file",
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let provider = Provider::new(ProviderSettings {
            issuer: config.issuer.clone(),
            client_id: config.client_id.clone(),
            client_secret,
            redirect_url: config.redirect_url.to_string(),
            scopes: config.scopes.clone(),
            ca_pem,
        })
        .map_err(|error| SsoError::Provider(error.into()))?;
        let insecure = config.redirect_url.scheme_str() == Some("http");
        let mut cookie = SessionCookie::builder(SESSION_COOKIE, keys.clone());
        if insecure {
            cookie = cookie.insecure_loopback_http(config.redirect_url.host().unwrap_or_default());
        }
        Ok(Self {
            provider,
            cookie: cookie.build().map_err(SsoError::Cookie)?,
            keys,
            rules: AccessRules::new(config),
            used_states: UsedStates::new(),
            refreshes: Refreshes::new(),
            exemptions,
            insecure,
            redirect_origin: config.redirect_origin(),
            issuer_origin: origin_of(&config.issuer),
            end_session: config.end_session,
            lifetime: config.session_lifetime,
        })
    }

    /// Whether a state-changing request comes from the gateway's own pages, as
    /// [`SsoOriginLayer`] found before the origin check took a verified `Origin` out (see
    /// [`same_origin`](Self::same_origin)); without its verdict, from the headers.
    fn is_from_own_origin(&self, extensions: &http::Extensions, headers: &HeaderMap) -> bool {
        match extensions.get::<service::OwnOrigin>() {
            Some(service::OwnOrigin(own)) => *own,
            None => self.same_origin(headers),
        }
    }

    /// Whether a request's one `Origin`, or without one its one `Referer`, has the redirect
    /// URL's origin. `Origin: null` (a sandboxed or privacy-redirected page) never does.
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        let single = |name| {
            let mut values = headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (Some(value), None) => Ok(Some(value)),
                (None, _) => Ok(None),
                (Some(_), Some(_)) => Err(()),
            }
        };
        let origin = match single(ORIGIN) {
            Ok(Some(origin)) => origin,
            Ok(None) => match single(REFERER) {
                Ok(Some(referer)) => referer,
                _ => return false,
            },
            Err(()) => return false,
        };
        origin
            .to_str()
            .ok()
            .and_then(origin_of)
            .is_some_and(|origin| origin == self.redirect_origin)
    }
}

impl fmt::Debug for Sso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sso")
            .field("redirect_origin", &self.redirect_origin)
            .field("cookie", &self.cookie.name())
            .field("lifetime", &self.lifetime)
            .field("end_session", &self.end_session)
            .field("refreshes", &self.refreshes)
            .finish_non_exhaustive()
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL, lower case, without the scheme's
/// default port (as [`SsoConfig::redirect_origin`] writes it); `None` for anything else,
/// `null` included.
fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri
        .host()
        .filter(|host| !host.is_empty())?
        .to_ascii_lowercase();
    Some(match uri.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Reads the client secret (non-empty; surrounding whitespace and the line end are no part
/// of it) and the session keys, for [`Sso::new`] and `--check`. The errors name the file,
/// never its content.
pub(crate) fn load_secrets(config: &SsoConfig) -> Result<(SecretString, SessionKeys), SsoError> {
    let read = |flag, path: &PathBuf| {
        let bytes = std::fs::read(path).map_err(|source| SsoError::Read {
            flag,
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| SsoError::NotUtf8 {
            flag,
            path: path.clone(),
        })?;
        Ok::<_, SsoError>(SecretString::from(text))
    };
    let client_file = &config.client_secret_file;
    let client = read("--oidc-client-secret-file", client_file)?;
    let client_secret = client.expose_secret().trim();
    if client_secret.is_empty() {
        return Err(SsoError::EmptyClientSecret {
            path: client_file.clone(),
        });
    }
    let client_secret = SecretString::from(client_secret);
    let session_file = &config.session_secret_file;
    let session = read("--session-secret-file", session_file)?;
    let keys = SessionKeys::from_secret(&session).map_err(|source| SsoError::SessionSecret {
        path: session_file.clone(),
        source,
    })?;
    Ok((client_secret, keys))
}
