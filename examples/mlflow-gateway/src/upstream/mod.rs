//! The upstream: its URL, the trust anchors of an https upstream, and the pooled connections.

mod pool;

use std::{fmt, sync::Arc, time::Duration};

use http::{
    HeaderValue, Uri,
    uri::{Authority, PathAndQuery, Scheme},
};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tower_mlflow_core::BoxError;

use self::pool::Pool;
pub(crate) use self::pool::PooledBody;

/// Where requests go: an `http[s]://host:port[/base]` URL.
#[derive(Clone, Debug)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    /// The `Host` header of every upstream request, made once. hyper's connections send
    /// the headers they are given, so the proxy sets it; it is what hyper-util's client
    /// would have formatted for each request.
    host: HeaderValue,
}

/// An `--upstream` URL that cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidUpstream(pub String);

impl std::fmt::Display for InvalidUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid upstream URL: {}", self.0)
    }
}

impl std::error::Error for InvalidUpstream {}

impl std::str::FromStr for Upstream {
    type Err = InvalidUpstream;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let uri: Uri = url
            .parse()
            .map_err(|e| InvalidUpstream(format!("{url:?}: {e}")))?;
        let scheme = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS => scheme.clone(),
            _ => {
                return Err(InvalidUpstream(format!(
                    "{url:?}: the upstream must be an http:// or https:// URL"
                )));
            }
        };
        if uri.query().is_some() {
            return Err(InvalidUpstream(format!("{url:?}: no query string allowed")));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| InvalidUpstream(format!("{url:?}: no host")))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        // What hyper-util's client would send: the host, and the port unless the scheme's.
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port() {
            Some(port) if port.as_u16() != default_port => {
                HeaderValue::try_from(format!("{}:{}", authority.host(), port.as_str()))
            }
            _ => HeaderValue::try_from(authority.host()),
        }
        .map_err(|_| InvalidUpstream(format!("{url:?}: the host cannot be sent in a header")))?;
        Ok(Self {
            scheme,
            authority,
            base_path,
            host,
        })
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

impl Upstream {
    /// The `Host` header of requests to the upstream.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host
    }

    /// Whether the upstream is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The origin-form target (`/base/path?query`) of a client's request on the upstream.
    pub(crate) fn origin_form_for(
        &self,
        path_and_query: Option<&PathAndQuery>,
    ) -> Result<Uri, http::Error> {
        Ok(Uri::from(self.joined(path_and_query)?))
    }

    /// `path_and_query` under the base path.
    fn joined(&self, path_and_query: Option<&PathAndQuery>) -> Result<PathAndQuery, http::Error> {
        Ok(match path_and_query {
            // Without a base path the client's path is the upstream's: shared, not copied.
            Some(pq) if self.base_path.is_empty() => pq.clone(),
            Some(pq) => PathAndQuery::try_from(format!("{}{}", self.base_path, pq.as_str()))?,
            None => PathAndQuery::try_from(format!("{}/", self.base_path))?,
        })
    }

    /// The absolute URL of a path on the upstream.
    pub(crate) fn uri_for(
        &self,
        path_and_query: Option<&PathAndQuery>,
    ) -> Result<Uri, http::Error> {
        let joined = self.joined(path_and_query)?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(joined)
            .build()
    }
}

/// The trust anchors for an https upstream.
#[derive(Clone)]
pub struct UpstreamRoots(Arc<RootCertStore>);

impl fmt::Debug for UpstreamRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamRoots")
            .field("len", &self.0.len())
            .finish()
    }
}

/// A PEM bundle that gives no usable CA certificate.
#[derive(Debug)]
pub struct InvalidUpstreamCa(BoxError);

impl fmt::Display for InvalidUpstreamCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no usable CA certificate in the PEM bundle")
    }
}

impl std::error::Error for InvalidUpstreamCa {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl UpstreamRoots {
    /// The webpki public roots (Mozilla's list).
    pub fn webpki() -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self(Arc::new(roots))
    }

    /// The CA certificates of a PEM bundle, and nothing else.
    pub fn from_pem(pem: &[u8]) -> Result<Self, InvalidUpstreamCa> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| InvalidUpstreamCa(e.into()))?;
            roots.add(cert).map_err(|e| InvalidUpstreamCa(e.into()))?;
        }
        if roots.is_empty() {
            return Err(InvalidUpstreamCa("the bundle holds no certificate".into()));
        }
        Ok(Self(Arc::new(roots)))
    }
}

