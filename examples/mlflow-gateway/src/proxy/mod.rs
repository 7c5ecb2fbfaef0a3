//! The reverse proxy behind `AuthLayer`: forwards each request to one upstream MLflow server,
//! streaming both bodies.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::FutureExt as _;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode,
    header::{self, AUTHORIZATION},
};
use hyper::body::Incoming;
use tower_mlflow_auth::{Authorization, Challenge, Scheme};
use tower_service::Service;

use crate::{
    assertion::{Asserter, Delegation},
    forwarded::{self, Hop},
    metrics::Metrics,
    tunnel::{self, TunnelScope},
    upstream,
};

/// Errors of a streamed body, boxed.
pub use tower_mlflow_core::BoxError;

mod hop_by_hop;
mod recent;

use self::{hop_by_hop::remove_hop_by_hop, recent::Recent};

pub use crate::body::ProxyBody;
pub use crate::forwarded::{InvalidTrustedProxy, TrustedProxy};
pub use crate::upstream::{InvalidUpstream, InvalidUpstreamCa, Upstream, UpstreamRoots};

/// The client's address, put into the request extensions by the server loop.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Forwards requests to the upstream. Runs inside `AuthLayer`, so it only ever sees
/// authenticated (or exempt) requests.
///
/// Its answer carries the request's extensions (the principal, the client's address, the
/// markers of the layers in front), for the layers outside: the access log reads the
/// principal there. They are not sent upstream, and moving them costs no allocation where
/// copying the principal into a new map would cost three.
#[derive(Clone, Debug)]
pub struct Proxy {
    /// One pool a worker thread.
    clients: upstream::Clients,
    upstream: Upstream,
    user_header: HeaderName,
    forward_authorization: bool,
    timeout: Duration,
    forwarded_proto: HeaderValue,
    trusted_proxies: Arc<[TrustedProxy]>,
    challenges: Challenges,
    /// Signs who the user is for MLflow (`--mlflow-assertion-secret-file`).
    delegation: Option<Arc<Delegation>>,
    /// Times the upstream's response heads.
    metrics: Option<Arc<Metrics>>,
    /// The header values of the connection's last request.
    recent: Recent,
}

/// The `WWW-Authenticate` values of the proxy's own 401, as `AuthLayer` renders them.
#[derive(Clone, Debug, Default)]
struct Challenges {
    plain: Arc<[HeaderValue]>,
    /// With `error="invalid_token"` on `Bearer` (RFC 6750 §3.1), for a bearer principal.
    invalid_token: Arc<[HeaderValue]>,
}

impl Proxy {
    /// How long the upstream may take to send its response head by default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// A proxy to `upstream` that passes the principal's subject in `user_header`; an https
    /// upstream is verified against the webpki public roots.
    pub fn new(upstream: Upstream, user_header: HeaderName, forward_authorization: bool) -> Self {
        Self {
            clients: upstream::Clients::new(&upstream, UpstreamRoots::webpki(), 1),
            upstream,
            user_header,
            forward_authorization,
            timeout: Self::DEFAULT_TIMEOUT,
            forwarded_proto: HeaderValue::from_static("http"),
            trusted_proxies: Arc::new([]),
            challenges: Challenges::default(),
            delegation: None,
            metrics: None,
            recent: Recent::default(),
        }
    }

    /// Records each upstream response head's latency in `metrics`.
    #[must_use]
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Adds a signed assertion of the principal to every authenticated request, for MLflow's
    /// `mlflow_gateway_auth`, and never forwards the client's `Authorization`. With
    /// `admin_group`, a bearer principal's admin flag is asserted (see `AdminClaim::of`).
    #[must_use]
    pub fn with_assertion(mut self, asserter: Asserter, admin_group: bool) -> Self {
        self.delegation = Some(Arc::new(Delegation::new(asserter, admin_group)));
        self
    }

    /// Verifies an https upstream against `roots` instead of the webpki public roots.
    #[must_use]
    pub fn with_upstream_roots(mut self, roots: UpstreamRoots) -> Self {
        self.clients = self.clients.with_roots(roots);
        self
    }

