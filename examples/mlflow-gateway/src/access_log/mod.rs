//! The access log and the request metrics: one line per request, an INFO event on the target
//! [`TARGET`] (written straight into the log buffer by the gateway's own subscriber: see
//! [`line`]), when the response head is ready, and the counters of
//! [`Metrics`](crate::metrics::Metrics).
//!
//! [`AccessLogLayer`] is the outermost layer, so it sees every answer: the origin check's
//! 403, the throttle's 429, the `AuthLayer`'s 401/403/503 (their markers in the response
//! extensions give the reason) and the proxy's. The proxy's answer carries the request's
//! extensions, the accepted principal among them, and this layer reads the user and the
//! authenticator there. The line carries no header value and no query string: only the
//! path, the principal's name and fixed reason texts.

use std::{
    fmt,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use http::{Method, Request, Response, Uri, Version, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::Layer;
use tower_mlflow_auth::{AuthRejection, Authorization, OriginRejection, throttle::Throttled};
use tower_service::Service;

mod line;

use self::line::Entry;
use crate::{
    forwarded::{self, TrustedProxy},
    metrics::{AUTHENTICATOR_ATTRIBUTE, AuthOutcome, Metrics},
    proxy::PeerAddr,
};

/// The tracing target of access-log events: `RUST_LOG=mlflow_gateway::access=off` silences
/// them, `RUST_LOG=warn,mlflow_gateway::access=info` keeps only them.
///
/// ```
/// // An embedding program can route the access log on its own, e.g. with a filter on it.
/// assert_eq!(mlflow_gateway::ACCESS_LOG_TARGET, "mlflow_gateway::access");
/// ```
pub const TARGET: &str = "mlflow_gateway::access";

/// Logs and counts every request; see the [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct AccessLogLayer {
    trusted_proxies: Arc<[TrustedProxy]>,
    metrics: Arc<Metrics>,
}

impl AccessLogLayer {
    /// The client address is resolved through `trusted_proxies` as for the throttle.
    pub(crate) fn new(trusted_proxies: &[TrustedProxy], metrics: Arc<Metrics>) -> Self {
        Self {
            trusted_proxies: trusted_proxies.into(),
            metrics,
        }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Clone, Debug)]
pub(crate) struct AccessLog<S> {
    inner: S,
    layer: AccessLogLayer,
}

impl<S, B, ResBody> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        // Only what the line needs, and only when it is written; the Uri clone shares the
        // request head's bytes (no copy of the path).
        let line = tracing::enabled!(target: TARGET, tracing::Level::INFO).then(|| {
            let peer = request
                .extensions()
                .get::<PeerAddr>()
                .map(|PeerAddr(peer)| peer.ip());
            Line {
                client: forwarded::client_ip(peer, request.headers(), &self.layer.trusted_proxies),
                uri: request.uri().clone(),
                version: request.version(),
            }
        });
        let method = request.method().clone();
        ResponseFuture {
            inner: self.inner.call(request),
            started,
            method,
            line,
            metrics: Arc::clone(&self.layer.metrics),
        }
    }
}

/// What the log line takes from the request.
#[derive(Debug)]
struct Line {
    client: IpAddr,
    uri: Uri,
    version: Version,
}

pin_project! {
    /// The future of [`AccessLog`]: the inner future, then the log line and the counters.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: Method,
        line: Option<Line>,
        metrics: Arc<Metrics>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &answer {
            let outcome = Outcome::of(response);
            this.metrics.request(this.method, response.status());
            match outcome {
                Outcome::Accepted { authenticator, .. } => this.metrics.accepted(authenticator),
                Outcome::Refused(outcome, _) => this.metrics.refused(outcome),
                Outcome::Other(_) => {}
            }
            if let Some(line) = this.line.take() {
                log(this.started, this.method, &line, response, &outcome);
            }
        }
        Poll::Ready(answer)
    }
}

/// What authentication made of a request, from the response extensions.
enum Outcome<'a> {
    Accepted {
        user: &'a str,
        authenticator: &'a str,
    },
    /// Refused by authentication, with the reason.
    Refused(AuthOutcome, Reason<'a>),
    /// Not an authentication answer (exempt, or refused before it), with a reason if any.
    Other(Option<Reason<'a>>),
}

/// A rejection reason: the markers' own texts, which never hold a credential.
enum Reason<'a> {
    Auth(&'a AuthRejection),
    Origin(&'a OriginRejection),
    Throttled(&'a Throttled),
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth(rejection) => rejection.fmt(f),
            Self::Origin(rejection) => rejection.fmt(f),
            Self::Throttled(throttled) => write!(
                f,
                "failed-login limit reached, retry after {} s",
                throttled.retry_after().as_secs()
            ),
        }
    }
}

impl<'a> Outcome<'a> {
    fn of<B>(response: &'a Response<B>) -> Self {
        let extensions = response.extensions();
        if let Some(principal) = extensions.get::<Authorization>() {
            // Forbidden by the policy after authentication: the user is known, the reason too.
            if let Some(rejection) = extensions.get::<AuthRejection>() {
                return Self::Refused(AuthOutcome::Rejected, Reason::Auth(rejection));
            }
            return Self::Accepted {
                user: principal.subject(),
                authenticator: principal.attribute(AUTHENTICATOR_ATTRIBUTE).unwrap_or("-"),
            };
        }
        if let Some(rejection) = extensions.get::<AuthRejection>() {
            let outcome = match rejection {
                AuthRejection::Unavailable => AuthOutcome::Unavailable,
                _ => AuthOutcome::Rejected,
            };
            return Self::Refused(outcome, Reason::Auth(rejection));
        }
        if let Some(throttled) = extensions.get::<Throttled>() {
            return Self::Refused(AuthOutcome::Throttled, Reason::Throttled(throttled));
        }
        Self::Other(extensions.get::<OriginRejection>().map(Reason::Origin))
    }
}

/// Writes the access line for `response`.
fn log<B: Body>(
    started: &Instant,
    method: &Method,
    line: &Line,
    response: &Response<B>,
    outcome: &Outcome<'_>,
) {
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| response.body().size_hint().exact());
    let (user, authenticator) = match outcome {
        Outcome::Accepted {
            user,
            authenticator,
        } => (*user, *authenticator),
        Outcome::Refused(..) | Outcome::Other(_) => ("-", "-"),
    };
    // Only a refusal allocates its text.
    let refusal;
    let reason = match outcome {
        Outcome::Refused(_, reason) | Outcome::Other(Some(reason)) => {
            refusal = reason.to_string();
            refusal.as_str()
        }
        Outcome::Accepted { .. } | Outcome::Other(None) => "-",
    };
    Entry {
        at: SystemTime::now(),
        client: line.client,
        method: method.as_str(),
        path: line.uri.path(),
        version: line.version,
        status: response.status().as_u16(),
        bytes,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        user,
        authenticator,
        reason,
    }
    .emit();
}
