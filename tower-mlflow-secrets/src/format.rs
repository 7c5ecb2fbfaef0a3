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

use std::fmt;

use base64::Engine as _;
use http::{HeaderName, HeaderValue, header::AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use zeroize::{Zeroize, Zeroizing};

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
    token: String,
    username: String,
    password: String,
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

/// A build-time error: the header mode and the secret format do not fit together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// Basic needs a username and a password; a bare token cannot provide them.
    BasicNeedsPair,
    /// This mode sends a token, but `user:pass` gives a pair.
    ModeNeedsToken,
    /// The scheme of [`HeaderMode::Scheme`] is empty or not an HTTP token.
    InvalidScheme,
    /// A JSON key name is empty.
    EmptyJsonKey,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BasicNeedsPair => {
                "Basic mode needs a username and a password: use the `user:pass` or JSON format"
            }
            Self::ModeNeedsToken => {
                "this header mode sends a token: use the token or JSON format, not `user:pass`"
            }
            Self::InvalidScheme => "the header scheme must be a non-empty HTTP token",
            Self::EmptyJsonKey => "JSON key names must not be empty",
        })
    }
}

impl std::error::Error for TemplateError {}

/// A request-time error: the fetched secret does not have the configured format. The text
/// names the problem (and configured key names), never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretFormatError {
    /// The secret is empty (after trimming).
    Empty,
    /// The `user:pass` secret has no colon.
    NoColon,
    /// The username is empty.
    EmptyUsername,
    /// A Basic username contains a colon, which RFC 7617 forbids.
    ColonInUsername,
    /// The JSON format is configured but the secret is not a JSON object.
    NotJsonObject,
    /// The JSON object lacks the token key (or its value is not a non-empty string).
    MissingToken {
        /// The configured token key.
        key: String,
    },
    /// The JSON object lacks the username or password key (or a value is not a non-empty
    /// string).
    MissingPair {
        /// The configured username key.
        username_key: String,
        /// The configured password key.
        password_key: String,
    },
    /// The resulting header value contains characters a header cannot carry.
    InvalidHeaderValue,
}

impl fmt::Display for SecretFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the secret is empty"),
            Self::NoColon => f.write_str("the secret is not in `username:password` form"),
            Self::EmptyUsername => f.write_str("the secret's username is empty"),
            Self::ColonInUsername => f.write_str("the secret's username contains a colon"),
            Self::NotJsonObject => f.write_str("the secret is not a JSON object"),
            Self::MissingToken { key } => {
                write!(f, "the JSON secret has no non-empty string field {key:?}")
            }
            Self::MissingPair {
                username_key,
                password_key,
            } => write!(
                f,
                "the JSON secret needs non-empty string fields {username_key:?} and {password_key:?}"
            ),
            Self::InvalidHeaderValue => {
                f.write_str("the secret contains characters not allowed in a header value")
            }
        }
    }
}

impl std::error::Error for SecretFormatError {}

/// A validated header name, mode and secret format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderTemplate {
    name: HeaderName,
    mode: HeaderMode,
    format: SecretFormat,
}

impl HeaderTemplate {
    /// Checks that `mode` can be built from secrets in `format`.
    pub fn new(
        name: HeaderName,
        mode: HeaderMode,
        format: SecretFormat,
    ) -> Result<Self, TemplateError> {
        match (&mode, &format) {
            (HeaderMode::Basic, SecretFormat::Token) => return Err(TemplateError::BasicNeedsPair),
            (
                HeaderMode::Bearer | HeaderMode::Raw | HeaderMode::Scheme(_),
                SecretFormat::UserPass,
            ) => {
                return Err(TemplateError::ModeNeedsToken);
            }
            _ => {}
        }
        if let HeaderMode::Scheme(scheme) = &mode {
            let is_token_char =
                |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if scheme.is_empty() || !scheme.chars().all(is_token_char) {
                return Err(TemplateError::InvalidScheme);
            }
        }
        if let SecretFormat::Json(keys) = &format {
            if keys.token.is_empty() || keys.username.is_empty() || keys.password.is_empty() {
                return Err(TemplateError::EmptyJsonKey);
            }
        }
        Ok(Self { name, mode, format })
    }

    /// `Authorization: Bearer <token>` from a plain token.
    pub fn bearer() -> Self {
        Self {
            name: AUTHORIZATION,
            mode: HeaderMode::Bearer,
            format: SecretFormat::Token,
        }
    }

    /// `Authorization: Basic …` from a `user:pass` secret.
    pub fn basic() -> Self {
        Self {
            name: AUTHORIZATION,
            mode: HeaderMode::Basic,
            format: SecretFormat::UserPass,
        }
    }

    /// `<name>: <token>` from a plain token, for API-key headers such as `X-Api-Key`.
    pub fn raw(name: HeaderName) -> Self {
        Self {
            name,
            mode: HeaderMode::Raw,
            format: SecretFormat::Token,
        }
    }

    /// The header name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The header mode.
    pub fn mode(&self) -> &HeaderMode {
        &self.mode
    }

    /// The secret format.
    pub fn format(&self) -> &SecretFormat {
        &self.format
    }