    /// One upstream pool for each of `workers` worker threads (see `server`).
    #[must_use]
    pub(crate) fn with_workers(mut self, workers: usize) -> Self {
        self.clients = self.clients.with_workers(workers);
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

    /// Trusts the forwarding headers of peers in these networks (`--trusted-proxies`).
    #[must_use]
    pub fn with_trusted_proxies(mut self, trusted: Vec<TrustedProxy>) -> Self {
        self.trusted_proxies = trusted.into();
        self
    }

    /// The challenges of the `AuthLayer` in front (its `realm` and its authenticator's
    /// `challenges`), for the 401 the proxy sends itself when a subject cannot go in the user
    /// header. A realm that cannot go in a header adds nothing (`AuthLayer` refuses it).
    #[must_use]
    pub fn with_challenges(mut self, realm: &str, challenges: &[Challenge]) -> Self {
        let values = |invalid_token: bool| -> Arc<[HeaderValue]> {
            challenges
                .iter()
                .filter_map(|challenge| {
                    let scheme = challenge.scheme();
                    let error = if invalid_token && scheme == Challenge::BEARER.scheme() {
                        ", error=\"invalid_token\""
                    } else {
                        ""
                    };
                    HeaderValue::try_from(format!("{scheme} realm=\"{realm}\"{error}")).ok()
                })
                .collect()
        };
        self.challenges = Challenges {
            plain: values(false),
            invalid_token: values(true),
        };
        self
    }

    /// Sets `X-Forwarded-Email` and `X-Forwarded-Groups` from the principal's `email` and
    /// `groups` attributes, when it has them; the user header, should it be one of these
    /// names, keeps the subject.
    fn forward_attributes(&self, principal: &Authorization, headers: &mut HeaderMap) {
        for (name, attribute) in [
            (forwarded::X_FORWARDED_EMAIL, "email"),
            (forwarded::X_FORWARDED_GROUPS, "groups"),
        ] {
            let Some(value) = principal.attribute(attribute) else {
                continue;
            };
            if name == self.user_header {
                continue;
            }
            match HeaderValue::from_str(value) {
                Ok(value) => {
                    headers.insert(name, value);
                }
                // Without it the upstream sees less, never someone else: the subject is sent.
                Err(_) => tracing::warn!(
                    attribute,
                    "not forwarded: the attribute cannot be sent in a header"
                ),
            }
        }
    }

    /// Rewrites the request head for the upstream; `Err` is the answer to send instead.
    fn prepare(&mut self, parts: &mut http::request::Parts) -> Result<(), Refused> {
        // The upstream joins the base path and this path by concatenation: an HTTP/2 `:path`
        // such as `*` or `-admin/x` would escape the base path.
        if !parts.uri.path().starts_with('/') {
            return Err(Refused::new(StatusCode::BAD_REQUEST, "bad request path"));
        }
        let host = parts
            .uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
            .or_else(|| parts.headers.get(header::HOST).cloned());
        remove_hop_by_hop(&mut parts.headers);
        // The client may not choose the identity the upstream sees: drop every copy of the
        // identity headers, including spellings with `_` that WSGI/ASGI servers read as `-`
        // (CVE-2025-64484 in oauth2-proxy). Only the gateway signs assertions, delegating or
        // not.
        forwarded::remove_all_spellings(
            &mut parts.headers,
            &[
                self.user_header.as_str(),
                forwarded::X_FORWARDED_USER.as_str(),
                forwarded::X_FORWARDED_EMAIL.as_str(),
                forwarded::X_FORWARDED_GROUPS.as_str(),
                Asserter::HEADER.as_str(),
            ],
        );
        if let Some(principal) = parts.extensions.get::<Authorization>() {
            let Ok(value) = self.recent.subject(principal.subject()) else {
                // Forwarding without the identity header would make an authenticated request
                // look anonymous upstream.
                tracing::warn!(
                    subject = ?principal.subject(),
                    "refused: the subject cannot be sent in a header"
                );
                let challenges = if principal.scheme() == Scheme::Bearer {
                    &self.challenges.invalid_token
                } else {
                    &self.challenges.plain
                };
                return Err(Refused {
                    status: StatusCode::UNAUTHORIZED,
                    text: "This user name cannot be passed to the MLflow server.",
                    challenges: challenges.clone(),
                });
            };
            parts.headers.insert(self.user_header.clone(), value);
            self.forward_attributes(principal, &mut parts.headers);
        }
        if !self.forward_authorization || self.delegation.is_some() {
            parts.headers.remove(AUTHORIZATION);
        }
        let (peer, trusted) = match parts.extensions.get::<PeerAddr>() {
            Some(PeerAddr(peer)) => {
                let (text, trusted) = self.recent.peer(peer.ip(), &self.trusted_proxies);
                (Some(text), trusted)
            }
            None => (None, false),
        };
        forwarded::rewrite(
            &mut parts.headers,
            &Hop {
                peer,
                trusted,
                proto: &self.forwarded_proto,
                host,
            },
        );
        // The upstream's, as hyper-util's client would set it from the URI.
        parts
            .headers
            .insert(header::HOST, self.upstream.host_header().clone());
        Ok(())
    }
}

impl Service<Request<Incoming>> for Proxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let client_side = is_websocket_upgrade(&request).then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        // Only a tunnel keeps the connection's slot and shutdown signal.
        let scope = parts
            .extensions
            .remove::<TunnelScope>()
            .filter(|_| client_side.is_some());
        if let Err(refused) = self.prepare(&mut parts) {
            let extensions = std::mem::take(&mut parts.extensions);
            return Box::pin(async move { Ok(with_extensions(refused.response(), extensions)) });
        }
        if client_side.is_some() {
            // Hop-by-hop, so removed by `prepare`; asked for again on our own hop.
            set_websocket_upgrade(&mut parts.headers);
        }
        let uri = match self.upstream.origin_form_for(parts.uri.path_and_query()) {
            Ok(uri) => uri,
            Err(_) => {
                let answer = local(StatusCode::BAD_REQUEST, "bad request URI");
                let extensions = std::mem::take(&mut parts.extensions);
                return Box::pin(async { Ok(with_extensions(answer, extensions)) });
            }
        };
        parts.uri = uri;
        if let Some(delegation) = &self.delegation {
            // Signed over the upstream path, base path included, as MLflow sees it.
            delegation.assert(&mut parts);
        }
        parts.version = http::Version::HTTP_11;
        // Read by `prepare` and the delegation; for the answer now, not for the upstream.
        let extensions = std::mem::take(&mut parts.extensions);
        let pool = Arc::clone(self.clients.current());
        let request = Request::from_parts(parts, body);
        let timeout = self.timeout;
        // The clock is read only when there are metrics to record the latency in.
        let timing = self
            .metrics
            .clone()
            .map(|metrics| (metrics, tokio::time::Instant::now()));
        // A combinator, not an async block: the block would keep the request (or the send
        // future) as it was captured beside the copy it awaits, for the whole exchange
        // (1,384 bytes boxed; with the send future captured, 2,112).
        let sending = tokio::time::timeout(timeout, pool.send(request));
        Box::pin(sending.map(move |answer| {
            if let (Some((metrics, started)), Ok(Ok(_))) = (&timing, &answer) {
                metrics.upstream_head(started.elapsed());
            }
            let response = match answer {
                Err(_elapsed) => {
                    tracing::warn!(?timeout, "the upstream did not answer in time");
                    local(
                        StatusCode::GATEWAY_TIMEOUT,
                        "The MLflow server behind this gateway did not answer in time.",
                    )
                }
                Ok(Ok(mut response)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    if let Some(client_side) = client_side {
                        let upstream_side = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel::run(client_side, upstream_side, scope));
                        let (mut parts, _empty) = response.into_parts();
                        remove_hop_by_hop(&mut parts.headers);
                        set_websocket_upgrade(&mut parts.headers);
                        Response::from_parts(parts, ProxyBody::empty())
                    } else {
                        tracing::warn!("the upstream switched protocols unasked");
                        local(
                            StatusCode::BAD_GATEWAY,
                            "The MLflow server behind this gateway sent an unexpected answer.",
                        )
                    }
                }
                Ok(Ok(response)) => {
                    let (mut parts, body) = response.into_parts();
                    remove_hop_by_hop(&mut parts.headers);
                    Response::from_parts(parts, ProxyBody::upstream(body))
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "upstream request failed");
                    local(
                        StatusCode::BAD_GATEWAY,
                        "The MLflow server behind this gateway is unavailable.",
                    )
                }
            };
            Ok(with_extensions(response, extensions))
        }))
    }
}

