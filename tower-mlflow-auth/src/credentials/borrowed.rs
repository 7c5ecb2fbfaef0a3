//! [`CredentialsRef`]: credentials read from a request head without copying them.

use std::fmt;

use http::{HeaderMap, HeaderName};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use super::{Credentials, CredentialsError, Malformed, Scheme};

/// Credentials as a request presents them, borrowed from its head: what
/// [`Authenticator::credentials`](crate::Authenticator::credentials) extracts and
/// [`Authenticator::try_accept_now`](crate::Authenticator::try_accept_now) looks at.
///
/// A bearer token or header value is borrowed from the header; a Basic credential is decoded
/// into a buffer inside this value (on the stack up to 96 decoded bytes, on the heap beyond)
/// that is zeroized on drop. Reading credentials this way allocates nothing, so a request
/// answered from memory (a cache hit, a static token) never copies its secret. The owned
/// [`Credentials`] that [`Authenticator::authenticate`](crate::Authenticator::authenticate)
/// takes come from [`to_credentials`](Self::to_credentials), on the slow path only.
///
/// The secret (password, token or header value) is read with
/// [`expose_secret`](ExposeSecret::expose_secret), as with a [`SecretString`]; `Debug` shows
/// the scheme, the username and the header name, never the secret.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
/// use secrecy::ExposeSecret;
/// use tower_mlflow_auth::{CredentialsRef, Scheme};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic YWxpY2U6czNjcjN0"));
/// let credentials = CredentialsRef::from_authorization_header(&headers)?;
/// assert_eq!(credentials.scheme(), Scheme::Basic);
/// assert_eq!(credentials.username(), Some("alice"));
/// assert_eq!(credentials.expose_secret(), "s3cr3t");
/// assert!(!format!("{credentials:?}").contains("s3cr3t"));
/// # Ok::<_, tower_mlflow_auth::CredentialsError>(())
/// ```
pub struct CredentialsRef<'a>(Repr<'a>);

enum Repr<'a> {
    /// Borrowed from owned [`Credentials::Basic`].
    Basic {
        username: &'a str,
        password: &'a str,
    },
    /// Decoded from an `Authorization: Basic` header.
    Decoded(DecodedBasic),
    /// The token's bytes: visible ASCII (checked by the parser, or a `str`'s), so valid
    /// UTF-8; kept as bytes so that a lookup by digest never converts them.
    Bearer { token: &'a [u8] },
    /// The value's bytes, as for `Bearer`.
    Header { name: HeaderName, value: &'a [u8] },
}

impl<'a> CredentialsRef<'a> {
    /// Reads the request's `Authorization` header: `Basic` and `Bearer`, scheme matched
    /// case-insensitively. The rules and errors of [`Credentials::from_authorization_header`].
    ///
    /// # Errors
    ///
    /// [`CredentialsError::Missing`] when there is no `Authorization` header;
    /// [`CredentialsError::Malformed`] when there are several, when it is too long, when its
    /// scheme is unknown or when its value cannot be decoded.
    pub fn from_authorization_header(headers: &'a HeaderMap) -> Result<Self, CredentialsError> {
        super::parse_authorization(headers)
    }

    /// Reads a raw credential, such as an API key, from the named header. The rules and
    /// errors of [`Credentials::from_header`].
    ///
    /// # Errors
    ///
    /// [`CredentialsError::Missing`] without the header, [`CredentialsError::Malformed`] when
    /// it is repeated, empty, too long or not visible ASCII.
    pub fn from_header(
        headers: &'a HeaderMap,
        name: &HeaderName,
    ) -> Result<Self, CredentialsError> {
        let value = super::parse_header(headers, name)?;
        Ok(Self(Repr::Header {
            name: name.clone(),
            value,
        }))
    }

    /// A bearer token already checked to be visible ASCII.
    pub(super) fn bearer(token: &'a [u8]) -> Self {
        Self(Repr::Bearer { token })
    }

    pub(super) fn decoded(decoded: DecodedBasic) -> Self {
        Self(Repr::Decoded(decoded))
    }

    /// The scheme these credentials use.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        match &self.0 {
            Repr::Basic { .. } | Repr::Decoded(_) => Scheme::Basic,
            Repr::Bearer { .. } => Scheme::Bearer,
            Repr::Header { .. } => Scheme::Header,
        }
    }

    /// The username of Basic credentials (never empty); `None` for other schemes.
    #[must_use]
    pub fn username(&self) -> Option<&str> {
        match &self.0 {
            Repr::Basic { username, .. } => Some(username),
            Repr::Decoded(decoded) => Some(decoded.username()),
            Repr::Bearer { .. } | Repr::Header { .. } => None,
        }
    }

    /// The header a [`Scheme::Header`] credential came from; `None` for other schemes.
    #[must_use]
    pub fn header_name(&self) -> Option<&HeaderName> {
        match &self.0 {
            Repr::Header { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The username's bytes, what [`username`](Self::username) returns without its UTF-8
    /// check (done once, when the header was read): a cache key needs only bytes.
    #[cfg(feature = "cache")]
    pub(crate) fn username_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Repr::Decoded(decoded) => Some(decoded.username_bytes()),
            _ => self.username().map(str::as_bytes),
        }
    }

    /// The secret's bytes, what [`expose_secret`](ExposeSecret::expose_secret) returns
    /// without its UTF-8 check: a digest or a cache key needs only bytes.
    #[cfg(any(feature = "cache", feature = "static-tokens"))]
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Basic { password, .. } => password.as_bytes(),
            Repr::Decoded(decoded) => decoded.password_bytes(),
            Repr::Bearer { token } => token,
            Repr::Header { value, .. } => value,
        }
    }

    /// Owned credentials with the same contents, for
    /// [`Authenticator::authenticate`](crate::Authenticator::authenticate): the secret is
    /// copied into a [`SecretString`].
    #[must_use]
    pub fn to_credentials(&self) -> Credentials {
        match &self.0 {
            Repr::Basic { username, password } => Credentials::Basic {
                username: (*username).to_owned(),
                password: SecretString::from(*password),
            },
            Repr::Decoded(decoded) => Credentials::Basic {
                username: decoded.username().to_owned(),
                password: SecretString::from(decoded.password()),
            },
            Repr::Bearer { token } => Credentials::Bearer {
                token: SecretString::from(utf8(token)),
            },
            Repr::Header { name, value } => Credentials::Header {
                name: name.clone(),
                value: SecretString::from(utf8(value)),
            },
        }
    }
}