/// The upstream connection pools, one a worker thread: a connection's task runs where its
/// requests are sent from, so a request that stays on its worker thread never hands its
/// upstream connection to another thread.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    per_worker: Arc<[Arc<Pool>]>,
    roots: UpstreamRoots,
    /// `scheme://authority` of the upstream.
    target: Uri,
}

impl Clients {
    /// `workers` pools (at least one) of connections to `upstream`, an https one verified
    /// against `roots`.
    pub(crate) fn new(upstream: &Upstream, roots: UpstreamRoots, workers: usize) -> Self {
        let target = Uri::builder()
            .scheme(upstream.scheme.clone())
            .authority(upstream.authority.clone())
            .path_and_query("/")
            .build()
            .expect("a scheme and an authority that parsed as a URI make one");
        Self::for_target(target, roots, workers)
    }

    fn for_target(target: Uri, roots: UpstreamRoots, workers: usize) -> Self {
        let connector = connector(&roots);
        let per_worker = (0..workers.max(1))
            .map(|_| Arc::new(Pool::new(connector.clone(), target.clone())))
            .collect();
        Self {
            per_worker,
            roots,
            target,
        }
    }

    /// The same number of pools, verifying against `roots`.
    pub(crate) fn with_roots(&self, roots: UpstreamRoots) -> Self {
        Self::for_target(self.target.clone(), roots, self.per_worker.len())
    }

    /// `workers` pools with the same roots.
    pub(crate) fn with_workers(&self, workers: usize) -> Self {
        Self::for_target(self.target.clone(), self.roots.clone(), workers)
    }

    /// The pool of the worker running on this thread; the first one on any other thread
    /// (a test's runtime, an embedding program's).
    pub(crate) fn current(&self) -> &Arc<Pool> {
        let index = crate::server::worker_index().unwrap_or(0);
        &self.per_worker[index % self.per_worker.len()]
    }
}

fn connector(roots: &UpstreamRoots) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default protocol versions")
    .with_root_certificates(Arc::clone(&roots.0))
    .with_no_client_auth();
    HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u: Upstream = "http://127.0.0.1:5000/mlflow/".parse().unwrap();
        let pq = PathAndQuery::from_static("/api/2.0/mlflow/runs/get?run_id=1");
        assert_eq!(
            u.uri_for(Some(&pq)).unwrap(),
            "http://127.0.0.1:5000/mlflow/api/2.0/mlflow/runs/get?run_id=1"
        );
        let root: Upstream = "http://127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            root.uri_for(Some(&pq)).unwrap(),
            "http://127.0.0.1:5000/api/2.0/mlflow/runs/get?run_id=1"
        );
        assert_eq!(root.uri_for(None).unwrap(), "http://127.0.0.1:5000/");
        assert_eq!(u.uri_for(None).unwrap(), "http://127.0.0.1:5000/mlflow/");
        let https: Upstream = "https://mlflow:5000".parse().unwrap();
        assert!(https.is_https());
        assert_eq!(https.to_string(), "https://mlflow:5000");
        assert!("ftp://mlflow:5000".parse::<Upstream>().is_err());
        assert!("127.0.0.1:5000".parse::<Upstream>().is_err());
        assert!("http://h:1/?a=b".parse::<Upstream>().is_err());
    }

    #[test]
    fn the_host_header_is_what_hyper_util_would_send() {
        // hyper-util's legacy client: `uri.host()`, then `:port` unless it is the scheme's.
        for (url, host) in [
            ("http://127.0.0.1:5000/mlflow", "127.0.0.1:5000"),
            ("http://mlflow", "mlflow"),
            ("http://mlflow:80", "mlflow"),
            ("https://mlflow", "mlflow"),
            ("https://mlflow:443/base", "mlflow"),
            ("https://mlflow:80", "mlflow:80"),
            ("http://mlflow:443", "mlflow:443"),
            ("http://[::1]:5000", "[::1]:5000"),
            ("http://user:secret@mlflow:5000", "mlflow:5000"),
        ] {
            let upstream: Upstream = url.parse().unwrap();
            assert_eq!(upstream.host_header(), host, "{url}");
        }
    }
}
