use std::{fmt, sync::Arc};

use tower_layer::Layer;

use super::{buckets::Buckets, key::ClientKey, service::Throttle};
use crate::{AuthLayer, auth::handoff::Link, authenticator::Authenticator};

/// Refuses, with 429, requests from clients that failed to log in too often, before any
/// password is checked.
///
/// Built with [`ThrottleLayer::builder`]; see the [module docs](crate::throttle).
pub struct ThrottleLayer<A, K: ClientKey> {
    authenticator: A,
    client_key: K,
    shared: Arc<Shared<K::Key>>,
    /// The `AuthLayer` this throttle hands accepted principals to, if built for one.
    link: Option<Link>,
}

/// What the layer and all its services share: the buckets and the settings they came from.
pub(super) struct Shared<Key> {
    pub(super) buckets: Buckets<Key>,
    settings: Settings,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    per_minute: u32,
    burst: u32,
    max_keys: usize,
}

/// The defaults of every [`ThrottleLayer`] (`ThrottleLayer::DEFAULT_PER_MINUTE`).
impl ThrottleLayer<(), fn(&http::request::Parts)> {
    /// Failed logins per minute and client by default: 20, as `--failed-login-limit`.
    pub const DEFAULT_PER_MINUTE: u32 = 20;

    /// Clients tracked at most by default: 100 000, a few megabytes.
    pub const DEFAULT_MAX_KEYS: usize = 100_000;
}

impl<A: Authenticator, K: ClientKey> ThrottleLayer<A, K> {
    /// A builder for a throttle in front of an [`AuthLayer`] that uses `authenticator` (a
    /// clone of the same one, so that the throttle sees its cache hits), counting failures per
    /// `client_key`.
    ///
    /// Prefer [`builder_for`](Self::builder_for), which also spares the `AuthLayer` a second
    /// look at credentials the throttle found accepted.
    pub fn builder(authenticator: A, client_key: K) -> ThrottleLayerBuilder<A, K> {
        ThrottleLayerBuilder {
            authenticator,
            client_key,
            per_minute: ThrottleLayer::DEFAULT_PER_MINUTE,
            burst: None,
            max_keys: ThrottleLayer::DEFAULT_MAX_KEYS,
            link: None,
        }
    }

    /// A builder for a throttle in front of `auth`, with a clone of its authenticator,
    /// counting failures per `client_key`.
    ///
    /// When the authenticator accepts a request's credentials from memory (a cache hit, a
    /// static token), this throttle hands the principal to `auth`, which then neither extracts
    /// nor looks up those credentials again: one lookup per request instead of two. `auth`
    /// takes a principal only from a throttle built for it (or for one of its clones); put
    /// nothing between the two layers that changes a request's credentials.
    ///
    /// ```
    /// use std::{convert::Infallible, net::SocketAddr};
    /// use http::request::Parts;
    /// use tower::ServiceBuilder;
    /// use tower_mlflow_auth::{AuthLayer, Authorization, Credentials};
    /// use tower_mlflow_auth::throttle::{IpKey, ThrottleLayer, ThrottleReleaseLayer};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let authenticator = |_: Credentials| async { Ok::<Option<Authorization>, Infallible>(None) };
    /// let auth = AuthLayer::new(authenticator);
    /// let by_peer = |parts: &Parts| parts.extensions.get::<SocketAddr>().map(|peer| IpKey::from(*peer));
    /// let throttle = ThrottleLayer::builder_for(&auth, by_peer).per_minute(10).build()?;
    /// let stack = ServiceBuilder::new()
    ///     .layer(throttle)
    ///     .layer(auth)
    ///     .layer(ThrottleReleaseLayer::new());
    /// # let _ = stack;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder_for<R, P>(
        auth: &AuthLayer<A, R, P>,
        client_key: K,
    ) -> ThrottleLayerBuilder<A, K> {
        ThrottleLayerBuilder {
            link: Some(auth.link()),
            ..Self::builder(auth.authenticator().clone(), client_key)
        }
    }

    /// The number of clients whose bucket is not full (and of full ones not dropped yet):
    /// at most [`max_keys`](ThrottleLayerBuilder::max_keys).
    #[must_use]
    pub fn tracked_keys(&self) -> usize {
        self.shared.buckets.len()
    }
}

