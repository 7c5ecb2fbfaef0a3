//! The access log and the request metrics: one INFO event per request on the target
//! [`TARGET`], emitted when the response head is ready, and the counters of
//! [`Metrics`](crate::metrics::Metrics).
//!
//! [`AccessLogLayer`] is the outermost layer, so it sees every answer: the origin check's
//! 403, the throttle's 429, the `AuthLayer`'s 401/403/503 (their markers in the response
//! extensions give the reason) and the proxy's. [`RecordPrincipalLayer`] sits inside the
//! `AuthLayer` and copies the accepted principal into the response extensions, where this
//! layer reads the user and the authenticator. The event carries no header value and no
//! query string: only the path, the principal's name and fixed reason texts.

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

/// Writes the access-log event for `response`.
fn log<B: Body>(
    started: &Instant,
    method: &Method,
    line: &Line,
    response: &Response<B>,
    outcome: &Outcome<'_>,
) {
    // Whole microseconds: the clock's noise below that is no information.
    let duration_ms = started.elapsed().as_micros() as f64 / 1000.0;
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
    let time = rfc3339(SystemTime::now());
    tracing::info!(
        target: TARGET,
        // ASCII digits and punctuation only.
        time = std::str::from_utf8(&time).unwrap_or("-"),
        client = %line.client,
        method = method.as_str(),
        path = line.uri.path(),
        version = version(line.version),
        status = response.status().as_u16(),
        bytes,
        duration_ms,
        user,
        authenticator,
        reason,
    );
}

fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// A UTC time as RFC 3339 with milliseconds, `2026-12-01T13:04:23.123Z`.
fn rfc3339(at: SystemTime) -> [u8; 24] {
    let micros = rfc3339_micros(at);
    let mut text = [b'Z'; 24];
    text[..23].copy_from_slice(&micros[..23]);
    text
}

/// A UTC time as RFC 3339 with microseconds, `2026-12-01T13:04:23.123456Z` (tracing's own
/// timestamps), digit by digit into an array: it runs once or twice a request, and `write!`
/// with widths cost as much as the rest of the line. Past the year 9999 only its last four
/// digits are kept.
pub(crate) fn rfc3339_micros(at: SystemTime) -> [u8; 27] {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |start: usize, width: usize, mut value: u64| {
        for digit in text[start..start + width].iter_mut().rev() {
            // `value % 10` is a digit.
            *digit = b"0123456789"[(value % 10) as usize];
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 6, u64::from(since_epoch.subsec_micros()));
    text
}

/// (year, month, day) of `days` since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Copies the accepted principal from the request into the response extensions, for
/// [`AccessLog`]; see the [module docs](self). Sits inside the `AuthLayer`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecordPrincipalLayer;

impl<S> Layer<S> for RecordPrincipalLayer {
    type Service = RecordPrincipal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordPrincipal { inner }
    }
}

/// The service of [`RecordPrincipalLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RecordPrincipal<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for RecordPrincipal<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RecordPrincipalFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // An Arc clone: the principal itself is not copied.
        let principal = request.extensions().get::<Authorization>().cloned();
        RecordPrincipalFuture {
            inner: self.inner.call(request),
            principal,
        }
    }
}

pin_project! {
    /// The future of [`RecordPrincipal`].
    pub(crate) struct RecordPrincipalFuture<F> {
        #[pin]
        inner: F,
        principal: Option<Authorization>,
    }
}

impl<F, ResBody, E> Future for RecordPrincipalFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut answer = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(principal)) = (&mut answer, this.principal.take()) {
            response.extensions_mut().insert(principal);
        }
        Poll::Ready(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |secs, millis| {
            let text = rfc3339(
                SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(secs)
                    + std::time::Duration::from_millis(millis),
            );
            String::from_utf8(text.to_vec()).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (a leap day) 23:59:59.999.
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_798_761_600, 5), "2027-01-01T00:00:00.005Z");
        let micros = rfc3339_micros(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_709_251_199_999_999),
        );
        assert_eq!(&micros, b"2024-02-29T23:59:59.999999Z");
    }
}
