//! The reverse proxy behind `AuthLayer`: forwards each request to one upstream MLflow server,
//! streaming both bodies.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode,
    header::{self, AUTHORIZATION},
};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tower_mlflow_auth::Authorization;
use tower_service::Service;

use crate::upstream;

/// Errors of a streamed body, boxed.
pub use tower_mlflow_core::BoxError;

/// The response body: the upstream's, streamed, or a short local message.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub use crate::upstream::{InvalidUpstream, InvalidUpstreamCa, Upstream, UpstreamRoots};

/// The client's address, put into the request extensions by the server loop.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Forwards requests to the upstream. Runs inside `AuthLayer`, so it only ever sees
/// authenticated (or exempt) requests.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    upstream: Upstream,
    user_header: HeaderName,
    forward_authorization: bool,
    timeout: Duration,
    forwarded_proto: HeaderValue,
}

impl Proxy {
    /// How long the upstream may take to send its response head by default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// A proxy to `upstream` that passes the principal's subject in `user_header`; an https
    /// upstream is verified against the webpki public roots.
    pub fn new(upstream: Upstream, user_header: HeaderName, forward_authorization: bool) -> Self {
        Self {
            client: upstream::client(UpstreamRoots::webpki()),
            upstream,
            user_header,
            forward_authorization,
            timeout: Self::DEFAULT_TIMEOUT,
            forwarded_proto: HeaderValue::from_static("http"),
        }
    }

    /// Verifies an https upstream against `roots` instead of the webpki public roots.
    #[must_use]
    pub fn with_upstream_roots(mut self, roots: UpstreamRoots) -> Self {
        self.client = upstream::client(roots);
        self
    }

    /// How long the upstream may take to send its response head (504 beyond).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Tells the upstream the client connected over TLS (`X-Forwarded-Proto: https`).
    #[must_use]
    pub fn with_tls_listener(mut self, tls: bool) -> Self {
        self.forwarded_proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        self
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
            .insert("x-forwarded-proto", self.forwarded_proto.clone());
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
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, upstream).await {
                Err(_elapsed) => {
                    tracing::warn!(?timeout, "the upstream did not answer in time");
                    Ok(local(
                        StatusCode::GATEWAY_TIMEOUT,
                        "The MLflow server behind this gateway did not answer in time.",
                    ))
                }
                Ok(Ok(response)) => {
                    let (mut parts, body) = response.into_parts();
                    remove_hop_by_hop(&mut parts.headers);
                    Ok(Response::from_parts(
                        parts,
                        body.map_err(BoxError::from).boxed(),
                    ))
                }
                Ok(Err(error)) => {
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
