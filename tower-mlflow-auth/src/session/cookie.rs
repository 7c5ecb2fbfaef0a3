//! [`SessionCookie`]: one sealed cookie, split across several when large, as `Set-Cookie`
//! headers and back from a request's `Cookie` headers.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use secrecy::SecretSlice;
use tower_mlflow_core::net::is_loopback_host;

use super::{
    SessionCookieBuildError, SessionKeys, SessionSealError,
    pairs::{cookie_pairs, remove_pairs},
};

/// A session cookie: its name and attributes, and the keys that seal it. See the
/// [module docs](super) for an example.
///
/// The attributes are `Path=/` (unless [`path`](SessionCookieBuilder::path)), `HttpOnly`,
/// `SameSite=Lax`, `Secure` (unless
/// [`insecure_loopback_http`](SessionCookieBuilder::insecure_loopback_http)), `Max-Age`, and
/// never `Domain`, so the cookie goes back to this host only.
///
/// A sealed value that would make a `Set-Cookie` header longer than
/// [`MAX_SET_COOKIE_LEN`](Self::MAX_SET_COOKIE_LEN) is split across `name.0`, `name.1`, …
/// (at most [`max_chunks`](SessionCookieBuilder::max_chunks)) and joined again on open.
/// The pieces are authenticated together: a missing, extra, reordered or duplicated piece,
/// or the bare name beside pieces, opens nothing.
#[derive(Clone, Debug)]
pub struct SessionCookie {
    name: Box<str>,
    keys: SessionKeys,
    path: Box<str>,
    secure: bool,
    max_chunks: usize,
}

impl SessionCookie {
    /// Browsers keep cookies of up to 4096 bytes, name and attributes included; each
    /// `Set-Cookie` header stays within this.
    pub const MAX_SET_COOKIE_LEN: usize = 4096;
    /// The most cookies one value may be split across (`name.0` to `name.9`).
    pub const MAX_CHUNKS: usize = 10;
    /// The default [`SessionCookieBuilder::max_chunks`].
    pub const DEFAULT_MAX_CHUNKS: usize = 8;
    /// The longest cookie name accepted.
    pub const MAX_NAME_LEN: usize = 64;

    /// Starts a builder for the cookie `name`, sealed with `keys`.
    pub fn builder(name: impl Into<String>, keys: SessionKeys) -> SessionCookieBuilder {
        SessionCookieBuilder {
            name: name.into(),
            keys,
            path: "/".into(),
            insecure_host: None,
            max_chunks: Self::DEFAULT_MAX_CHUNKS,
        }
    }

    /// The cookie name (chunks are `name.0`, `name.1`, …).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The keys that seal and open it.
    #[must_use]
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// Whether a cookie called `name` is this session cookie or one of its chunks, for
    /// removing them from a request sent further.
    #[must_use]
    pub fn is_own(&self, name: &str) -> bool {
        self.chunk_of(name).is_some()
    }

    /// Removes this cookie and its chunks from `request`'s `Cookie` headers, keeping every
    /// other cookie, so that the session is not forwarded to the upstream service.
    pub fn remove_from(&self, request: &mut HeaderMap) {
        remove_pairs(request, |name| self.is_own(name));
    }

