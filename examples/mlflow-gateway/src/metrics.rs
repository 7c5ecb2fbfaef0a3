//! Prometheus metrics (`--metrics-listen`): what the gateway counts, and the listener that
//! serves `GET /metrics` in the text exposition format (version 0.0.4).
//!
//! Every series is created when the gateway is assembled and kept as a handle, so recording
//! is a relaxed atomic add: no lock, no label lookup, no allocation per request.
//! [`prometheus_client`]'s own histogram takes a mutex per observation, so the two latency
//! histograms here are fixed-bucket atomics that implement its [`EncodeMetric`].

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_mlflow_auth::{
    Authenticator, Authorization,
    authenticator::{Challenge, RevocationListener},
    credentials::{Credentials, CredentialsError, CredentialsRef},
};

/// The principal attribute that names the authenticator which accepted it (`htpasswd`,
/// `mlflow-users`, `jwt`, …): set by [`Observed`], read by the access log and the metrics.
pub(crate) const AUTHENTICATOR_ATTRIBUTE: &str = "mlflow-gateway.authenticator";

/// The `method` label: the standard methods, everything else `other` (a client cannot mint
/// series).
const METHODS: [&str; 10] = [
    "get", "head", "post", "put", "patch", "delete", "options", "connect", "trace", "other",
];

/// The `status` label: `1xx` … `5xx`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The `outcome` label of `mlflow_gateway_auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    Rejected,
    Unavailable,
    Throttled,
}

/// The `authenticator` label of a request that no authenticator accepted.
const NO_AUTHENTICATOR: &str = "-";

/// Upper bounds (seconds) of the password-check histogram: bcrypt and scrypt take
/// milliseconds to a second.
const PASSWORD_CHECK_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Upper bounds (seconds) of the upstream response-head histogram.
const UPSTREAM_HEAD_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Every series the gateway records, and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// `[method][status class]`.
    requests: Vec<[Counter; 5]>,
    /// (authenticator, accepted counter), one per authenticator of the chain.
    accepted: Vec<(&'static str, Counter)>,
    rejected: Counter,
    unavailable: Counter,
    throttled: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    password_check: AtomicHistogram,
    upstream_head: AtomicHistogram,
    open_connections: Gauge,
    tls_handshake_failures: Counter,
}

impl Metrics {
    /// All series, with an `accepted` one for each of `authenticators` (the names
    /// [`Observed::tagged`] puts on principals).
    pub(crate) fn new(authenticators: &[&'static str]) -> Self {
        let mut registry = Registry::with_prefix("mlflow_gateway");
        let requests_family = Family::<[(&str, &str); 2], Counter>::default();
        let requests = METHODS
            .iter()
            .map(|method| {
                STATUS_CLASSES.map(|status| {
                    requests_family
                        .get_or_create(&[("method", method), ("status", status)])
                        .clone()
                })
            })
            .collect();
        registry.register(
            "requests",
            "Requests answered, by method and status class",
            requests_family.clone(),
        );
        let auth = Family::<[(&str, &str); 2], Counter>::default();
        let series = |authenticator, outcome| {
            auth.get_or_create(&[("authenticator", authenticator), ("outcome", outcome)])
                .clone()
        };
        let accepted = authenticators
            .iter()
            .map(|&name| (name, series(name, "accepted")))
            .collect();
        let rejected = series(NO_AUTHENTICATOR, "rejected");
        let unavailable = series(NO_AUTHENTICATOR, "unavailable");
        let throttled = series(NO_AUTHENTICATOR, "throttled");
        registry.register(
            "auth",
            "Authentication outcomes of requests that needed it, by the authenticator that \
             accepted them (- when none did)",
            auth.clone(),
        );
        let metrics = Self {
            requests,
            accepted,
            rejected,
            unavailable,
            throttled,
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            password_check: AtomicHistogram::new(&PASSWORD_CHECK_BUCKETS),
            upstream_head: AtomicHistogram::new(&UPSTREAM_HEAD_BUCKETS),
            open_connections: Gauge::default(),
            tls_handshake_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "credential_cache_hits",
            "Requests accepted from the verified-credential cache without a password check",
            metrics.cache_hits.clone(),
        );
        registry.register(
            "credential_cache_misses",
            "Password checks run (credentials not in the verified-credential cache)",
            metrics.cache_misses.clone(),
        );
        registry.register(
            "password_check_duration_seconds",
            "Time of a password check against the password stores (the cache's slow path)",
            metrics.password_check.clone(),
        );
        registry.register(
            "upstream_response_head_duration_seconds",
            "Time from sending a request upstream to its response head",
            metrics.upstream_head.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now",
            metrics.open_connections.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Client TLS handshakes that failed or timed out",
            metrics.tls_handshake_failures.clone(),
        );
        let build_info = Family::<[(&str, &str); 1], Gauge>::default();
        build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register(
            "build_info",
            "The gateway's version, as a label",
            build_info,
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts one answered request.
    pub(crate) fn request(&self, method: &Method, status: StatusCode) {
        let method = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::PATCH => 4,
            Method::DELETE => 5,
            Method::OPTIONS => 6,
            Method::CONNECT => 7,
            Method::TRACE => 8,
            _ => 9,
        };
        // StatusCode is 100..=999; 6xx and above are counted as 5xx.
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[method][class].inc();
    }

    /// Counts a request accepted by `authenticator` (an [`AUTHENTICATORS`] name).
    pub(crate) fn accepted(&self, authenticator: &str) {
        if let Some((_, counter)) = self
            .accepted
            .iter()
            .find(|(name, _)| *name == authenticator)
        {
            counter.inc();
        }
    }

    /// Counts a request that no authenticator accepted.
    pub(crate) fn refused(&self, outcome: AuthOutcome) {
        match outcome {
            AuthOutcome::Rejected => self.rejected.inc(),
            AuthOutcome::Unavailable => self.unavailable.inc(),
            AuthOutcome::Throttled => self.throttled.inc(),
        };
    }

    /// Times an upstream response head.
    pub(crate) fn upstream_head(&self, elapsed: Duration) {
        self.upstream_head.observe(elapsed);
    }

    /// A connection opened; the guard counts it closed when dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.open_connections.inc();
        OpenConnection(Arc::clone(self))
    }

    /// Counts a TLS handshake that failed or timed out.
    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// The exposition text.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// An open connection in `mlflow_gateway_open_connections`, until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}

/// A fixed-bucket histogram of atomics: an observation is three relaxed adds.
#[derive(Clone, Debug)]
struct AtomicHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    bounds: &'static [f64],
    /// One per bound, plus the overflow (`+Inf`) at the end.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self(Arc::new(HistogramCells {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }))
    }