/// `Connection: upgrade` and `Upgrade: websocket`, on one hop.
fn set_websocket_upgrade(headers: &mut http::HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Whether `request` asks to become a WebSocket (RFC 6455 §4.1): HTTP/1.1 with
/// `Connection: upgrade` and `Upgrade: websocket`. Other upgrades are dropped as hop-by-hop.
fn is_websocket_upgrade<B>(request: &Request<B>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    };
    // `Upgrade` first: almost no request has one, and then `Connection` (which nearly every
    // HTTP/1.1 client sends, `keep-alive`) is never split and compared.
    request.version() == http::Version::HTTP_11
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
}

/// A request the proxy answers itself.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    text: &'static str,
    /// `WWW-Authenticate` values, for a 401.
    challenges: Arc<[HeaderValue]>,
}

impl Refused {
    fn new(status: StatusCode, text: &'static str) -> Self {
        Self {
            status,
            text,
            challenges: Arc::new([]),
        }
    }

    fn response(&self) -> Response<ProxyBody> {
        let mut response = local(self.status, self.text);
        for value in self.challenges.iter() {
            response
                .headers_mut()
                .append(header::WWW_AUTHENTICATE, value.clone());
        }
        response
    }
}

/// `response` with the request's `extensions` added: moved, when it has none of its own.
fn with_extensions<B>(mut response: Response<B>, extensions: http::Extensions) -> Response<B> {
    response.extensions_mut().extend(extensions);
    response
}