    /// Builds the header value from `secret`, marked sensitive (so `Debug` prints
    /// `Sensitive` and HTTP/2 never indexes it).
    pub fn render(&self, secret: &SecretString) -> Result<HeaderValue, SecretFormatError> {
        let credential = self.read(secret)?;
        let mut text = Zeroizing::new(String::new());
        match (&self.mode, &credential) {
            (HeaderMode::Bearer, Credential::Token(token)) => {
                text.push_str("Bearer ");
                text.push_str(token);
            }
            (HeaderMode::Raw, Credential::Token(token)) => text.push_str(token),
            (HeaderMode::Scheme(scheme), Credential::Token(token)) => {
                text.push_str(scheme);
                text.push(' ');
                text.push_str(token);
            }
            (HeaderMode::Basic, Credential::Pair { username, password }) => {
                if username.contains(':') {
                    return Err(SecretFormatError::ColonInUsername);
                }
                let mut plain =
                    Zeroizing::new(String::with_capacity(username.len() + password.len() + 1));
                plain.push_str(username);
                plain.push(':');
                plain.push_str(password);
                text.push_str("Basic ");
                base64::engine::general_purpose::STANDARD
                    .encode_string(plain.as_bytes(), &mut text);
            }
            // `new` rules these out for Token/UserPass; JSON can still carry the wrong shape.
            (HeaderMode::Basic, Credential::Token(_)) => {
                return Err(self.missing_pair());
            }
            (_, Credential::Pair { .. }) => return Err(self.missing_token()),
        }
        let mut value =
            HeaderValue::from_str(&text).map_err(|_| SecretFormatError::InvalidHeaderValue)?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn missing_token(&self) -> SecretFormatError {
        match &self.format {
            SecretFormat::Json(keys) => SecretFormatError::MissingToken {
                key: keys.token.clone(),
            },
            _ => SecretFormatError::Empty,
        }
    }

    fn missing_pair(&self) -> SecretFormatError {
        match &self.format {
            SecretFormat::Json(keys) => SecretFormatError::MissingPair {
                username_key: keys.username.clone(),
                password_key: keys.password.clone(),
            },
            _ => SecretFormatError::NoColon,
        }
    }

    fn read(&self, secret: &SecretString) -> Result<Credential, SecretFormatError> {
        let raw = secret.expose_secret().trim();
        if raw.is_empty() {
            return Err(SecretFormatError::Empty);
        }
        match &self.format {
            SecretFormat::Token => Ok(Credential::Token(Zeroizing::new(raw.to_owned()))),
            SecretFormat::UserPass => {
                let (username, password) = raw.split_once(':').ok_or(SecretFormatError::NoColon)?;
                if username.is_empty() {
                    return Err(SecretFormatError::EmptyUsername);
                }
                Ok(Credential::Pair {
                    username: Zeroizing::new(username.to_owned()),
                    password: Zeroizing::new(password.to_owned()),
                })
            }
            SecretFormat::Json(keys) => self.read_json(raw, keys),
        }
    }

    fn read_json(&self, raw: &str, keys: &JsonKeys) -> Result<Credential, SecretFormatError> {
        // serde_json's own error text may quote the input, so it is dropped.
        let mut value: serde_json::Value =
            serde_json::from_str(raw).map_err(|_| SecretFormatError::NotJsonObject)?;
        let result = (|| {
            let object = value.as_object().ok_or(SecretFormatError::NotJsonObject)?;
            let field = |key: &str| {
                object
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Zeroizing::new(s.to_owned()))
            };
            let wants_pair = self.mode == HeaderMode::Basic;
            if wants_pair {
                match (field(&keys.username), field(&keys.password)) {
                    (Some(username), Some(password)) => Ok(Credential::Pair { username, password }),
                    _ => Err(self.missing_pair()),
                }
            } else {
                field(&keys.token)
                    .map(Credential::Token)
                    .ok_or_else(|| self.missing_token())
            }
        })();
        zeroize_json(&mut value);
        result
    }
}

/// The parsed secret, wiped on drop.
enum Credential {
    Token(Zeroizing<String>),
    Pair {
        username: Zeroizing<String>,
        password: Zeroizing<String>,
    },
}