    fn observe(&self, elapsed: Duration) {
        let cells = &self.0;
        let seconds = elapsed.as_secs_f64();
        let bucket = cells
            .bounds
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(cells.bounds.len());
        cells.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        cells.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let cells = &self.0;
        // Bounded buckets only (not cumulative: the encoder sums them); the encoder adds
        // `+Inf` from the count. Read the count first so no bucket exceeds it.
        let count = cells.count.load(Ordering::Relaxed);
        let buckets: Vec<(f64, u64)> = cells
            .bounds
            .iter()
            .zip(cells.counts.iter())
            .map(|(&bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        let bounded: u64 = buckets.iter().map(|(_, n)| n).sum();
        let sum = Duration::from_nanos(cells.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, count.max(bounded), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The names [`Observed::tagged`] puts on principals (and `session`, the browser sign-in's
/// principals), one `accepted` series each.
pub(crate) const AUTHENTICATORS: [&str; 5] =
    ["htpasswd", "mlflow-users", "tokens", "jwt", "session"];

/// The authenticators whose principals a verified-credential cache hit returns.
const PASSWORD_STORES: [&str; 2] = ["htpasswd", "mlflow-users"];

/// An authenticator seen by the metrics and the access log:
/// - [`tagged`](Self::tagged) names the store on the principals it accepts
///   ([`AUTHENTICATOR_ATTRIBUTE`]), so the log and the metrics can say which store let a
///   request in (a cache keeps the tagged principal, so its hits carry the name too);
/// - [`password_checks`](Self::password_checks) sits inside the verified-credential cache,
///   where every call is a miss: it counts the misses and times the checks;
/// - [`cache_hits`](Self::cache_hits) wraps the chain that the `AuthLayer` and its throttle
///   share: a fast-path answer from a password store is a cache hit. The throttle asks first
///   and hands a hit to the layer, which does not ask again, so each hit counts once.
#[derive(Clone, Debug)]
pub(crate) struct Observed<A> {
    inner: A,
    name: Option<&'static str>,
    checks: Option<Arc<Metrics>>,
    hits: Option<Arc<Metrics>>,
}

impl<A> Observed<A> {
    /// Names what `inner` accepts `name` (one of [`AUTHENTICATORS`]).
    pub(crate) fn tagged(inner: A, name: &'static str) -> Self {
        Self {
            inner,
            name: Some(name),
            checks: None,
            hits: None,
        }
    }

    /// Counts and times `inner`'s checks as cache misses.
    pub(crate) fn password_checks(inner: A, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            name: None,
            checks: Some(metrics),
            hits: None,
        }
    }

    /// Counts `inner`'s fast-path answers from a password store as cache hits.
    pub(crate) fn cache_hits(inner: A, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            name: None,
            checks: None,
            hits: Some(metrics),
        }
    }

    /// `principal` named after this store, unless an inner store already named it (no copy
    /// then: a cache hit shares the cached principal).
    fn tag(&self, principal: Authorization) -> Authorization {
        match self.name {
            Some(name) if principal.attribute(AUTHENTICATOR_ATTRIBUTE).is_none() => {
                principal.with_attribute(AUTHENTICATOR_ATTRIBUTE, name)
            }
            _ => principal,
        }
    }
}

impl<A: Authenticator> Authenticator for Observed<A> {
    type Error = A::Error;

    fn credentials<'a>(
        &self,
        parts: &'a http::request::Parts,
    ) -> Result<CredentialsRef<'a>, CredentialsError> {
        self.inner.credentials(parts)
    }

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Self::Error> {
        let started = Instant::now();
        let answer = self.inner.authenticate(credentials).await;
        if let Some(metrics) = &self.checks {
            metrics.cache_misses.inc();
            metrics.password_check.observe(started.elapsed());
        }
        Ok(answer?.map(|principal| self.tag(principal)))
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        let principal = self.tag(self.inner.try_accept_now(credentials)?);
        if let Some(metrics) = &self.hits
            && principal
                .attribute(AUTHENTICATOR_ATTRIBUTE)
                .is_some_and(|name| PASSWORD_STORES.contains(&name))
        {
            metrics.cache_hits.inc();
        }
        Some(principal)
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        self.inner.accepts(credentials)
    }

    fn subscribe_revocations(&self, listener: RevocationListener) {
        self.inner.subscribe_revocations(listener);
    }

    fn challenges(&self) -> &[Challenge] {
        self.inner.challenges()
    }
}

/// Serves `GET /metrics` on `listener` (HTTP/1.1, no authentication: bind it to a private
/// address) until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, Infallible>(exposition(&request, &metrics)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = served.await {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

/// The answer of the metrics listener: the exposition for `GET /metrics`, 404 or 405
/// otherwise.
fn exposition(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body, content_type) = if request.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            String::from("not found\n"),
            "text/plain",
        )
    } else if request.method() != Method::GET && request.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            String::from("use GET\n"),
            "text/plain",
        )
    } else {
        (
            StatusCode::OK,
            metrics.encode(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut response = Response::new(Full::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Binds `--metrics-listen`.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_encode_what_was_recorded() {
        let metrics = Metrics::new(&["htpasswd"]);
        metrics.request(&Method::GET, StatusCode::OK);
        metrics.request(
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::UNAUTHORIZED,
        );
        metrics.accepted("htpasswd");
        metrics.refused(AuthOutcome::Throttled);
        metrics.upstream_head(Duration::from_millis(3));
        metrics.upstream_head(Duration::from_secs(9));
        let text = metrics.encode();
        for line in [
            "mlflow_gateway_requests_total{method=\"get\",status=\"2xx\"} 1",
            "mlflow_gateway_requests_total{method=\"other\",status=\"4xx\"} 1",
            "mlflow_gateway_auth_total{authenticator=\"htpasswd\",outcome=\"accepted\"} 1",
            "mlflow_gateway_auth_total{authenticator=\"-\",outcome=\"throttled\"} 1",
            "mlflow_gateway_upstream_response_head_duration_seconds_bucket{le=\"0.005\"} 1",
            "mlflow_gateway_upstream_response_head_duration_seconds_bucket{le=\"5\"} 1",
            "mlflow_gateway_upstream_response_head_duration_seconds_bucket{le=\"+Inf\"} 2",
            "mlflow_gateway_upstream_response_head_duration_seconds_count 2",
            "mlflow_gateway_open_connections 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(
            text.contains("mlflow_gateway_build_info{version=\""),
            "{text}"
        );
    }

    #[test]
    fn an_open_connection_counts_until_dropped() {
        let metrics = Arc::new(Metrics::new(&[]));
        let open = metrics.connection_opened();
        assert!(
            metrics
                .encode()
                .contains("mlflow_gateway_open_connections 1\n")
        );
        drop(open);
        assert!(
            metrics
                .encode()
                .contains("mlflow_gateway_open_connections 0\n")
        );
    }
}