    /// The `Set-Cookie` headers that store `plaintext` until `expires_at` (`Max-Age` counted
    /// from `now`), plus removals of this cookie's chunks present in `request` that the new
    /// value does not overwrite (left from a larger earlier value).
    ///
    /// Times are wall-clock ([`SystemTime`]) because the expiry is sealed into the cookie
    /// and every replica sharing the secret must read it the same way.
    ///
    /// # Errors
    ///
    /// [`SessionSealError`] when `expires_at` is not after `now`, the value needs more
    /// than [`max_chunks`](SessionCookieBuilder::max_chunks) cookies, or no nonce can be
    /// drawn.
    pub fn set_cookies(
        &self,
        request: &HeaderMap,
        plaintext: &[u8],
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<Vec<HeaderValue>, SessionSealError> {
        let max_age = expires_at
            .duration_since(now)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or(SessionSealError::Expiry)?;
        let sealed = self.keys.seal(&self.name, plaintext, expires_at)?;
        let attributes = self.attributes(max_age);
        let mut headers = Vec::new();
        let written = if self.name.len() + 1 + sealed.len() + attributes.len()
            <= Self::MAX_SET_COOKIE_LEN
        {
            headers.push(header(&format!("{}={sealed}{attributes}", self.name)));
            None
        } else {
            // `name.N=`: the name, a dot, one digit and `=`.
            let room =
                Self::MAX_SET_COOKIE_LEN.saturating_sub(self.name.len() + 3 + attributes.len());
            let count = sealed.len().div_ceil(room.max(1));
            if room == 0 || count > self.max_chunks {
                return Err(SessionSealError::TooLarge);
            }
            // The sealed value is ASCII, so any byte offset is a character boundary.
            for (index, chunk) in sealed.as_bytes().chunks(room).enumerate() {
                let chunk = std::str::from_utf8(chunk).map_err(|_| SessionSealError::TooLarge)?;
                headers.push(header(&format!(
                    "{}.{index}={chunk}{attributes}",
                    self.name
                )));
            }
            Some(count)
        };
        for (name, _) in cookie_pairs(request) {
            let stale = match (self.chunk_of(name), written) {
                (Some(Chunk::Whole), Some(_)) => true,
                (Some(Chunk::Part(index)), Some(count)) => index >= count,
                (Some(Chunk::Part(_)), None) => true,
                _ => false,
            };
            if stale {
                headers.push(self.removal(name));
            }
        }
        Ok(headers)
    }

    /// The `Set-Cookie` headers that remove this cookie and every chunk of it present in
    /// `request` (`Max-Age=0`, the same path), for logout. The bare name is always removed.
    #[must_use]
    pub fn removal_cookies(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        let mut names: Vec<&str> = vec![&self.name];
        for (name, _) in cookie_pairs(request) {
            if self.is_own(name) && !names.contains(&name) {
                names.push(name);
            }
        }
        names.into_iter().map(|name| self.removal(name)).collect()
    }

    /// The plaintext stored in `request`'s cookies, if they hold exactly one valid value
    /// sealed for this name (whole, or all its chunks in order) that has not expired at `now`.
    #[must_use]
    pub fn open(&self, request: &HeaderMap, now: SystemTime) -> Option<SecretSlice<u8>> {
        let mut whole = None;
        let mut parts: [Option<&str>; Self::MAX_CHUNKS] = [None; Self::MAX_CHUNKS];
        for (name, value) in cookie_pairs(request) {
            let slot = match self.chunk_of(name) {
                None => continue,
                Some(Chunk::Whole) => &mut whole,
                Some(Chunk::Part(index)) if index < self.max_chunks => &mut parts[index],
                Some(Chunk::Part(_)) => return None,
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        let count = parts.iter().take_while(|p| p.is_some()).count();
        if parts[count..].iter().any(Option::is_some) {
            return None;
        }
        let sealed = match (whole, count) {
            (Some(value), 0) => value.to_owned(),
            (None, 1..) => parts.iter().flatten().copied().collect(),
            _ => return None,
        };
        self.keys.open(&self.name, &sealed, now)
    }

    fn chunk_of(&self, name: &str) -> Option<Chunk> {
        let rest = name.strip_prefix(&*self.name)?;
        if rest.is_empty() {
            return Some(Chunk::Whole);
        }
        match rest.as_bytes() {
            [b'.', digit @ b'0'..=b'9'] => Some(Chunk::Part(usize::from(digit - b'0'))),
            _ => None,
        }
    }

    fn attributes(&self, max_age: Duration) -> String {
        // Round up, so that a cookie never leaves the browser before its sealed expiry.
        let seconds = max_age.as_secs() + u64::from(max_age.subsec_nanos() > 0);
        let mut attributes = format!(
            "; Max-Age={seconds}; Path={}; HttpOnly; SameSite=Lax",
            self.path
        );
        if self.secure {
            attributes.push_str("; Secure");
        }
        attributes
    }

    fn removal(&self, name: &str) -> HeaderValue {
        let mut removal = format!(
            "{name}=; Max-Age=0; Path={}; HttpOnly; SameSite=Lax",
            self.path
        );
        if self.secure {
            removal.push_str("; Secure");
        }
        header(&removal)
    }
}

/// Which part of a session cookie a cookie name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Whole,
    Part(usize),
}

/// A `Set-Cookie` value, marked sensitive; every byte was checked at build time or is base64url.
fn header(value: &str) -> HeaderValue {
    let mut header = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

/// Builds a [`SessionCookie`]; made by [`SessionCookie::builder`].
#[derive(Debug)]
#[must_use]
pub struct SessionCookieBuilder {
    name: String,
    keys: SessionKeys,
    path: String,
    insecure_host: Option<String>,
    max_chunks: usize,
}

impl SessionCookieBuilder {
    /// The cookie's `Path` (default `/`): for a cookie that only one endpoint reads, such as
    /// a login transaction read by the callback.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Leaves `Secure` off, for a gateway served over plain `http://` on `host`, which must
    /// be loopback (`127.0.0.1`, `[::1]`, `localhost`): browsers do not store `Secure`
    /// cookies from plain http, and anywhere else the cookie would cross the network in
    /// clear.
    pub fn insecure_loopback_http(mut self, host: impl Into<String>) -> Self {
        self.insecure_host = Some(host.into());
        self
    }

    /// The most cookies one value may be split across (default
    /// [`SessionCookie::DEFAULT_MAX_CHUNKS`], at most [`SessionCookie::MAX_CHUNKS`]).
    pub fn max_chunks(mut self, max_chunks: usize) -> Self {
        self.max_chunks = max_chunks;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`SessionCookieBuildError`] for a bad name or path, a non-loopback insecure host, a
    /// `__Host-`/`__Secure-` name whose rules are not met, or `max_chunks` out of range.
    pub fn build(self) -> Result<SessionCookie, SessionCookieBuildError> {
        let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.name.is_empty()
            || self.name.len() > SessionCookie::MAX_NAME_LEN
            || !self.name.chars().all(token)
        {
            return Err(SessionCookieBuildError::InvalidName(self.name));
        }
        if !self.path.starts_with('/')
            || !self.path.chars().all(|c| c.is_ascii_graphic() && c != ';')
        {
            return Err(SessionCookieBuildError::InvalidPath(self.path));
        }
        if let Some(host) = &self.insecure_host {
            if !is_loopback_host(host) {
                return Err(SessionCookieBuildError::NotLoopback(host.clone()));
            }
        }
        let secure = self.insecure_host.is_none();
        let host_prefix = self.name.starts_with("__Host-");
        if (host_prefix || self.name.starts_with("__Secure-")) && !secure
            || host_prefix && self.path != "/"
        {
            return Err(SessionCookieBuildError::PrefixRules(self.name));
        }
        if self.max_chunks == 0 || self.max_chunks > SessionCookie::MAX_CHUNKS {
            return Err(SessionCookieBuildError::MaxChunks(self.max_chunks));
        }
        Ok(SessionCookie {
            name: self.name.into(),
            keys: self.keys,
            path: self.path.into(),
            secure,
            max_chunks: self.max_chunks,
        })
    }
}
