//! [`Recent`]: the header values of a connection's last request, for the next one.

use std::net::IpAddr;

use http::HeaderValue;

use crate::forwarded::{self, TrustedProxy};

/// The header values one request of a connection computed, kept for the next. The server
/// calls one clone of the stack for all the requests of a connection (see
/// `server::connection`), so this is per connection; a clone made for any other reason
/// only starts empty. A cache: a miss costs what every request would, an allocation for
/// each value; a hit, a reference count (`Bytes`).
#[derive(Clone, Debug, Default)]
pub(super) struct Recent {
    /// The peer, whether it is a trusted proxy, and its `X-Forwarded-For` text.
    peer: Option<(IpAddr, bool, HeaderValue)>,
    /// The last user header value, the subject's bytes as they are.
    subject: Option<HeaderValue>,
}

impl Recent {
    /// The peer's `X-Forwarded-For` text and whether it is one of `trusted_proxies`.
    pub(super) fn peer(
        &mut self,
        ip: IpAddr,
        trusted_proxies: &[TrustedProxy],
    ) -> (&HeaderValue, bool) {
        if self.peer.as_ref().is_some_and(|(seen, ..)| *seen != ip) {
            self.peer = None;
        }
        let (_, trusted, text) = self.peer.get_or_insert_with(|| {
            let trusted = trusted_proxies.iter().any(|net| net.contains(ip));
            (ip, trusted, forwarded::peer_text(ip))
        });
        (text, *trusted)
    }

    /// The user header value for `subject`; `Err` if it cannot be one.
    pub(super) fn subject(
        &mut self,
        subject: &str,
    ) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
        if let Some(value) = &self.subject
            && value.as_bytes() == subject.as_bytes()
        {
            return Ok(value.clone());
        }
        let value = HeaderValue::from_str(subject)?;
        self.subject = Some(value.clone());
        Ok(value)
    }
}
