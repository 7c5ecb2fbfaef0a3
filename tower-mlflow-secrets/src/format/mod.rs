//! How a raw secret becomes a header: the [`SecretFormat`] (how to read the secret), the
//! [`HeaderMode`] (what to send) and the [`HeaderTemplate`] that combines them with a header
//! name.
//!
//! The combination is checked when the template is built: Basic needs a username and a
//! password (`user:pass` or a JSON pair), Bearer and raw headers need a token. Nothing is
//! guessed from the secret at request time, so a bearer token that contains `:` stays a
//! bearer token. Errors name the problem, never the secret.
//!
//! ```
//! use http::header::AUTHORIZATION;
//! use secrecy::SecretString;
//! use tower_mlflow_secrets::format::{HeaderMode, HeaderTemplate, SecretFormat};
//!
//! let template =
//!     HeaderTemplate::new(AUTHORIZATION, HeaderMode::Basic, SecretFormat::UserPass).unwrap();
//! let value = template.render(&SecretString::from("admin:password1234")).unwrap();
//! assert_eq!(value, "Basic YWRtaW46cGFzc3dvcmQxMjM0");
//! assert!(value.is_sensitive());
//!
//! // A token with a colon is still a token in Bearer mode.
//! let bearer =
//!     HeaderTemplate::new(AUTHORIZATION, HeaderMode::Bearer, SecretFormat::Token).unwrap();
//! assert_eq!(bearer.render(&SecretString::from("a:b")).unwrap(), "Bearer a:b");
//!
//! // Basic from a bare token is refused when the template is built.
//! assert!(HeaderTemplate::new(AUTHORIZATION, HeaderMode::Basic, SecretFormat::Token).is_err());
//! ```

mod error;
mod template;
#[cfg(test)]
mod tests;

pub use self::{
    error::{SecretFormatError, TemplateError},
    template::HeaderTemplate,
};

/// How the raw secret is read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretFormat {
    /// The whole secret (surrounding whitespace trimmed) is a token; colons are allowed.
    Token,
    /// `username:password`, split at the first colon (so the password may contain colons).
    UserPass,
    /// A JSON object such as `{"token": "…"}` or `{"username": "…", "password": "…"}`;
    /// extra keys are ignored, values must be non-empty strings.
    Json(JsonKeys),
}

impl SecretFormat {
    /// JSON with the default key names `token`, `username` and `password`.
    pub fn json() -> Self {
        Self::Json(JsonKeys::default())
    }
}

/// The key names looked up in a JSON secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonKeys {
    pub(super) token: String,
    pub(super) username: String,
    pub(super) password: String,
}

impl Default for JsonKeys {
    fn default() -> Self {
        Self {
            token: "token".to_owned(),
            username: "username".to_owned(),
            password: "password".to_owned(),
        }
    }
}

impl JsonKeys {
    /// Sets the key holding the token (default `token`).
    #[must_use]
    pub fn token(mut self, key: impl Into<String>) -> Self {
        self.token = key.into();
        self
    }

    /// Sets the key holding the username (default `username`).
    #[must_use]
    pub fn username(mut self, key: impl Into<String>) -> Self {
        self.username = key.into();
        self
    }

    /// Sets the key holding the password (default `password`).
    #[must_use]
    pub fn password(mut self, key: impl Into<String>) -> Self {
        self.password = key.into();
        self
    }
}

/// What is sent in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderMode {
    /// `Bearer <token>`.
    Bearer,
    /// `Basic base64(username:password)`.
    Basic,
    /// The token itself, with no scheme (for example `X-Api-Key: <token>`).
    Raw,
    /// `<scheme> <token>` with a custom scheme (for example `Token <token>`).
    Scheme(String),
}
