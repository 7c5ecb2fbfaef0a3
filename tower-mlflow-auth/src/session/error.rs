//! What reading the secret, building a cookie and sealing a value reject.

use std::{error::Error, fmt};

#[cfg(doc)]
use super::SessionCookieBuilder;
use super::{SessionCookie, SessionKeys};

/// Why [`SessionKeys::from_secret`] refused the session secret. It never shows the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionKeysError {
    /// The secret has no non-blank line.
    NoKeys,
    /// This line (counting from 1) is shorter than [`SessionKeys::MIN_SECRET_LEN`] bytes.
    ShortLine {
        /// The line number, counting from 1.
        line: usize,
    },
    /// The secret has more than [`SessionKeys::MAX_KEYS`] non-blank lines.
    TooManyKeys,
}

impl fmt::Display for SessionKeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKeys => f.pad("the session secret has no key (no non-blank line)"),
            Self::ShortLine { line } => write!(
                f,
                "line {line} of the session secret is shorter than {} bytes",
                SessionKeys::MIN_SECRET_LEN
            ),
            Self::TooManyKeys => write!(
                f,
                "the session secret has more than {} keys (non-blank lines)",
                SessionKeys::MAX_KEYS
            ),
        }
    }
}

impl Error for SessionKeysError {}

/// Why a [`SessionCookieBuilder`] could not build.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionCookieBuildError {
    /// The cookie name is empty, longer than [`SessionCookie::MAX_NAME_LEN`], or has a
    /// character that a cookie name may not have (RFC 6265 `token`).
    InvalidName(String),
    /// The path does not start with `/` or has a character that is not visible ASCII, or `;`.
    InvalidPath(String),
    /// [`SessionCookieBuilder::insecure_loopback_http`] was given a host that is not
    /// loopback: off loopback, a cookie without `Secure` can be read on the network.
    NotLoopback(String),
    /// A `__Host-` or `__Secure-` name without `Secure` (or `__Host-` with a path other
    /// than `/`): browsers would drop the cookie.
    PrefixRules(String),
    /// [`SessionCookieBuilder::max_chunks`] is zero or more than [`SessionCookie::MAX_CHUNKS`].
    MaxChunks(usize),
}

impl fmt::Display for SessionCookieBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName(name) => write!(f, "{name:?} is not a usable cookie name"),
            Self::InvalidPath(path) => write!(f, "{path:?} is not a usable cookie path"),
            Self::NotLoopback(host) => write!(
                f,
                "cookies without `Secure` are only for plain http on loopback, and {host:?} is not loopback"
            ),
            Self::PrefixRules(name) => write!(
                f,
                "the cookie {name:?} needs `Secure` (and `__Host-` needs path `/`) for browsers to keep it"
            ),
            Self::MaxChunks(n) => write!(
                f,
                "max_chunks must be from 1 to {}, not {n}",
                SessionCookie::MAX_CHUNKS
            ),
        }
    }
}

impl Error for SessionCookieBuildError {}

/// Why a value could not be sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionSealError {
    /// The expiry is before 1970, or not after the current time.
    Expiry,
    /// The sealed value does not fit in the allowed number of cookies.
    TooLarge,
    /// The operating system's random number generator gave no nonce.
    RandomUnavailable,
}

impl fmt::Display for SessionSealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expiry => f.pad("the session expiry must be after 1970 and in the future"),
            Self::TooLarge => f.pad("the session is too large for the allowed number of cookies"),
            Self::RandomUnavailable => f.pad("no randomness for the session cookie nonce"),
        }
    }
}

impl Error for SessionSealError {}
