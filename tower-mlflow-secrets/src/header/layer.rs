use std::{fmt, sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use http::{HeaderName, HeaderValue, Uri};
use tower_layer::Layer;

use super::{
    recovery::Recovery,
    replay::{CloneBody, NoReplay},
    service::SecretHeader,
};
use crate::{
    allowlist::{HostAllowlist, Origin},
    cache::{CachedSecret, SecretSnapshot},
    format::{HeaderMode, HeaderTemplate, SecretFormat, SecretFormatError, TemplateError},
};

/// What to do with a request whose origin is not on the allowlist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisallowedHost {
    /// Send it without the secret header (the header is removed if present). The default:
    /// the server answers as it would to any anonymous client.
    #[default]
    SendWithoutSecret,
    /// Fail it with [`SecretHeaderError::NotAllowed`](super::SecretHeaderError::NotAllowed)
    /// without sending it.
    Fail,
}

/// Layer that applies [`SecretHeader`]. Cheap to clone; clones share the cache. `R` copies
/// requests for the replay after a `401` ([`CloneRequest`](super::CloneRequest)).
#[derive(Clone)]
pub struct SecretHeaderLayer<R = NoReplay> {
    shared: Arc<Shared>,
    replay: R,
}

/// Builds a [`SecretHeaderLayer`]; configuration errors come from [`build`](Self::build).
pub struct SecretHeaderLayerBuilder<R = NoReplay> {
    secret: CachedSecret,
    template: Result<HeaderTemplate, TemplateError>,
    allowlist: Option<HostAllowlist>,
    disallowed: DisallowedHost,
    default_origin: Option<Uri>,
    recovery: Option<Duration>,
    replay: R,
}

/// A configuration error from [`SecretHeaderLayerBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretHeaderLayerBuildError {
    /// No allowlist was given, or it is empty: the secret could never be sent.
    NoAllowedHosts,
    /// The header mode does not fit the secret format.
    Template(TemplateError),
    /// The default origin is not an absolute `http`/`https` URI without a path.
    InvalidDefaultOrigin,
    /// The default origin is not on the allowlist.
    DefaultOriginNotAllowed,
}

impl fmt::Display for SecretHeaderLayerBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAllowedHosts => {
                f.write_str("no allowed hosts: the secret could never be sent; set an allowlist")
            }
            Self::Template(err) => write!(f, "invalid header template: {err}"),
            Self::InvalidDefaultOrigin => f.write_str(
                "the default origin must be an absolute http(s) URI such as https://host:port",
            ),
            Self::DefaultOriginNotAllowed => {
                f.write_str("the default origin is not on the allowlist")
            }
        }
    }
}

impl std::error::Error for SecretHeaderLayerBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Template(err) => Some(err),
            _ => None,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) secret: CachedSecret,
    pub(crate) template: HeaderTemplate,
    pub(crate) allowlist: HostAllowlist,
    pub(crate) disallowed: DisallowedHost,
    pub(crate) default_origin: Option<Origin>,
    pub(crate) recovery: Option<Recovery>,
    rendered: ArcSwapOption<Rendered>,
}

/// The header value rendered from one secret generation, so that Basic's base64 and the
/// header validation run once per fetched secret, not once per request.
struct Rendered {
    generation: u64,
    value: HeaderValue,
}

impl Shared {
    /// The origin the request goes to, if it can be known.
    pub(crate) fn origin_of(&self, uri: &Uri) -> Option<Origin> {
        if uri.scheme().is_none() && uri.authority().is_none() {
            return self.default_origin.clone();
        }
        Origin::of(uri)
    }

    pub(crate) fn header_name(&self) -> &HeaderName {
        self.template.name()
    }

