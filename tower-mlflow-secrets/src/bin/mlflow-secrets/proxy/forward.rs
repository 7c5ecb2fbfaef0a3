//! One request through the proxy: the head rewritten for the tracking server, the body held
//! for a replay when it is small, the credential added by `SecretHeader`, and the answer
//! streamed back.

use std::{convert::Infallible, sync::Arc};

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header,
};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::{Body as _, Incoming};
use tower_mlflow_core::http::error_chain;
use tower_mlflow_secrets::{SecretHeader, SecretHeaderError};
use tower_service::Service as _;

use super::{ProxyBody, UpstreamBody, upstream::Upstream, upstream::UpstreamClient};

/// Copies a request for the replay after a `401`: only bodies held in memory can be sent
/// twice; a streamed one gets the `401` back as it came.
pub(crate) type CopyRequest = fn(&Request<UpstreamBody>) -> Option<Request<UpstreamBody>>;

/// The client with the credential layer on top.
pub(crate) type Authorized = SecretHeader<UpstreamClient, CopyRequest>;

/// The proxy's request handler; cheap to clone (one per connection).
#[derive(Clone)]
pub(crate) struct Forward {
    upstream: Arc<Upstream>,
    service: Authorized,
    max_replay_body: u64,
}

impl Forward {
    pub(crate) fn new(upstream: Upstream, service: Authorized, max_replay_body: u64) -> Self {
        Self {
            upstream: Arc::new(upstream),
            service,
            max_replay_body,
        }
    }

    /// Forwards `request`; every failure is an answer, in MLflow's JSON error shape.
    pub(crate) async fn handle(
        mut self,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let (mut parts, body) = request.into_parts();
        if parts.method == Method::CONNECT {
            return Ok(local(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_REQUEST",
                "mlflow-secrets proxy forwards to MLFLOW_TRACKING_URI only; it is not a CONNECT proxy",
            ));
        }
        let Some(uri) = self.upstream.uri_for(&parts.uri) else {
            return Ok(local(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the request target is not a path",
            ));
        };
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        remove_hop_by_hop(&mut parts.headers);
        // The client sets Host from the tracking server's URI.
        parts.headers.remove(header::HOST);
        let body = match body.size_hint().exact() {
            Some(len) if len <= self.max_replay_body => {
                match Limited::new(body, usize::try_from(len).unwrap_or(usize::MAX))
                    .collect()
                    .await
                {
                    Ok(collected) => Either::Left(Full::new(collected.to_bytes())),
                    Err(e) => {
                        eprintln_request_error("reading the request body", &*e);
                        return Ok(local(
                            StatusCode::BAD_REQUEST,
                            "BAD_REQUEST",
                            "the request body could not be read",
                        ));
                    }
                }
            }
            _ => Either::Right(body),
        };
        let request = Request::from_parts(parts, body);
        // The client is always ready (its pool waits inside the call).
        let result = match std::future::poll_fn(|cx| self.service.poll_ready(cx)).await {
            Ok(()) => self.service.call(request).await,
            Err(e) => Err(e),
        };
        Ok(match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Left(body))
            }
            Err(err) => failure(&err),
        })
    }
}

/// The copy for a replay: requests whose body is in memory.
pub(crate) fn copy_if_held(request: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let Either::Left(body) = request.body() else {
        return None;
    };
    let mut copy = Request::new(Either::Left(body.clone()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// The answer when no response came from the tracking server. MLflow's client retries 502
/// and 503 with backoff.
fn failure(err: &SecretHeaderError) -> Response<ProxyBody> {
    eprintln_request_error("request", err);
    if err.is_unavailable() {
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            "mlflow-secrets proxy has no usable credential (the secret store failed; see its stderr)",
        );
    }
    local(
        StatusCode::BAD_GATEWAY,
        "TEMPORARILY_UNAVAILABLE",
        "mlflow-secrets proxy cannot reach the tracking server",
    )
}

/// Errors go to stderr: they name steps and causes, never the secret.
#[allow(clippy::print_stderr)]
fn eprintln_request_error(step: &str, err: &(dyn std::error::Error + 'static)) {
    eprintln!("proxy: {step} failed: {}", error_chain(err));
}

/// An answer made by the proxy itself, in MLflow's error shape.
fn local(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error_code": code, "message": message }).to_string();
    let mut response = Response::new(Either::Right(Full::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and two old spellings), which stay on
/// their own hop.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Removes the hop-by-hop headers, and those that `Connection` names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or_default().split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_go() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic eDp5"),
            ("content-type", "application/json"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        remove_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type"]);
    }

    #[test]
    fn only_bodies_in_memory_are_copied() {
        let held: Request<UpstreamBody> = Request::post("http://h/x")
            .header("x-a", "1")
            .body(Either::Left(Full::from("{}")))
            .unwrap();
        let copy = copy_if_held(&held).unwrap();
        assert_eq!(copy.method(), Method::POST);
        assert_eq!(copy.uri(), "http://h/x");
        assert_eq!(copy.headers()["x-a"], "1");
        assert!(matches!(copy.body(), Either::Left(_)));
    }

    #[test]
    fn local_answers_are_mlflow_errors() {
        let response = local(StatusCode::BAD_GATEWAY, "TEMPORARILY_UNAVAILABLE", "down");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let Either::Right(body) = response.into_body() else {
            panic!("not a local body");
        };
        let bytes = futures_body(body);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error_code"], "TEMPORARILY_UNAVAILABLE");
        assert_eq!(json["message"], "down");
    }

    fn futures_body(body: Full<Bytes>) -> Bytes {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes()
    }
}