impl<S, A: Clone, K: ClientKey> Layer<S> for ThrottleLayer<A, K> {
    type Service = Throttle<S, A, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle::new(
            inner,
            self.authenticator.clone(),
            self.client_key.clone(),
            Arc::clone(&self.shared),
            self.link,
        )
    }
}

impl<A: Clone, K: ClientKey> Clone for ThrottleLayer<A, K> {
    fn clone(&self) -> Self {
        Self {
            authenticator: self.authenticator.clone(),
            client_key: self.client_key.clone(),
            shared: Arc::clone(&self.shared),
            link: self.link,
        }
    }
}

impl<A, K: ClientKey> fmt::Debug for ThrottleLayer<A, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleLayer")
            .field("authenticator", &std::any::type_name::<A>())
            .field("client_key", &std::any::type_name::<K>())
            .field("shared", &self.shared)
            .field("hands_over", &self.link.is_some())
            .finish()
    }
}

impl<Key> fmt::Debug for Shared<Key> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Settings {
            per_minute,
            burst,
            max_keys,
        } = self.settings;
        f.debug_struct("Shared")
            .field("per_minute", &per_minute)
            .field("burst", &burst)
            .field("max_keys", &max_keys)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ThrottleLayer`].
#[must_use]
pub struct ThrottleLayerBuilder<A, K> {
    authenticator: A,
    client_key: K,
    per_minute: u32,
    burst: Option<u32>,
    max_keys: usize,
    link: Option<Link>,
}

impl<A: Authenticator, K: ClientKey> ThrottleLayerBuilder<A, K> {
    /// Failed logins a client may have per minute (default
    /// [`ThrottleLayer::DEFAULT_PER_MINUTE`]): one token comes back every `60 s / per_minute`.
    /// At least 1; to turn throttling off, leave the layer out (for example with
    /// `ServiceBuilder::option_layer`).
    pub fn per_minute(mut self, per_minute: u32) -> Self {
        self.per_minute = per_minute;
        self
    }

    /// Failed logins a client may have at once, with a full bucket (default: the same as
    /// [`per_minute`](Self::per_minute)). At least 1.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Clients tracked at most (default [`ThrottleLayer::DEFAULT_MAX_KEYS`]). Only clients
    /// that failed within the last `burst` refill intervals need an entry; when the table is
    /// full, refilled buckets go first, then the bucket nearest to full. At least 1.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ThrottleBuildError`] naming the setting that is zero.
    pub fn build(self) -> Result<ThrottleLayer<A, K>, ThrottleBuildError> {
        let burst = self.burst.unwrap_or(self.per_minute);
        if self.per_minute == 0 {
            return Err(ThrottleBuildError::ZeroPerMinute);
        }
        if burst == 0 {
            return Err(ThrottleBuildError::ZeroBurst);
        }
        if self.max_keys == 0 {
            return Err(ThrottleBuildError::ZeroMaxKeys);
        }
        let settings = Settings {
            per_minute: self.per_minute,
            burst,
            max_keys: self.max_keys,
        };
        Ok(ThrottleLayer {
            authenticator: self.authenticator,
            client_key: self.client_key,
            shared: Arc::new(Shared {
                buckets: Buckets::new(self.per_minute, burst, self.max_keys),
                settings,
            }),
            link: self.link,
        })
    }
}

impl<A, K> fmt::Debug for ThrottleLayerBuilder<A, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleLayerBuilder")
            .field("per_minute", &self.per_minute)
            .field("burst", &self.burst)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// What [`ThrottleLayerBuilder::build`] rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThrottleBuildError {
    /// `per_minute` is zero: every login would be refused forever.
    ZeroPerMinute,
    /// `burst` is zero: every login would be refused.
    ZeroBurst,
    /// `max_keys` is zero: no client could be tracked.
    ZeroMaxKeys,
}

impl fmt::Display for ThrottleBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroPerMinute => {
                "per_minute must be at least 1 (to turn throttling off, leave the layer out)"
            }
            Self::ZeroBurst => "burst must be at least 1",
            Self::ZeroMaxKeys => "max_keys must be at least 1",
        })
    }
}

impl std::error::Error for ThrottleBuildError {}
