use base64::Engine as _;
use http::{HeaderName, HeaderValue, header::AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use zeroize::{Zeroize, Zeroizing};

use super::{HeaderMode, JsonKeys, SecretFormat, SecretFormatError, TemplateError};

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
