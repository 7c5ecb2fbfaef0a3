//! The reverse proxy behind `AuthLayer`: forwards each request to one upstream MLflow server,
//! streaming both bodies.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri,
    header::{self, AUTHORIZATION},
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower_mlflow_auth::Authorization;
use tower_service::Service;

/// Errors of a streamed body, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body: the upstream's, streamed, or a short local message.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// The client's address, put into the request extensions by the server loop.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Where requests go: an `http://host:port[/base]` URL.
#[derive(Clone, Debug)]
pub struct Upstream {
    authority: Authority,
    base_path: String,
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
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(InvalidUpstream(format!(
                "{url:?}: only http:// upstreams are supported (run the gateway next to MLflow)"
            )));
        }
        if uri.query().is_some() {
            return Err(InvalidUpstream(format!("{url:?}: no query string allowed")));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| InvalidUpstream(format!("{url:?}: no host")))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            authority,
            base_path,
        })
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.base_path)
    }
}

impl Upstream {
    fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let pq = path_and_query.map_or("/", PathAndQuery::as_str);
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(format!("{}{pq}", self.base_path))
            .build()
    }
}

/// Forwards requests to the upstream. Runs inside `AuthLayer`, so it only ever sees
/// authenticated (or exempt) requests.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<HttpConnector, Incoming>,
    upstream: Upstream,
    user_header: HeaderName,
    forward_authorization: bool,
}

impl Proxy {
    /// A proxy to `upstream` that passes the principal's subject in `user_header`.
    pub fn new(upstream: Upstream, user_header: HeaderName, forward_authorization: bool) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            client,
            upstream,
            user_header,
            forward_authorization,
        }
    }

    /// Rewrites the request head for the upstream.
    fn prepare(&self, parts: &mut http::request::Parts) {
        let original_host = parts.headers.get(header::HOST).cloned();
        remove_hop_by_hop(&mut parts.headers);
        // The client may not choose the identity the upstream sees: drop every copy of the
        // user header, including spellings with `_` that some servers treat as `-`.
        let user = self.user_header.as_str();
        let spoofed: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|name| name.as_str().replace('_', "-") == user)
            .cloned()
            .collect();
        for name in spoofed {
            parts.headers.remove(name);
        }
        if let Some(principal) = parts.extensions.get::<Authorization>()
            && let Ok(value) = HeaderValue::from_str(principal.subject())
        {
            parts.headers.insert(self.user_header.clone(), value);
        }
        if !self.forward_authorization {
            parts.headers.remove(AUTHORIZATION);
        }
        // We are the edge: forwarding headers describe the connection we accepted.
        if let Some(PeerAddr(peer)) = parts.extensions.get::<PeerAddr>() {
            let ip = peer.ip().to_string();
            let value = match parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(earlier) => format!("{earlier}, {ip}"),
                None => ip,
            };
            if let Ok(value) = HeaderValue::try_from(value) {
                parts.headers.insert("x-forwarded-for", value);
            }
        }
        parts
            .headers
            .insert("x-forwarded-proto", HeaderValue::from_static("http"));
        match original_host {
            Some(host) => parts.headers.insert("x-forwarded-host", host),
            None => parts.headers.remove("x-forwarded-host"),
        };
        // hyper sets Host from the upstream URI.
        parts.headers.remove(header::HOST);
    }
}

impl Service<Request<Incoming>> for Proxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        self.prepare(&mut parts);
        let uri = match self.upstream.uri_for(parts.uri.path_and_query()) {
            Ok(uri) => uri,
            Err(_) => {
                return Box::pin(async { Ok(local(StatusCode::BAD_REQUEST, "bad request URI")) });
            }
        };
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let upstream = self.client.request(Request::from_parts(parts, body));
        Box::pin(async move {
            match upstream.await {
                Ok(response) => {
                    let (mut parts, body) = response.into_parts();
                    remove_hop_by_hop(&mut parts.headers);
                    Ok(Response::from_parts(
                        parts,
                        body.map_err(BoxError::from).boxed(),
                    ))
                }
                Err(error) => {
                    tracing::warn!(%error, "upstream request failed");
                    Ok(local(
                        StatusCode::BAD_GATEWAY,
                        "The MLflow server behind this gateway is unavailable.",
                    ))
                }
            }
        })
    }
}

/// A short plain-text response made by the gateway itself.
fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(Full::from(text).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1, including those named in `Connection`.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
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
        assert!("https://mlflow:5000".parse::<Upstream>().is_err());
        assert!("127.0.0.1:5000".parse::<Upstream>().is_err());
        assert!("http://h:1/?a=b".parse::<Upstream>().is_err());
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