/// Wipes every string in a parsed JSON value (serde_json has no zeroizing mode).
fn zeroize_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(zeroize_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(zeroize_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn template(name: &str, mode: HeaderMode, format: SecretFormat) -> HeaderTemplate {
        HeaderTemplate::new(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            mode,
            format,
        )
        .unwrap()
    }

    #[test]
    fn bearer_from_token() {
        let value = HeaderTemplate::bearer()
            .render(&secret(" tok-123\n"))
            .unwrap();
        assert_eq!(value, "Bearer tok-123");
        assert!(value.is_sensitive());
    }

    #[test]
    fn bearer_token_with_colon_stays_a_token() {
        let value = HeaderTemplate::bearer()
            .render(&secret("tok:en:with:colons"))
            .unwrap();
        assert_eq!(value, "Bearer tok:en:with:colons");
    }

    #[test]
    fn basic_from_user_pass_splits_at_first_colon() {
        let value = HeaderTemplate::basic()
            .render(&secret("tok:en:with"))
            .unwrap();
        // base64("tok:en:with")
        assert_eq!(value, "Basic dG9rOmVuOndpdGg=");
    }

    #[test]
    fn basic_from_json_pair() {
        let t = template("authorization", HeaderMode::Basic, SecretFormat::json());
        let value = t
            .render(&secret(
                r#"{"username":"admin","password":"password1234","x":1}"#,
            ))
            .unwrap();
        assert_eq!(value, "Basic YWRtaW46cGFzc3dvcmQxMjM0");
    }

    #[test]
    fn bearer_from_json_with_custom_key() {
        let t = template(
            "authorization",
            HeaderMode::Bearer,
            SecretFormat::Json(JsonKeys::default().token("api_key")),
        );
        assert_eq!(
            t.render(&secret(r#"{"api_key":"k1"}"#)).unwrap(),
            "Bearer k1"
        );
    }

    #[test]
    fn raw_custom_header() {
        let t = HeaderTemplate::raw(HeaderName::from_static("x-api-key"));
        assert_eq!(t.name(), "x-api-key");
        assert_eq!(t.render(&secret("k:1")).unwrap(), "k:1");
    }

    #[test]
    fn custom_header_with_scheme() {
        let t = template(
            "x-auth",
            HeaderMode::Scheme("Token".into()),
            SecretFormat::Token,
        );
        assert_eq!(t.render(&secret("abc")).unwrap(), "Token abc");
    }

    #[test]
    fn basic_in_custom_header() {
        let t = template("x-auth", HeaderMode::Basic, SecretFormat::UserPass);
        assert_eq!(t.render(&secret("a:b")).unwrap(), "Basic YTpi");
    }

    #[test]
    fn build_rejects_basic_from_token() {
        let err = HeaderTemplate::new(AUTHORIZATION, HeaderMode::Basic, SecretFormat::Token);
        assert_eq!(err, Err(TemplateError::BasicNeedsPair));
    }

    #[test]
    fn build_rejects_bearer_from_user_pass() {
        let err = HeaderTemplate::new(AUTHORIZATION, HeaderMode::Bearer, SecretFormat::UserPass);
        assert_eq!(err, Err(TemplateError::ModeNeedsToken));
    }

    #[test]
    fn build_rejects_bad_scheme_and_empty_key() {
        for scheme in ["", "Bad Scheme", "Tok\n"] {
            let err = HeaderTemplate::new(
                AUTHORIZATION,
                HeaderMode::Scheme(scheme.into()),
                SecretFormat::Token,
            );
            assert_eq!(err, Err(TemplateError::InvalidScheme), "{scheme:?}");
        }
        let err = HeaderTemplate::new(
            AUTHORIZATION,
            HeaderMode::Bearer,
            SecretFormat::Json(JsonKeys::default().token("")),
        );
        assert_eq!(err, Err(TemplateError::EmptyJsonKey));
    }

    #[test]
    fn json_errors_name_keys_not_values() {
        let bearer = template("authorization", HeaderMode::Bearer, SecretFormat::json());
        let cases = [
            (r#"{"username":"u","password":"hunter2pw"}"#, "\"token\""),
            (r#"{"token":12345}"#, "\"token\""),
            (r#"{"token":""}"#, "\"token\""),
            (r#""hunter2pw""#, "not a JSON object"),
            ("hunter2pw", "not a JSON object"),
            (r#"{"token":"hunter2pw"#, "not a JSON object"),
        ];
        for (raw, expected) in cases {
            let err = bearer.render(&secret(raw)).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(text.contains(expected), "{raw}: {text}");
            assert!(
                !text.contains("hunter2") && !text.contains("12345"),
                "{text}"
            );
        }
        let basic = template("authorization", HeaderMode::Basic, SecretFormat::json());
        let err = basic
            .render(&secret(r#"{"token":"hunter2pw"}"#))
            .unwrap_err();
        assert!(matches!(err, SecretFormatError::MissingPair { .. }));
    }

    #[test]
    fn user_pass_errors() {
        let basic = HeaderTemplate::basic();
        assert_eq!(
            basic.render(&secret("hunter2")),
            Err(SecretFormatError::NoColon)
        );
        assert_eq!(
            basic.render(&secret(":pw")),
            Err(SecretFormatError::EmptyUsername)
        );
        assert_eq!(basic.render(&secret("  ")), Err(SecretFormatError::Empty));
        let json = template("authorization", HeaderMode::Basic, SecretFormat::json());
        assert_eq!(
            json.render(&secret(r#"{"username":"a:b","password":"p"}"#)),
            Err(SecretFormatError::ColonInUsername)
        );
    }

    #[test]
    fn control_characters_are_rejected_without_echo() {
        let err = HeaderTemplate::bearer()
            .render(&secret("hunter2\nX-Evil: 1"))
            .unwrap_err();
        assert_eq!(err, SecretFormatError::InvalidHeaderValue);
        assert!(!err.to_string().contains("hunter2"));
    }
}
