//! The one tracking server behind the proxy: where requests go and the pooled client that
//! takes them there.

use std::{fmt, sync::Arc, time::Duration};

use http::{
    Uri,
    uri::{Authority, PathAndQuery, Scheme},
};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};

use super::UpstreamBody;

/// The pooled client to the tracking server: plain http or rustls (aws-lc-rs) by scheme.
pub(crate) type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, UpstreamBody>;

/// `MLFLOW_TRACKING_URI` as the proxy uses it: scheme, authority and a base path that every
/// request path is appended to.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
}

impl Upstream {
    /// How long connecting (TCP, not TLS) to the tracking server may take.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long an idle pooled connection is kept.
    const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// Why `uri` cannot be proxied, if it cannot.
    pub(crate) fn from_tracking_uri(uri: &Uri) -> Result<Self, &'static str> {
        let scheme = uri
            .scheme()
            .filter(|s| **s == Scheme::HTTP || **s == Scheme::HTTPS)
            .ok_or("it must be an http:// or https:// URL")?;
        let authority = uri.authority().ok_or("it has no host")?;
        if authority.as_str().contains('@') {
            return Err("it carries user info; the credential comes from the secret store");
        }
        if uri.query().is_some() {
            return Err("it has a query string");
        }
        Ok(Self {
            scheme: scheme.clone(),
            authority: authority.clone(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// Where a request for `uri` (origin form, or absolute form whose authority is
    /// ignored) goes: the base path joined with the request's path and query.
    pub(crate) fn uri_for(&self, uri: &Uri) -> Option<Uri> {
        let path_and_query = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        // Joined by concatenation, so a path that does not start at the root (`*`) could
        // land outside the base path.
        if !path_and_query.starts_with('/') {
            return None;
        }
        let joined = format!("{}{path_and_query}", self.base_path);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(joined)
            .build()
            .ok()
    }

    /// The client, trusting the CA certificates of `ca_pem`, or the webpki public roots.
    pub(crate) fn client(ca_pem: Option<&[u8]>) -> Result<UpstreamClient, String> {
        let roots = match ca_pem {
            Some(pem) => roots_from_pem(pem)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Self::CONNECT_TIMEOUT));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Self::POOL_IDLE_TIMEOUT)
            .build(connector))
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| format!("certificate #{index}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate #{index}: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate in the bundle".to_owned());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(uri: &str) -> Result<Upstream, &'static str> {
        // `http::Uri` cannot even parse some (`file:///…`); `exec`'s check refuses those.
        let uri = uri.parse().map_err(|_| "not a URI")?;
        Upstream::from_tracking_uri(&uri)
    }

    #[test]
    fn requests_go_under_the_base_path() {
        let base = upstream("https://mlflow.example.com/team/mlflow/").unwrap();
        assert_eq!(base.to_string(), "https://mlflow.example.com/team/mlflow");
        let to = |uri: &str| base.uri_for(&uri.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            to("/api/2.0/mlflow/experiments/get?experiment_id=0").as_deref(),
            Some(
                "https://mlflow.example.com/team/mlflow/api/2.0/mlflow/experiments/get?experiment_id=0"
            )
        );
        // An absolute-form request keeps its path; its authority is not where it goes.
        assert_eq!(
            to("http://elsewhere.example.net:1/health").as_deref(),
            Some("https://mlflow.example.com/team/mlflow/health")
        );
        assert_eq!(to("*"), None);
        let root = upstream("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            root.uri_for(&"/health".parse().unwrap()).unwrap(),
            "http://127.0.0.1:5000/health"
        );
    }

    #[test]
    fn tracking_uris_that_cannot_be_proxied() {
        assert!(upstream("file:///tmp/mlruns").is_err());
        assert!(upstream("databricks://profile").is_err());
        assert!(upstream("/mlruns").is_err());
        assert!(
            upstream("https://user:pass@mlflow.example.com")
                .unwrap_err()
                .contains("user info")
        );
        assert!(upstream("https://mlflow.example.com/?x=1").is_err());
    }

    #[test]
    fn a_ca_bundle_must_hold_a_certificate() {
        assert!(Upstream::client(Some(b"not pem")).is_err());
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        assert!(Upstream::client(Some(cert.cert.pem().as_bytes())).is_ok());
    }
}
