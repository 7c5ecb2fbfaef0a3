//! Encrypted, authenticated session cookies for browser sign-in, with no server-side state:
//! any replica that shares the session secret opens the cookies of the others.
//!
//! - [`SessionKeys`] reads the session secret (one key per line; the first seals, all
//!   open, for rotation) and seals one value: XChaCha20-Poly1305 under a key derived with
//!   HKDF-SHA256, a random nonce, the cookie name as associated data (a value moved to
//!   another cookie opens nothing), the expiry inside the sealed data, base64url with a
//!   version prefix.
//! - [`SessionCookie`] names the cookie, renders the `Set-Cookie` headers (`Secure`,
//!   `HttpOnly`, `SameSite=Lax`, `Path=/`, no `Domain`, `Max-Age`), splits a large value
//!   across `name.0`, `name.1`, … and joins it again from a request's `Cookie` headers, and
//!   renders the removal of every chunk present, for logout; [`SessionCookie::remove_from`]
//!   takes the session out of a request before it is forwarded.
//! - [`ReturnPath`] checks where a browser goes back to after sign-in: only ever a path on
//!   this origin, never an open redirect.
//!
//! A tampered, truncated, expired, other-key or other-name cookie opens to `None`, the same as
//! no cookie: never an error, never a panic.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::{HeaderMap, HeaderValue, header::COOKIE};
//! use secrecy::{ExposeSecret, SecretString};
//! use tower_mlflow_auth::session::{SessionCookie, SessionKeys};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The contents of --session-secret-file, e.g. from `openssl rand -base64 48`.
//! let secret = SecretString::from("k8Jq3vYt0m1xH5n2bQ7wZr9sLc4pDf6gE0aUiVoTyN8=");
//! let cookie = SessionCookie::builder("__Host-mlflow_session", SessionKeys::from_secret(&secret)?)
//!     .build()?;
//!
//! let now = SystemTime::now();
//! let set_cookies = cookie.set_cookies(&HeaderMap::new(), b"alice", now + Duration::from_secs(3600), now)?;
//! assert_eq!(set_cookies.len(), 1);
//! let header = set_cookies[0].to_str()?;
//! assert!(header.starts_with("__Host-mlflow_session=v1."));
//! assert!(header.ends_with("; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax; Secure"));
//!
//! // The browser sends it back, among other cookies.
//! let pair = header.split(';').next().unwrap();
//! let mut request = HeaderMap::new();
//! request.append(COOKIE, HeaderValue::from_str(&format!("theme=dark; {pair}"))?);
//! let opened = cookie.open(&request, now).unwrap();
//! assert_eq!(opened.expose_secret(), b"alice");
//! # Ok(())
//! # }
//! ```
//!
//! A value too large for one cookie is split, and joined on open:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::{HeaderMap, HeaderValue, header::COOKIE};
//! use secrecy::{ExposeSecret, SecretString};
//! use tower_mlflow_auth::session::{SessionCookie, SessionKeys};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = SessionKeys::from_secret(&SecretString::from("a-session-secret-of-at-least-32-bytes"))?;
//! let cookie = SessionCookie::builder("session", keys)
//!     .insecure_loopback_http("127.0.0.1") // plain http on loopback: no `Secure`
//!     .build()?;
//! let groups = "g".repeat(9000); // an Entra user in hundreds of groups
//! let now = SystemTime::now();
//! let set_cookies = cookie.set_cookies(&HeaderMap::new(), groups.as_bytes(), now + Duration::from_secs(60), now)?;
//! assert_eq!(set_cookies.len(), 3);
//! assert!(set_cookies.iter().all(|h| h.len() <= SessionCookie::MAX_SET_COOKIE_LEN));
//! assert!(set_cookies[1].to_str()?.starts_with("session.1="));
//!
//! let pairs: Vec<&str> = set_cookies.iter().map(|h| h.to_str().unwrap().split(';').next().unwrap()).collect();
//! let mut request = HeaderMap::new();
//! request.append(COOKIE, HeaderValue::from_str(&pairs.join("; "))?);
//! assert_eq!(cookie.open(&request, now).unwrap().expose_secret(), groups.as_bytes());
//!
//! // Logout removes every chunk the browser sent.
//! let removals = cookie.removal_cookies(&request);
//! assert_eq!(removals.len(), 4); // `session` and `session.0` to `session.2`
//! assert!(removals.iter().all(|h| h.to_str().unwrap().contains("; Max-Age=0;")));
//! # Ok(())
//! # }
//! ```

mod cookie;
mod error;
mod keys;
mod pairs;
mod return_path;
#[cfg(test)]
mod tests;

pub use self::{
    cookie::{SessionCookie, SessionCookieBuilder},
    error::{SessionCookieBuildError, SessionKeysError, SessionSealError},
    keys::SessionKeys,
    return_path::ReturnPath,
};