/// The password, the bearer token or the header value.
impl ExposeSecret<str> for CredentialsRef<'_> {
    fn expose_secret(&self) -> &str {
        match &self.0 {
            Repr::Basic { password, .. } => password,
            Repr::Decoded(decoded) => decoded.password(),
            Repr::Bearer { token } => utf8(token),
            Repr::Header { value, .. } => utf8(value),
        }
    }
}

impl<'a> From<&'a Credentials> for CredentialsRef<'a> {
    fn from(credentials: &'a Credentials) -> Self {
        Self(match credentials {
            Credentials::Basic { username, password } => Repr::Basic {
                username,
                password: password.expose_secret(),
            },
            Credentials::Bearer { token } => Repr::Bearer {
                token: token.expose_secret().as_bytes(),
            },
            Credentials::Header { name, value } => Repr::Header {
                name: name.clone(),
                value: value.expose_secret().as_bytes(),
            },
        })
    }
}

impl fmt::Debug for CredentialsRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("CredentialsRef");
        debug.field("scheme", &self.scheme());
        if let Some(username) = self.username() {
            debug.field("username", &username);
        }
        if let Some(name) = self.header_name() {
            debug.field("name", name);
        }
        debug.field("secret", &"[redacted]").finish()
    }
}

/// Decoded credentials up to this many bytes (a 128-character header value) stay on the
/// stack; longer ones go to the heap. Small enough that moving a [`CredentialsRef`] is a few
/// vector moves rather than a `memcpy` call.
const INLINE: usize = 96;

/// A decoded `username:password`, checked: UTF-8 on both sides of the first `:`, a
/// non-empty username. Zeroized on drop.
pub(super) struct DecodedBasic {
    buffer: Buffer,
    /// The decoded length: what drop scrubs (the decoder leaves nothing behind on error).
    len: usize,
    colon: usize,
}

enum Buffer {
    Inline([u8; INLINE]),
    Heap(Vec<u8>),
}

impl DecodedBasic {
    /// Decodes base64 `encoded` (the standard alphabet with canonical padding, as werkzeug's
    /// `b64decode(validate=True)`) and checks the result.
    pub(super) fn decode(encoded: &[u8]) -> Result<Self, CredentialsError> {
        let malformed = CredentialsError::Malformed;
        let buffer = if encoded.len() <= INLINE / 3 * 4 {
            Buffer::Inline([0; INLINE])
        } else {
            Buffer::Heap(vec![0; encoded.len().div_ceil(4) * 3])
        };
        // From here on the buffer is scrubbed on drop, whatever happens.
        let mut decoded = Self {
            buffer,
            len: 0,
            colon: 0,
        };
        decoded.len = super::standard_base64::decode(encoded, decoded.bytes_mut())
            .map_err(|_| malformed(Malformed::InvalidBase64))?;
        let text = &decoded.bytes()[..decoded.len];
        let colon = text
            .iter()
            .position(|&b| b == b':')
            .ok_or(malformed(Malformed::MissingColon))?;
        if colon == 0 {
            return Err(malformed(Malformed::Empty));
        }
        // The only UTF-8 check: the accessors below rely on it. One pass over both sides: a
        // UTF-8 text cut at an ASCII byte leaves two UTF-8 texts.
        if std::str::from_utf8(text).is_err() {
            return Err(malformed(Malformed::NotUtf8));
        }
        decoded.colon = colon;
        Ok(decoded)
    }

    fn bytes(&self) -> &[u8] {
        match &self.buffer {
            Buffer::Inline(bytes) => bytes,
            Buffer::Heap(bytes) => bytes,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.buffer {
            Buffer::Inline(bytes) => bytes,
            Buffer::Heap(bytes) => bytes,
        }
    }

    fn username_bytes(&self) -> &[u8] {
        self.bytes().get(..self.colon).unwrap_or_default()
    }

    fn password_bytes(&self) -> &[u8] {
        self.bytes()
            .get(self.colon + 1..self.len)
            .unwrap_or_default()
    }

    fn username(&self) -> &str {
        utf8(self.username_bytes())
    }

    fn password(&self) -> &str {
        utf8(self.password_bytes())
    }
}

/// Text already checked, by [`DecodedBasic::decode`] (UTF-8) or the header parser (visible
/// ASCII): checked again in a few instructions a word, and the `""` for text that is not
/// UTF-8 cannot happen.
fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

impl Drop for DecodedBasic {
    fn drop(&mut self) {
        // Only the bytes the decoder can have touched: the rest is still zero, and scrubbing
        // is a volatile write per byte.
        let len = self.len;
        let bytes = self.bytes_mut();
        let end = len.min(bytes.len());
        bytes[..end].zeroize();
    }
}