    /// The sensitive header value for `snapshot`, rendered once per generation.
    pub(crate) fn header_value(
        &self,
        snapshot: &SecretSnapshot,
    ) -> Result<HeaderValue, SecretFormatError> {
        if let Some(rendered) = self.rendered.load().as_ref() {
            if rendered.generation == snapshot.generation() {
                return Ok(rendered.value.clone());
            }
        }
        let value = self.template.render(snapshot.secret())?;
        self.rendered.store(Some(Arc::new(Rendered {
            generation: snapshot.generation(),
            value: value.clone(),
        })));
        Ok(value)
    }
}

impl SecretHeaderLayer {
    /// After a `401`, when the forced fetch returned the very secret the server refused
    /// (the store has not caught up with a rotation yet), the next forced fetch may start
    /// this soon rather than after the `min_interval` of
    /// [`recover_unauthorized`](SecretHeaderLayerBuilder::recover_unauthorized) (or sooner,
    /// when that interval is shorter).
    pub const UNCHANGED_SECRET_RETRY: Duration = Duration::from_secs(1);
    /// How long after the first forced fetch that returned an unchanged secret the quicker
    /// [`UNCHANGED_SECRET_RETRY`](Self::UNCHANGED_SECRET_RETRY) applies; past it a secret
    /// that is simply wrong is fetched again only once per `min_interval`.
    pub const UNCHANGED_SECRET_WINDOW: Duration = Duration::from_secs(120);

    /// A builder using `secret`. Defaults: `Authorization: Bearer <token>`, requests to
    /// other origins sent without the secret, no 401 recovery. An allowlist is required.
    pub fn builder(secret: CachedSecret) -> SecretHeaderLayerBuilder {
        SecretHeaderLayerBuilder {
            secret,
            template: Ok(HeaderTemplate::bearer()),
            allowlist: None,
            disallowed: DisallowedHost::default(),
            default_origin: None,
            recovery: None,
            replay: NoReplay,
        }
    }
}

impl<R> SecretHeaderLayer<R> {
    /// The cache this layer reads from.
    pub fn secret(&self) -> &CachedSecret {
        &self.shared.secret
    }
}

impl<R> SecretHeaderLayerBuilder<R> {
    /// Sets the header template (default [`HeaderTemplate::bearer`]).
    #[must_use]
    pub fn template(mut self, template: HeaderTemplate) -> Self {
        self.template = Ok(template);
        self
    }

    /// Sets the header name, mode and secret format; a mismatch is reported by
    /// [`build`](Self::build).
    #[must_use]
    pub fn header(mut self, name: HeaderName, mode: HeaderMode, format: SecretFormat) -> Self {
        self.template = HeaderTemplate::new(name, mode, format);
        self
    }

    /// Sets the origins the secret may be sent to (required).
    #[must_use]
    pub fn allowlist(mut self, allowlist: HostAllowlist) -> Self {
        self.allowlist = Some(allowlist);
        self
    }

    /// Sets what happens to requests for origins not on the allowlist.
    #[must_use]
    pub fn on_disallowed_host(mut self, policy: DisallowedHost) -> Self {
        self.disallowed = policy;
        self
    }

    /// The origin assumed for requests whose URI has no scheme and authority, for clients
    /// that add the origin below this layer (tonic's `Channel` does). It must be on the
    /// allowlist and should be the address the client really connects to.
    #[must_use]
    pub fn default_origin(mut self, origin: Uri) -> Self {
        self.default_origin = Some(origin);
        self
    }

    /// On `401 Unauthorized`, fetch the secret again and replay the request once, with at
    /// most one forced fetch per `min_interval` (a newer secret already in the cache is
    /// used without fetching). When the fetch returns the refused secret unchanged, the
    /// `401` is given back without a replay and the next forced fetch may come after
    /// [`UNCHANGED_SECRET_RETRY`](SecretHeaderLayer::UNCHANGED_SECRET_RETRY), so a store
    /// that lags behind the server's rotation is picked up within about a second. Requests
    /// are copied with [`CloneBody`], so the request body
    /// must be `Clone`: `Full<Bytes>`, `Empty<Bytes>`, `String`, `Vec<u8>`, `Bytes` or `()`.
    /// For other bodies use [`recover_unauthorized_with`](Self::recover_unauthorized_with).
    /// No marker header is added.
    #[must_use]
    pub fn recover_unauthorized(
        self,
        min_interval: Duration,
    ) -> SecretHeaderLayerBuilder<CloneBody> {
        self.recover_unauthorized_with(min_interval, CloneBody)
    }

