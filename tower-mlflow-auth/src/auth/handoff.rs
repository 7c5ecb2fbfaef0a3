//! A principal handed from a [`ThrottleLayer`](crate::throttle::ThrottleLayer) to the
//! [`AuthLayer`](super::AuthLayer) it was built for, so that a credential accepted from memory
//! is extracted, keyed and looked up once per request, not once in each layer.
//!
//! Only a throttle made by
//! [`ThrottleLayer::builder_for`](crate::throttle::ThrottleLayer::builder_for) hands one over:
//! it holds a clone of that layer's authenticator and the layer's [`Link`]. The `Auth` service
//! takes the handoff out of the extensions of every request, before anything else, and uses it
//! only if the link is its own. A handoff from any other throttle, or from another `AuthLayer`'s
//! throttle, is dropped unread, and nothing outside this crate can make one.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::authorization::Authorization;

/// What ties a throttle to the one `AuthLayer` whose authenticator it holds: drawn once per
/// [`AuthLayer::new`](super::AuthLayer::new), kept by the layer's clones and builder methods
/// (none of which changes the authenticator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link(u64);

impl Link {
    /// A link no other layer in this process has.
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // 2^64 layers would take centuries to make: the counter does not wrap in practice.
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// In the request extensions between the throttle and its `AuthLayer`: the principal that the
/// shared authenticator's [`try_accept_now`](crate::Authenticator::try_accept_now) gave for
/// this request's credentials.
#[cfg_attr(not(feature = "throttle"), allow(dead_code))]
#[derive(Clone, Debug)]
pub(crate) struct Handoff {
    pub(crate) link: Link,
    pub(crate) principal: Authorization,
}

#[cfg(test)]
mod tests {
    use super::Link;

    #[test]
    fn every_link_is_new() {
        let links: Vec<Link> = (0..64).map(|_| Link::new()).collect();
        for (i, link) in links.iter().enumerate() {
            assert!(links[i + 1..].iter().all(|other| other != link));
        }
    }
}