/// A short plain-text response made by the gateway itself.
fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Proxy {
        Proxy::new(
            "http://127.0.0.1:5000/mlflow".parse().unwrap(),
            HeaderName::from_static("x_remote_user"),
            false,
        )
        .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()])
    }

    fn parts(uri: &str, subject: Option<&str>, peer: &str) -> http::request::Parts {
        let mut request = Request::get(uri)
            .header("x-remote-user", "mallory")
            .header("x-forwarded-for", "1.2.3.4")
            .body(())
            .unwrap();
        if let Some(subject) = subject {
            request
                .extensions_mut()
                .insert(Authorization::new(subject, Scheme::Basic));
        }
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse().unwrap()));
        request.into_parts().0
    }

    #[test]
    fn a_path_without_a_slash_is_refused() {
        for uri in ["*", "gw.example:443", "/x"] {
            let refused = proxy().prepare(&mut parts(uri, Some("alice"), "127.0.0.1:1"));
            let status = refused.err().map(|refused| refused.status);
            let expected = (uri != "/x").then_some(StatusCode::BAD_REQUEST);
            assert_eq!(status, expected, "{uri}");
        }
    }

    #[test]
    fn the_host_is_the_upstreams_and_the_clients_goes_in_x_forwarded_host() {
        let mut request = parts("/x", Some("alice"), "127.0.0.1:1");
        request.headers.append(
            header::HOST,
            HeaderValue::from_static("gateway.example:8443"),
        );
        proxy().prepare(&mut request).unwrap();
        let hosts: Vec<_> = request.headers.get_all(header::HOST).iter().collect();
        assert_eq!(hosts, ["127.0.0.1:5000"]);
        assert_eq!(request.headers["x-forwarded-host"], "gateway.example:8443");
    }

    #[test]
    fn the_subject_goes_in_the_user_header_or_nowhere() {
        let mut ok = parts("/x", Some("alice"), "127.0.0.1:1");
        proxy().prepare(&mut ok).unwrap();
        assert_eq!(ok.headers["x_remote_user"], "alice");
        assert!(!ok.headers.contains_key("x-remote-user"));
        assert_eq!(ok.headers["x-forwarded-for"], "127.0.0.1");

        let refused = proxy().prepare(&mut parts("/x", Some("a\nb"), "127.0.0.1:1"));
        assert_eq!(refused.unwrap_err().status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_401_for_an_unsendable_subject_carries_the_layers_challenges() {
        let mut proxy = proxy().with_challenges("tracking", &[Challenge::BASIC, Challenge::BEARER]);
        let mut challenges = |scheme| {
            let mut parts = parts("/x", Some("a\nb"), "127.0.0.1:1");
            parts.extensions.insert(Authorization::new("a\nb", scheme));
            let response = proxy.prepare(&mut parts).unwrap_err().response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            response
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .map(|value| value.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            challenges(Scheme::Basic),
            [r#"Basic realm="tracking""#, r#"Bearer realm="tracking""#]
        );
        assert_eq!(
            challenges(Scheme::Bearer),
            [
                r#"Basic realm="tracking""#,
                r#"Bearer realm="tracking", error="invalid_token""#
            ]
        );
    }

    /// A proxy with the default user header, and a request from `principal` carrying
    /// client-sent identity headers in several spellings.
    fn prepared_identity(principal: Option<Authorization>) -> http::request::Parts {
        let mut proxy = Proxy::new(
            "http://127.0.0.1:5000".parse().unwrap(),
            forwarded::X_FORWARDED_USER,
            false,
        );
        let mut request = Request::get("/x");
        for (name, value) in [
            ("X_Forwarded_Email", "mallory@evil.example"),
            ("x-forwarded-email", "mallory@evil.example"),
            ("x-forwarded-groups", "mlflow-admins"),
            ("X_FORWARDED_GROUPS", "mlflow-admins"),
            ("X-FORWARDED-USER", "mallory"),
            ("x_forwarded_user", "mallory"),
            ("x-forwarded-emailx", "kept"),
        ] {
            request = request.header(name, value);
        }
        let mut request = request.body(()).unwrap();
        if let Some(principal) = principal {
            request.extensions_mut().insert(principal);
        }
        let mut parts = request.into_parts().0;
        proxy.prepare(&mut parts).unwrap();
        parts
    }

    fn all(parts: &http::request::Parts, name: &str) -> Vec<String> {
        let mut values: Vec<String> = parts
            .headers
            .iter()
            .filter(|(candidate, _)| candidate.as_str().replace('_', "-") == name)
            .map(|(_, value)| value.to_str().unwrap().to_owned())
            .collect();
        values.sort();
        values
    }

    #[test]
    fn client_sent_identity_headers_are_gone_in_every_spelling() {
        let anonymous = prepared_identity(None);
        for name in [
            "x-forwarded-user",
            "x-forwarded-email",
            "x-forwarded-groups",
        ] {
            assert_eq!(all(&anonymous, name), Vec::<String>::new(), "{name}");
        }
        assert_eq!(anonymous.headers["x-forwarded-emailx"], "kept");
    }

    #[test]
    fn the_principals_attributes_set_the_identity_headers() {
        let principal = Authorization::new("alice@example.com", Scheme::Session)
            .with_attribute("email", "alice@example.com")
            .with_attribute("groups", "mlflow-users,mlflow-admins");
        let parts = prepared_identity(Some(principal));
        assert_eq!(all(&parts, "x-forwarded-user"), ["alice@example.com"]);
        assert_eq!(all(&parts, "x-forwarded-email"), ["alice@example.com"]);
        assert_eq!(
            all(&parts, "x-forwarded-groups"),
            ["mlflow-users,mlflow-admins"]
        );
    }

    #[test]
    fn a_principal_without_email_sends_no_email_header() {
        let principal = Authorization::new("bot", Scheme::Bearer).with_attribute("groups", "ci");
        let parts = prepared_identity(Some(principal));
        assert_eq!(all(&parts, "x-forwarded-user"), ["bot"]);
        assert_eq!(all(&parts, "x-forwarded-email"), Vec::<String>::new());
        assert_eq!(all(&parts, "x-forwarded-groups"), ["ci"]);

        let unsendable = Authorization::new("carol", Scheme::Session)
            .with_attribute("email", "carol@example.com\n");
        let unsendable = unsendable.with_attribute("groups", "a\u{7f}b");
        let parts = prepared_identity(Some(unsendable));
        assert_eq!(all(&parts, "x-forwarded-user"), ["carol"]);
        assert_eq!(all(&parts, "x-forwarded-email"), Vec::<String>::new());
        assert_eq!(all(&parts, "x-forwarded-groups"), Vec::<String>::new());
    }

    #[test]
    fn the_user_header_keeps_the_subject_when_it_shares_a_name() {
        let mut proxy = Proxy::new(
            "http://127.0.0.1:5000".parse().unwrap(),
            forwarded::X_FORWARDED_EMAIL,
            false,
        );
        let principal = Authorization::new("alice", Scheme::Session)
            .with_attribute("email", "alice@example.com");
        let mut parts = Request::get("/x").body(()).unwrap().into_parts().0;
        parts.extensions.insert(principal);
        proxy.prepare(&mut parts).unwrap();
        assert_eq!(all(&parts, "x-forwarded-email"), ["alice"]);
    }

    #[test]
    fn only_trusted_peers_extend_the_chain() {
        let mut trusted = parts("/x", None, "10.1.1.1:1");
        proxy().prepare(&mut trusted).unwrap();
        assert_eq!(trusted.headers["x-forwarded-for"], "1.2.3.4, 10.1.1.1");
        assert!(!trusted.headers.contains_key("x-remote-user"));
    }

    #[test]
    fn each_request_of_a_connection_gets_its_own_user_and_peer() {
        // One proxy serves all of a connection's requests and keeps the header values of the
        // last one; whatever changes in between must still reach the upstream as it is.
        let mut proxy = proxy();
        let sequence = [
            ("alice", "127.0.0.1:1", "127.0.0.1"),
            ("alice", "127.0.0.1:2", "127.0.0.1"),
            ("bob", "127.0.0.1:1", "127.0.0.1"),
            ("bob", "10.1.1.1:1", "1.2.3.4, 10.1.1.1"),
            ("alice", "10.1.1.1:1", "1.2.3.4, 10.1.1.1"),
            ("alice", "[::ffff:127.0.0.2]:1", "127.0.0.2"),
            ("alicf", "[2001:db8::1]:1", "2001:db8::1"),
        ];
        for (user, peer, chain) in sequence {
            let mut request = parts("/x", Some(user), peer);
            proxy.prepare(&mut request).unwrap();
            let users: Vec<_> = request.headers.get_all("x_remote_user").iter().collect();
            assert_eq!(users, [user], "{user} from {peer}");
            assert_eq!(
                request.headers["x-forwarded-for"], chain,
                "{user} from {peer}"
            );
        }
        // A subject that cannot be a header is refused after one that could, and the next
        // request is served as usual.
        let refused = proxy.prepare(&mut parts("/x", Some("a\nb"), "127.0.0.1:1"));
        assert_eq!(refused.unwrap_err().status, StatusCode::UNAUTHORIZED);
        let mut anonymous = parts("/x", None, "127.0.0.1:1");
        proxy.prepare(&mut anonymous).unwrap();
        assert!(!anonymous.headers.contains_key("x_remote_user"));
        let mut carol = parts("/x", Some("carol"), "127.0.0.1:1");
        proxy.prepare(&mut carol).unwrap();
        assert_eq!(carol.headers["x_remote_user"], "carol");
    }

    #[test]
    fn only_websocket_upgrades_are_recognised() {
        let request = |connection: &str, upgrade: &str| {
            Request::get("/ws")
                .header(header::CONNECTION, connection)
                .header(header::UPGRADE, upgrade)
                .body(())
                .unwrap()
        };
        assert!(is_websocket_upgrade(&request(
            "keep-alive, Upgrade",
            "WebSocket"
        )));
        assert!(!is_websocket_upgrade(&request("keep-alive", "websocket")));
        assert!(!is_websocket_upgrade(&request("upgrade", "h2c")));
        let mut http10 = request("upgrade", "websocket");
        *http10.version_mut() = http::Version::HTTP_10;
        assert!(!is_websocket_upgrade(&http10));
    }
}