    /// Like [`recover_unauthorized`](Self::recover_unauthorized), with `clone_request`
    /// copying each request before the secret is added (a
    /// [`CloneRequest`](super::CloneRequest): [`NoReplay`] or a closure for bodies that are
    /// not `Clone`). A request it returns `None` for gets the 401 as is.
    #[must_use]
    pub fn recover_unauthorized_with<C>(
        self,
        min_interval: Duration,
        clone_request: C,
    ) -> SecretHeaderLayerBuilder<C> {
        SecretHeaderLayerBuilder {
            secret: self.secret,
            template: self.template,
            allowlist: self.allowlist,
            disallowed: self.disallowed,
            default_origin: self.default_origin,
            recovery: Some(min_interval),
            replay: clone_request,
        }
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`SecretHeaderLayerBuildError`]: no allowlist, a template that does not fit the
    /// secret format, or a default origin that is invalid or not allowed.
    pub fn build(self) -> Result<SecretHeaderLayer<R>, SecretHeaderLayerBuildError> {
        use SecretHeaderLayerBuildError as BuildError;
        let template = self.template.map_err(BuildError::Template)?;
        let allowlist = self
            .allowlist
            .filter(|list| !list.is_empty())
            .ok_or(BuildError::NoAllowedHosts)?;
        let default_origin = match self.default_origin {
            None => None,
            Some(uri) => {
                let has_path = uri.path_and_query().is_some_and(|p| p.as_str() != "/");
                let origin = Origin::of(&uri)
                    .filter(|_| !has_path)
                    .ok_or(BuildError::InvalidDefaultOrigin)?;
                if !allowlist.allows_origin(&origin) {
                    return Err(BuildError::DefaultOriginNotAllowed);
                }
                Some(origin)
            }
        };
        Ok(SecretHeaderLayer {
            shared: Arc::new(Shared {
                secret: self.secret,
                template,
                allowlist,
                disallowed: self.disallowed,
                default_origin,
                recovery: self.recovery.map(|min_interval| {
                    Recovery::new(
                        min_interval,
                        SecretHeaderLayer::UNCHANGED_SECRET_RETRY,
                        SecretHeaderLayer::UNCHANGED_SECRET_WINDOW,
                    )
                }),
                rendered: ArcSwapOption::empty(),
            }),
            replay: self.replay,
        })
    }
}

impl<R> fmt::Debug for SecretHeaderLayerBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHeaderLayerBuilder")
            .field("secret", &self.secret)
            .field("template", &self.template)
            .field("allowlist", &self.allowlist)
            .field("disallowed", &self.disallowed)
            .field("default_origin", &self.default_origin)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl<R> fmt::Debug for SecretHeaderLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `HeaderTemplate` holds no secret; the rendered value is left out on purpose.
        f.debug_struct("SecretHeaderLayer")
            .field("secret", &self.secret)
            .field("template", &self.template)
            .field("allowlist", &self.allowlist)
            .field("disallowed", &self.disallowed)
            .field(
                "default_origin",
                &self.default_origin.as_ref().map(ToString::to_string),
            )
            .field(
                "recovery_min_interval",
                &self.recovery.as_ref().map(|r| r.min_interval),
            )
            .finish()
    }
}

impl<S, R: Clone> Layer<S> for SecretHeaderLayer<R> {
    type Service = SecretHeader<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SecretHeader::new(inner, Arc::clone(&self.shared), self.replay.clone())
    }
}
