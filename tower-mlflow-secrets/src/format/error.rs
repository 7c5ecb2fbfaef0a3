use std::fmt;

/// A build-time error: the header mode and the secret format do not fit together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// Basic needs a username and a password; a bare token cannot provide them.
    BasicNeedsPair,
    /// This mode sends a token, but `user:pass` gives a pair.
    ModeNeedsToken,
    /// The scheme of [`HeaderMode::Scheme`](super::HeaderMode::Scheme) is empty or not an HTTP
    /// token.
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
