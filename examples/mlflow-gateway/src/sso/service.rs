//! [`SsoLayer`] and [`SsoService`]: which way each request goes (see the
//! [module docs](super)), and [`ResponseFuture`].
//!
//! The common paths — a request with an `Authorization` header, a request with a session
//! that is not due for a refresh — call an inner service at once and poll its future in
//! place. The rare ones (`/_gateway/*`, a refresh, a redirect to the issuer) are boxed.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use http::{
    HeaderMap, HeaderValue, Method, Request, Response,
    header::{ACCEPT, AUTHORIZATION, COOKIE},
};
use pin_project_lite::pin_project;
use tower::{Layer, ServiceExt as _};
use tower_mlflow_auth::session::{ReturnPath, SessionCookie};
use tower_service::Service;

use super::{
    Sso,
    opened::{OpenedSession, OpenedSessions},
    pages,
    transaction::Transaction,
};
use crate::proxy::ProxyBody;

/// Puts [`SsoService`] in front of the `authed` branch (the `AuthLayer` and what follows);
/// `direct` is what a request with a session goes to instead (the proxy, with the
/// principal recorded for the access log).
#[derive(Clone, Debug)]
pub(crate) struct SsoLayer<D> {
    sso: Arc<Sso>,
    opened: Arc<OpenedSessions>,
    direct: D,
}

impl<D> SsoLayer<D> {
    pub(crate) fn new(sso: Arc<Sso>, direct: D) -> Self {
        Self {
            sso,
            opened: Arc::new(OpenedSessions::new()),
            direct,
        }
    }
}

impl<A, D: Clone> Layer<A> for SsoLayer<D> {
    type Service = SsoService<A, D>;

    fn layer(&self, authed: A) -> Self::Service {
        SsoService {
            sso: Arc::clone(&self.sso),
            opened: Arc::clone(&self.opened),
            authed,
            direct: self.direct.clone(),
        }
    }
}

/// The service of [`SsoLayer`]: routes each request (see the [module docs](super)).
#[derive(Clone, Debug)]
pub(crate) struct SsoService<A, D> {
    sso: Arc<Sso>,
    opened: Arc<OpenedSessions>,
    authed: A,
    direct: D,
}

impl<A, D, B> Service<Request<B>> for SsoService<A, D>
where
    A: Service<Request<B>, Response = Response<ProxyBody>> + Clone + Send + 'static,
    A::Future: Send + 'static,
    A::Error: Send + 'static,
    D: Service<Request<B>, Response = Response<ProxyBody>, Error = A::Error>
        + Clone
        + Send
        + 'static,
    D::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = A::Error;
    type Future = ResponseFuture<A::Future, D::Future, A::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.authed.poll_ready(cx))?;
        self.direct.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if is_own_path(request.uri().path()) {
            // Never forwarded: the gateway answers its own paths.
            let sso = Arc::clone(&self.sso);
            let (parts, _body) = request.into_parts();
            return ResponseFuture::boxed(async move { Ok(sso.answer(&parts).await) });
        }
        let cookie = &self.sso.cookie;
        // API clients: Authorization wins over a cookie.
        if request.headers().contains_key(AUTHORIZATION) {
            remove_own_cookies(request.headers_mut(), cookie);
            return ResponseFuture::Authed {
                future: take_ready(&mut self.authed).call(request),
            };
        }
        let now = SystemTime::now();
        match self.opened.open(cookie, request.headers(), now) {
            Some(session) => {
                let own_origin = || {
                    self.sso
                        .is_from_own_origin(request.extensions(), request.headers())
                };
                if !is_safe(request.method()) && !own_origin() {
                    tracing::info!(user = %session.data.identity.user, "refused: a state-changing request with the session from another origin");
                    return ResponseFuture::ready(pages::cross_origin());
                }
                if session.data.refresh_due(now) {
                    let jar = cookies_of(request.headers());
                    remove_own_cookies(request.headers_mut(), cookie);
                    let (sso, authed, direct) = self.clones();
                    return ResponseFuture::boxed(refresh_then_call(
                        sso, request, session, jar, authed, direct,
                    ));
                }
                remove_own_cookies(request.headers_mut(), cookie);
                request.extensions_mut().insert(session.principal.clone());
                ResponseFuture::Direct {
                    future: take_ready(&mut self.direct).call(request),
                }
            }
            None if self.sso.starts_login(&request) => {
                let sso = Arc::clone(&self.sso);
                let (parts, _body) = request.into_parts();
                ResponseFuture::boxed(async move {
                    Ok(sso
                        .start_login(&parts.headers, &return_path(&parts.uri))
                        .await)
                })
            }
            None => {
                remove_own_cookies(request.headers_mut(), cookie);
                ResponseFuture::Authed {
                    future: take_ready(&mut self.authed).call(request),
                }
            }
        }
    }
}

/// Notes, for [`SsoService`], whether a state-changing request comes from the gateway's
/// origin, before the origin check (which it sits in front of) removes a verified `Origin`
/// for MLflow's sake.
#[derive(Clone, Debug)]
pub(crate) struct SsoOriginLayer {
    sso: Arc<Sso>,
}

impl SsoOriginLayer {
    pub(crate) fn new(sso: Arc<Sso>) -> Self {
        Self { sso }
    }
}

impl<S> Layer<S> for SsoOriginLayer {
    type Service = SsoOrigin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SsoOrigin {
            sso: Arc::clone(&self.sso),
            inner,
        }
    }
}

/// The service of [`SsoOriginLayer`].
#[derive(Clone, Debug)]
pub(crate) struct SsoOrigin<S> {
    sso: Arc<Sso>,
    inner: S,
}

/// [`SsoOrigin`]'s verdict on a state-changing request, in its extensions.
#[derive(Clone, Copy, Debug)]
pub(super) struct OwnOrigin(pub(super) bool);

impl<S, B> Service<Request<B>> for SsoOrigin<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !is_safe(request.method()) {
            let own = self.sso.same_origin(request.headers());
            request.extensions_mut().insert(OwnOrigin(own));
        }
        self.inner.call(request)
    }
}

impl<A: Clone, D: Clone> SsoService<A, D> {
    fn clones(&self) -> (Arc<Sso>, A, D) {
        (
            Arc::clone(&self.sso),
            self.authed.clone(),
            self.direct.clone(),
        )
    }
}

impl Sso {
    /// Whether a request without credentials starts a sign-in: a page load of a path that
    /// is not exempt.
    fn starts_login<B>(&self, request: &Request<B>) -> bool {
        is_page_load(request.method(), request.headers())
            && !self
                .exemptions
                .is_exempt(request.method(), request.uri().path())
    }
}

/// A session due for a refresh: refreshed, then on to `direct` with the new cookie; or, when
/// the refresh fails, the session ends and the request goes on as one without it.
async fn refresh_then_call<A, D, B>(
    sso: Arc<Sso>,
    mut request: Request<B>,
    session: Arc<OpenedSession>,
    jar: HeaderMap,
    authed: A,
    direct: D,
) -> Result<Response<ProxyBody>, A::Error>
where
    A: Service<Request<B>, Response = Response<ProxyBody>>,
    D: Service<Request<B>, Response = Response<ProxyBody>, Error = A::Error>,
{
    let now = SystemTime::now();
    let (mut response, cookies) = match sso.renew(&session.data, &jar, now).await {
        Ok((renewed, cookies)) => {
            request
                .extensions_mut()
                .insert(renewed.identity.principal());
            (direct.oneshot(request).await?, cookies)
        }
        Err(removals) if sso.starts_login(&request) => {
            let return_to = return_path(request.uri());
            (sso.start_login(&jar, &return_to).await, removals)
        }
        Err(removals) => (authed.oneshot(request).await?, removals),
    };
    pages::set_cookies(&mut response, cookies);
    Ok(response)
}

/// Whether `path` is the gateway's own: `/_gateway` and everything under it.
pub(super) fn is_own_path(path: &str) -> bool {
    path.strip_prefix("/_gateway")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// Where to come back to after the sign-in a page load starts: the page itself, if it is a
/// safe return path, else `/`.
fn return_path(uri: &http::Uri) -> ReturnPath {
    uri.path_and_query()
        .and_then(|path| ReturnPath::parse(path.as_str()))
        .unwrap_or_default()
}

/// GET, HEAD, OPTIONS and TRACE; every other method changes state (as the origin check
/// counts them).
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// A top-level page load by a browser: `GET` or `HEAD`, and `Sec-Fetch-Mode: navigate`
/// (when the browser sends the header, it decides: a script's `fetch` cannot follow a
/// redirect to the issuer's login page) or, without it, an `Accept` that prefers
/// `text/html` to both `application/json` and `*/*`.
pub(super) fn is_page_load(method: &Method, headers: &HeaderMap) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode.as_bytes().eq_ignore_ascii_case(b"navigate");
    }
    prefers_html(headers)
}

/// Whether `Accept` ranks `text/html` above `application/json` and above `*/*`. A range
/// applies to a type if it is the most specific range that matches it (RFC 9110 §12.5.1).
fn prefers_html(headers: &HeaderMap) -> bool {
    // (exact, type/*, */*) qualities found for html and json.
    let mut html = [None::<f32>; 2];
    let mut json = [None::<f32>; 3];
    let mut any = None;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or_default().trim();
            let quality = params
                .filter_map(|param| param.trim().strip_prefix("q="))
                .map(|q| q.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0))
                .next()
                .unwrap_or(1.0);
            let slot = match media.to_ascii_lowercase().as_str() {
                "text/html" => &mut html[0],
                "text/*" => &mut html[1],
                "application/json" => &mut json[0],
                "application/*" => &mut json[1],
                "*/*" => {
                    json[2] = Some(json[2].unwrap_or(0.0).max(quality));
                    &mut any
                }
                _ => continue,
            };
            *slot = Some(slot.unwrap_or(0.0).max(quality));
        }
    }
    let most_specific = |qualities: &[Option<f32>]| qualities.iter().find_map(|q| *q);
    let html = most_specific(&html).unwrap_or(0.0);
    let json = most_specific(&json).unwrap_or(0.0);
    html > 0.0 && html > json && html > any.unwrap_or(0.0)
}

/// A copy of just the `Cookie` headers, for sealing after they are removed from the request.
fn cookies_of(headers: &HeaderMap) -> HeaderMap {
    let mut jar = HeaderMap::new();
    for value in headers.get_all(COOKIE) {
        jar.append(COOKIE, value.clone());
    }
    jar
}

/// Takes the gateway's own cookies — the session and its chunks, the login transactions —
/// out of the `Cookie` headers, keeping every other cookie; a header left empty goes.
/// Touches nothing when there is none; a header of only the gateway's cookies is dropped
/// and one without any is kept as it is, so only a mixed header is rebuilt.
pub(super) fn remove_own_cookies(headers: &mut HeaderMap, cookie: &SessionCookie) {
    let own = |pair: &[u8]| {
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        std::str::from_utf8(name)
            .is_ok_and(|name| cookie.is_own(name.trim()) || Transaction::is_own_cookie(name.trim()))
    };
    fn pairs(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
        value
            .as_bytes()
            .split(|b| *b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|pair| !pair.is_empty())
    }
    // Which headers hold own cookies, and whether any holds others too.
    let (mut present, mut mixed) = (false, false);
    for value in headers.get_all(COOKIE) {
        let (mut mine, mut others) = (false, false);
        for pair in pairs(value) {
            if own(pair) {
                mine = true
            } else {
                others = true
            }
        }
        present |= mine;
        mixed |= mine && others;
    }
    if !present {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| {
            if !pairs(value).any(own) {
                return Some(value.clone());
            }
            if !mixed {
                return None;
            }
            let others: Vec<&[u8]> = pairs(value).filter(|p| !own(p)).collect();
            let mut value = HeaderValue::from_bytes(&others.join(&b"; "[..])).ok()?;
            value.set_sensitive(true);
            (!value.is_empty()).then_some(value)
        })
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        headers.append(COOKIE, value);
    }
}

/// The service that was driven to readiness, leaving a fresh clone in its place.
fn take_ready<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}

type BoxFuture<E> = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, E>> + Send>>;

pin_project! {
    /// The future of [`SsoService`]: an inner service's, polled in place, or a boxed one
    /// for the gateway's own answers.
    #[project = Projection]
    pub(crate) enum ResponseFuture<A, D, E> {
        /// To the `AuthLayer`.
        Authed { #[pin] future: A },
        /// A session's request, to the proxy.
        Direct { #[pin] future: D },
        /// An answer already made.
        Ready { response: Option<Response<ProxyBody>> },
        /// `/_gateway/*`, a refresh, a redirect to the issuer.
        Boxed { future: BoxFuture<E> },
    }
}

impl<A, D, E> ResponseFuture<A, D, E> {
    fn boxed(
        future: impl Future<Output = Result<Response<ProxyBody>, E>> + Send + 'static,
    ) -> Self {
        Self::Boxed {
            future: Box::pin(future),
        }
    }

    fn ready(response: Response<ProxyBody>) -> Self {
        Self::Ready {
            response: Some(response),
        }
    }
}

impl<A, D, E> Future for ResponseFuture<A, D, E>
where
    A: Future<Output = Result<Response<ProxyBody>, E>>,
    D: Future<Output = Result<Response<ProxyBody>, E>>,
{
    type Output = Result<Response<ProxyBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projection::Authed { future } => future.poll(cx),
            Projection::Direct { future } => future.poll(cx),
            Projection::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            Projection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<A, D, E> std::fmt::Debug for ResponseFuture<A, D, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Authed { .. } => "ResponseFuture::Authed",
            Self::Direct { .. } => "ResponseFuture::Direct",
            Self::Ready { .. } => "ResponseFuture::Ready",
            Self::Boxed { .. } => "ResponseFuture::Boxed",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use bytes::Bytes;
    use http::{StatusCode, header};
    use http_body_util::{BodyExt as _, Empty};
    use secrecy::SecretString;
    use tower::service_fn;
    use tower_mlflow_auth::{Authorization, Exemptions, session::SessionKeys};

    use super::*;
    use crate::{
        config::SsoConfig,
        sso::{access::Identity, provider::Tokens, session::SessionData},
    };

    const SECRET: &str = "a-session-secret-of-at-least-32-bytes";
    const ORIGIN: &str = "http://127.0.0.1:8080";

    fn config() -> SsoConfig {
        SsoConfig::new(
            // Nothing listens on port 9: the issuer is unavailable.
            "http://127.0.0.1:9",
            "gateway",
            "/nonexistent/client-secret",
            format!("{ORIGIN}/_gateway/callback").parse().unwrap(),
            "/nonexistent/session-secret",
        )
    }

    fn keys(secret: &str) -> SessionKeys {
        SessionKeys::from_secret(&SecretString::from(secret)).unwrap()
    }

    fn sso() -> Arc<Sso> {
        let exemptions = Exemptions::new().exact("/health").unwrap();
        let client_secret = SecretString::from("gateway-secret");
        Arc::new(Sso::with_secrets(&config(), client_secret, keys(SECRET), exemptions).unwrap())
    }

    /// An inner service that answers with what it saw: its branch, the `Cookie` headers, the
    /// principal.
    fn echo(branch: &'static str) -> Inner {
        Inner::new(service_fn(
            move |request: Request<Empty<Bytes>>| async move {
                let mut response = pages::json(StatusCode::OK, &serde_json::json!({}));
                let headers = response.headers_mut();
                headers.insert("x-branch", HeaderValue::from_static(branch));
                let cookies: Vec<&str> = request
                    .headers()
                    .get_all(COOKIE)
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                headers.insert("x-cookie", cookies.join(" | ").parse().unwrap());
                if let Some(principal) = request.extensions().get::<Authorization>() {
                    headers.insert("x-user", principal.subject().parse().unwrap());
                }
                Ok::<_, Infallible>(response)
            },
        ))
    }

    type Inner =
        tower::util::BoxCloneService<Request<Empty<Bytes>>, Response<ProxyBody>, Infallible>;

    async fn send(sso: &Arc<Sso>, request: Request<Empty<Bytes>>) -> Response<ProxyBody> {
        let service = SsoLayer::new(Arc::clone(sso), echo("direct")).layer(echo("authed"));
        service.oneshot(request).await.unwrap()
    }

    fn branch(response: &Response<ProxyBody>) -> Option<&str> {
        response
            .headers()
            .get("x-branch")
            .map(|v| v.to_str().unwrap())
    }

    fn forwarded_cookies(response: &Response<ProxyBody>) -> &str {
        response.headers()["x-cookie"].to_str().unwrap()
    }

    async fn json(response: Response<ProxyBody>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn identity() -> Identity {
        Identity {
            subject: "sub-alice".into(),
            user: "alice@example.com".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["mlflow-users".into(), "mlflow-admins".into()],
            admin: true,
        }
    }

    fn no_tokens() -> Tokens {
        Tokens {
            claims: None,
            refresh_token: None,
            expires_at: None,
        }
    }

    /// The `Cookie` pairs of a session sealed with `secret` at `at` for `lifetime`.
    fn session_cookie_with(
        secret: &str,
        at: SystemTime,
        lifetime: Duration,
        refresh_token: Option<&str>,
    ) -> String {
        let cookie = SessionCookie::builder("mlflow_gateway_session", keys(secret))
            .insecure_loopback_http("127.0.0.1")
            .build()
            .unwrap();
        let mut tokens = no_tokens();
        tokens.expires_at = refresh_token.map(|_| at);
        let refresh_token = refresh_token.map(str::to_owned);
        let data = SessionData::start(identity(), "n".into(), &tokens, refresh_token, at, lifetime);
        let set_cookies = data.seal(&cookie, &HeaderMap::new(), at).unwrap();
        set_cookies
            .iter()
            .map(|h| h.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn session_cookie() -> String {
        session_cookie_with(SECRET, SystemTime::now(), Duration::from_secs(3600), None)
    }

    fn get(path: &str) -> http::request::Builder {
        Request::get(path)
    }

    fn build(builder: http::request::Builder) -> Request<Empty<Bytes>> {
        builder.body(Empty::new()).unwrap()
    }

    #[tokio::test]
    async fn own_paths_are_never_forwarded() {
        let sso = sso();
        for (request, status) in [
            (get("/_gateway/nothing-here"), StatusCode::NOT_FOUND),
            (get("/_gateway"), StatusCode::NOT_FOUND),
            (get("/_gateway/userinfo"), StatusCode::UNAUTHORIZED),
            (
                Request::post("/_gateway/userinfo"),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (get("/_gateway/logout"), StatusCode::METHOD_NOT_ALLOWED),
            (get("/_gateway/callback"), StatusCode::BAD_REQUEST),
            (
                get("/_gateway/callback?code=c&state=s"),
                StatusCode::BAD_REQUEST,
            ),
            (
                get("/_gateway/callback?error=access_denied"),
                StatusCode::FORBIDDEN,
            ),
            (
                get("/_gateway/callback?error=server_error"),
                StatusCode::BAD_GATEWAY,
            ),
        ] {
            let request = build(request.header(header::AUTHORIZATION, "Bearer t"));
            let path = request.uri().to_string();
            let response = send(&sso, request).await;
            assert_eq!(response.status(), status, "{path}");
            assert_eq!(branch(&response), None, "{path}");
            assert_eq!(
                response.headers()[header::CACHE_CONTROL],
                "no-store",
                "{path}"
            );
        }
        let response = send(&sso, build(get("/_gateway/logout"))).await;
        assert_eq!(response.headers()[header::ALLOW], "POST");
        assert_eq!(json(response).await["error"], "method_not_allowed");
        assert!(!is_own_path("/_gatewayx"));
        assert!(!is_own_path("/api/2.0/_gateway/x"));
    }

    #[tokio::test]
    async fn the_gateways_cookies_are_never_forwarded() {
        let sso = sso();
        let own = "theme=dark; mlflow_gateway_session=junk; mlflow_gateway_session.0=a; \
                   mlflow_gateway_login.abc=t; lang=en";
        // With an Authorization header: to the AuthLayer, without the gateway's cookies.
        let request = get("/api/2.0/mlflow/experiments/search")
            .header(header::AUTHORIZATION, "Basic YTpi")
            .header(COOKIE, own)
            .header(COOKIE, "mlflow_gateway_session.1=b");
        let response = send(&sso, build(request)).await;
        assert_eq!(branch(&response), Some("authed"));
        assert_eq!(forwarded_cookies(&response), "theme=dark; lang=en");

        // With a valid session: straight on, with the principal and without the cookie.
        let session = session_cookie();
        let request = get("/api/2.0/mlflow/experiments/search")
            .header(COOKIE, format!("a=1; {session}; b=2"));
        let response = send(&sso, build(request)).await;
        assert_eq!(branch(&response), Some("direct"));
        assert_eq!(response.headers()["x-user"], "alice@example.com");
        assert_eq!(forwarded_cookies(&response), "a=1; b=2");

        // Only the gateway's cookies: no Cookie header at all.
        let request = get("/api/2.0/mlflow/experiments/search").header(COOKIE, session);
        let response = send(&sso, build(request)).await;
        assert_eq!(forwarded_cookies(&response), "");
    }

    #[tokio::test]
    async fn authorization_wins_over_the_session() {
        let sso = sso();
        let request = get("/api/2.0/mlflow/experiments/search")
            .header(header::AUTHORIZATION, "Bearer t")
            .header(COOKIE, session_cookie());
        let response = send(&sso, build(request)).await;
        assert_eq!(branch(&response), Some("authed"));
        assert!(!response.headers().contains_key("x-user"));
    }

    #[test]
    fn page_loads_are_told_from_api_calls() {
        let page = |method: Method, headers: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(*name, HeaderValue::from_static(value));
            }
            is_page_load(&method, &map)
        };
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(page(Method::GET, &[("sec-fetch-mode", "navigate")]));
        assert!(page(
            Method::HEAD,
            &[("sec-fetch-mode", "navigate"), ("accept", "*/*")]
        ));
        assert!(page(Method::GET, &[("accept", browser)]));
        assert!(page(Method::GET, &[("accept", "text/html")]));
        assert!(page(
            Method::GET,
            &[("accept", "application/json;q=0.5, text/*")]
        ));
        // A script's fetch, whatever it accepts.
        assert!(!page(
            Method::GET,
            &[("sec-fetch-mode", "cors"), ("accept", browser)]
        ));
        assert!(!page(Method::GET, &[("accept", "application/json")]));
        assert!(!page(Method::GET, &[("accept", "*/*")]));
        assert!(!page(Method::GET, &[]));
        assert!(!page(
            Method::GET,
            &[("accept", "text/html, application/json")]
        ));
        assert!(!page(Method::GET, &[("accept", "text/html;q=0.5, */*")]));
        assert!(!page(Method::GET, &[("accept", "text/html;q=0")]));
        assert!(!page(Method::GET, &[("accept", "text/html;q=junk")]));
        // Never a redirect for a write.
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(!page(
                method,
                &[("sec-fetch-mode", "navigate"), ("accept", browser)]
            ));
        }
    }

    #[tokio::test]
    async fn requests_without_a_session_go_to_the_auth_layer_unless_they_are_page_loads() {
        let sso = sso();
        // An API call, a write from a form, an exempt page: to the AuthLayer.
        for request in [
            get("/api/2.0/mlflow/experiments/search").header(header::ACCEPT, "application/json"),
            Request::post("/ajax-api/2.0/mlflow/runs/create")
                .header("sec-fetch-mode", "navigate")
                .header(header::ACCEPT, "text/html"),
            get("/health").header("sec-fetch-mode", "navigate"),
        ] {
            let response = send(&sso, build(request)).await;
            assert_eq!(branch(&response), Some("authed"));
        }
        // A page load starts a sign-in; with the issuer down it is a page saying so, never
        // the upstream.
        let request = get("/#/experiments").header("sec-fetch-mode", "navigate");
        let response = send(&sso, build(request)).await;
        assert_eq!(branch(&response), None);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            pages::CONTENT_SECURITY_POLICY
        );
    }

    #[tokio::test]
    async fn writes_with_the_session_need_the_gateways_origin() {
        let sso = sso();
        let write = |headers: &[(&str, &str)]| {
            let mut request = Request::post("/ajax-api/2.0/mlflow/experiments/create")
                .header(COOKIE, session_cookie());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            build(request)
        };
        for headers in [
            &[][..],
            &[("origin", "https://evil.example")],
            &[("origin", "null")],
            &[("origin", "http://127.0.0.1:8081")],
            // A present Origin is never overruled by a Referer.
            &[
                ("origin", "https://evil.example"),
                ("referer", "http://127.0.0.1:8080/"),
            ],
            &[("referer", "https://evil.example/#/")],
            &[("origin", ORIGIN), ("origin", ORIGIN)],
        ] {
            let response = send(&sso, write(headers)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
            assert_eq!(branch(&response), None);
            assert_eq!(json(response).await["error"], "cross_origin");
        }
        for headers in [
            &[("origin", ORIGIN)][..],
            &[("origin", "HTTP://127.0.0.1:8080")],
            &[("referer", "http://127.0.0.1:8080/#/experiments/1")],
        ] {
            let response = send(&sso, write(headers)).await;
            assert_eq!(branch(&response), Some("direct"), "{headers:?}");
        }
        // Reads need no origin; writes without the session are the AuthLayer's business.
        let read = get("/ajax-api/2.0/mlflow/experiments/search")
            .header(COOKIE, session_cookie())
            .header("origin", "https://evil.example");
        assert_eq!(branch(&send(&sso, build(read)).await), Some("direct"));
        let anonymous = Request::post("/ajax-api/2.0/mlflow/experiments/create");
        assert_eq!(branch(&send(&sso, build(anonymous)).await), Some("authed"));
    }

    #[tokio::test]
    async fn the_origin_counts_as_seen_before_the_origin_check_removed_it() {
        let sso = sso();
        let inner = SsoLayer::new(Arc::clone(&sso), echo("direct")).layer(echo("authed"));
        // The origin check forwards a verified write without its `Origin`.
        let origin_check = service_fn(move |mut request: Request<Empty<Bytes>>| {
            request.headers_mut().remove(header::ORIGIN);
            inner.clone().oneshot(request)
        });
        let service = SsoOriginLayer::new(Arc::clone(&sso)).layer(origin_check);
        let write = |origin: &str| {
            build(
                Request::post("/ajax-api/2.0/mlflow/experiments/create")
                    .header(COOKIE, session_cookie())
                    .header(header::ORIGIN, origin),
            )
        };
        let response = service.clone().oneshot(write(ORIGIN)).await.unwrap();
        assert_eq!(branch(&response), Some("direct"));
        let response = service
            .oneshot(write("https://evil.example"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_tampered_foreign_or_expired_cookie_is_no_session() {
        let sso = sso();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let valid = session_cookie();
        let (name, sealed) = valid.split_once('=').unwrap();
        let (kept, last) = sealed.split_at(sealed.len() - 1);
        let tampered = format!("{name}={kept}{}", if last == "x" { "y" } else { "x" });
        for cookie in [
            tampered,
            session_cookie_with("another-session-secret-of-32-bytes!!", now, hour, None),
            session_cookie_with(SECRET, now - 2 * hour, hour, None),
            format!("{name}=v1.AAAA"),
        ] {
            let request = get("/api/2.0/mlflow/experiments/search")
                .header(header::ACCEPT, "application/json")
                .header(COOKIE, format!("theme=dark; {cookie}"));
            let response = send(&sso, build(request)).await;
            assert_eq!(branch(&response), Some("authed"), "{cookie}");
            assert!(!response.headers().contains_key("x-user"));
            assert_eq!(forwarded_cookies(&response), "theme=dark");
        }
    }

    #[tokio::test]
    async fn a_failed_refresh_ends_the_session() {
        let sso = sso();
        // Due for a refresh now, and the issuer is down: the session ends.
        let cookie = session_cookie_with(
            SECRET,
            SystemTime::now() - Duration::from_secs(1),
            Duration::from_secs(3600),
            Some("refresh-token"),
        );
        let request = get("/api/2.0/mlflow/experiments/search").header(COOKIE, cookie);
        let response = send(&sso, build(request)).await;
        assert_eq!(branch(&response), Some("authed"));
        assert!(!response.headers().contains_key("x-user"));
        let removals: Vec<&str> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            removals
                .iter()
                .any(|c| c.starts_with("mlflow_gateway_session=; Max-Age=0;")),
            "{removals:?}"
        );
    }

    #[tokio::test]
    async fn logout_removes_every_chunk() {
        let sso = sso();
        let request = Request::post("/_gateway/logout")
            .header("origin", ORIGIN)
            .header(
                COOKIE,
                "mlflow_gateway_session.0=a; other=1; mlflow_gateway_session.1=b",
            )
            .header(COOKIE, "mlflow_gateway_session.2=c");
        let response = send(&sso, build(request)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(branch(&response), None);
        let mut removed: Vec<&str> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| {
                let value = v.to_str().unwrap();
                assert!(value.contains("=; Max-Age=0; Path=/;"), "{value}");
                value.split('=').next().unwrap()
            })
            .collect();
        removed.sort_unstable();
        assert_eq!(
            removed,
            [
                "mlflow_gateway_session",
                "mlflow_gateway_session.0",
                "mlflow_gateway_session.1",
                "mlflow_gateway_session.2"
            ]
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        // From another origin: refused, nothing removed.
        let request = Request::post("/_gateway/logout")
            .header("origin", "https://evil.example")
            .header(COOKIE, session_cookie());
        let response = send(&sso, build(request)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(!response.headers().contains_key(header::SET_COOKIE));
    }

    #[tokio::test]
    async fn userinfo_shows_the_session() {
        let sso = sso();
        let request = get("/_gateway/userinfo").header(COOKIE, session_cookie());
        let response = send(&sso, build(request)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = json(response).await;
        assert_eq!(body["user"], "alice@example.com");
        assert_eq!(body["email"], "alice@example.com");
        assert_eq!(
            body["groups"],
            serde_json::json!(["mlflow-users", "mlflow-admins"])
        );
        assert_eq!(body["admin"], true);
        let expires_at = body["expires_at"].as_u64().unwrap();
        let now = crate::sso::session::unix(SystemTime::now());
        assert!(
            (now + 3590..=now + 3600).contains(&expires_at),
            "{expires_at}"
        );

        let response = send(&sso, build(get("/_gateway/userinfo"))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json(response).await["error"], "unauthenticated");
    }

    #[test]
    fn return_paths_are_same_origin_paths() {
        let path = |uri: &str| return_path(&uri.parse().unwrap()).as_str().to_owned();
        assert_eq!(path("/#/experiments/1?x=1"), "/");
        assert_eq!(path("/experiments/1?x=1"), "/experiments/1?x=1");
        assert_eq!(path("//evil.example/x"), "/");
    }

    mod with_an_issuer {
        use serde_json::json;

        use super::*;
        use crate::sso::{
            provider::tests::{CLIENT_ID, TestIssuer},
            query::{percent_decode, query_param},
        };

        fn sso_of(issuer: &TestIssuer, configure: impl FnOnce(&mut SsoConfig)) -> Arc<Sso> {
            let mut config = config();
            config.issuer = issuer.issuer();
            config.client_id = CLIENT_ID.into();
            configure(&mut config);
            let secret = SecretString::from("gateway-secret");
            let sso = Sso::with_secrets(&config, secret, keys(SECRET), Exemptions::new());
            Arc::new(sso.unwrap())
        }

        fn set_cookies(response: &Response<ProxyBody>) -> Vec<String> {
            response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        }

        /// The `name=value` pairs of the cookies set (not removed) by `response`.
        fn cookie_pairs(response: &Response<ProxyBody>) -> String {
            set_cookies(response)
                .iter()
                .filter(|c| !c.contains("Max-Age=0"))
                .map(|c| c.split(';').next().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join("; ")
        }

        fn location_param(response: &Response<ProxyBody>, name: &str) -> String {
            let location = response.headers()[header::LOCATION].to_str().unwrap();
            let query = location.split_once('?').map(|(_, q)| q);
            percent_decode(query_param(query, name).unwrap()).unwrap()
        }

        /// Starts a sign-in coming back to `rd`; the issuer will answer the code with an ID
        /// token for `email`. Returns the callback request's path and its cookies.
        async fn begin(
            sso: &Arc<Sso>,
            issuer: &TestIssuer,
            rd: &str,
            email: &str,
        ) -> (String, String) {
            let response = send(sso, build(get(&format!("/_gateway/login?rd={rd}")))).await;
            assert_eq!(response.status(), StatusCode::FOUND);
            let location = response.headers()[header::LOCATION].to_str().unwrap();
            assert!(
                location.starts_with(&format!("{}/auth?tenant=ml&", issuer.issuer())),
                "{location}"
            );
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            let state = location_param(&response, "state");
            let nonce = location_param(&response, "nonce");
            let claims =
                json!({"email": email, "email_verified": true, "groups": ["mlflow-users"]});
            issuer.state().token_answer = (
                StatusCode::OK,
                json!({
                    "access_token": "at", "token_type": "Bearer", "expires_in": 300,
                    "refresh_token": "rt-1", "id_token": issuer.id_token(&nonce, &claims),
                }),
            );
            (
                format!("/_gateway/callback?code=the-code&state={state}"),
                cookie_pairs(&response),
            )
        }

        #[tokio::test]
        async fn a_sign_in_sets_the_session_and_goes_back() {
            let issuer = TestIssuer::start().await;
            let sso = sso_of(&issuer, |_| {});
            let (callback, tx_cookie) = begin(
                &sso,
                &issuer,
                "%2Fexperiments%2F1%3Fx%3D1",
                "alice@example.com",
            )
            .await;
            assert!(
                tx_cookie.starts_with("mlflow_gateway_login."),
                "{tx_cookie}"
            );
            let request = get(&callback).header(COOKIE, &tx_cookie);
            let response = send(&sso, build(request)).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
            assert_eq!(response.headers()[header::LOCATION], "/experiments/1?x=1");
            let cookies = set_cookies(&response);
            assert!(
                cookies
                    .iter()
                    .any(|c| c.starts_with("mlflow_gateway_session=v1.")),
                "{cookies:?}"
            );
            // The transaction cookie goes.
            let tx_name = tx_cookie.split('=').next().unwrap();
            let removal = format!("{tx_name}=;");
            assert!(
                cookies
                    .iter()
                    .any(|c| c.starts_with(&removal) && c.contains("Max-Age=0")),
                "{cookies:?}"
            );
            let session = cookie_pairs(&response);

            // The same callback again: refused before the code is redeemed.
            let redeemed = issuer.state().token_requests.len();
            let request = get(&callback).header(COOKIE, &tx_cookie);
            let response = send(&sso, build(request)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert_eq!(issuer.state().token_requests.len(), redeemed);

            let request = get("/_gateway/userinfo").header(COOKIE, &session);
            let body = json(send(&sso, build(request)).await).await;
            assert_eq!(body["user"], "alice@example.com");
            assert_eq!(body["groups"], json!(["mlflow-users"]));
            let request = get("/")
                .header("sec-fetch-mode", "navigate")
                .header(COOKIE, &session);
            let response = send(&sso, build(request)).await;
            assert_eq!(branch(&response), Some("direct"));
            assert_eq!(response.headers()["x-user"], "alice@example.com");
        }

        #[tokio::test]
        async fn page_loads_without_a_session_go_to_the_issuer_and_come_back() {
            let issuer = TestIssuer::start().await;
            let sso = sso_of(&issuer, |_| {});
            let request = get("/experiments/2?tab=runs").header("sec-fetch-mode", "navigate");
            let response = send(&sso, build(request)).await;
            assert_eq!(response.status(), StatusCode::FOUND);
            assert_eq!(branch(&response), None);
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            let state = location_param(&response, "state");
            let request = get(&format!("/_gateway/callback?code=c&state={state}"))
                .header(COOKIE, cookie_pairs(&response));
            let nonce = location_param(&response, "nonce");
            let claims = json!({"email": "alice@example.com", "email_verified": true});
            issuer.state().token_answer = (
                StatusCode::OK,
                json!({"access_token": "at", "token_type": "Bearer", "id_token": issuer.id_token(&nonce, &claims)}),
            );
            let response = send(&sso, build(request)).await;
            assert_eq!(
                response.headers()[header::LOCATION],
                "/experiments/2?tab=runs"
            );
            // A login that would come back to the gateway's own pages comes back to `/`.
            for rd in [
                "%2F_gateway%2Flogin",
                "%2F%2Fevil.example",
                "https%3A%2F%2Fevil.example%2F",
                "%zz",
            ] {
                let response = send(&sso, build(get(&format!("/_gateway/login?rd={rd}")))).await;
                assert_eq!(response.status(), StatusCode::FOUND, "{rd}");
                let state = location_param(&response, "state");
                let tx = Transaction::take(
                    &sso.keys,
                    &{
                        let mut jar = HeaderMap::new();
                        jar.insert(COOKIE, cookie_pairs(&response).parse().unwrap());
                        jar
                    },
                    &state,
                    SystemTime::now(),
                )
                .unwrap();
                assert_eq!(tx.return_to, "/", "{rd}");
            }
        }

        #[tokio::test]
        async fn a_user_the_rules_refuse_gets_a_page_and_no_session() {
            let issuer = TestIssuer::start().await;
            let sso = sso_of(&issuer, |config| {
                config.allowed_email_domains = vec!["example.com".into()];
                config.end_session = true;
            });
            let (callback, tx_cookie) = begin(&sso, &issuer, "%2F", "bob@example.org").await;
            let response = send(&sso, build(get(&callback).header(COOKIE, tx_cookie))).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(
                !set_cookies(&response)
                    .iter()
                    .any(|c| c.starts_with("mlflow_gateway_session=v1"))
            );
            let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert_eq!(
                policy,
                format!("{} {}", pages::CONTENT_SECURITY_POLICY, issuer.issuer())
            );
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let html = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(html.contains("bob@example.org"), "{html}");
            assert!(html.contains("action=\"/_gateway/logout\""), "{html}");
        }

        #[tokio::test]
        async fn logout_goes_to_the_issuer_with_end_session() {
            let issuer = TestIssuer::start().await;
            let sso = sso_of(&issuer, |config| config.end_session = true);
            let request = Request::post("/_gateway/logout")
                .header("referer", format!("{ORIGIN}/#/"))
                .header(COOKIE, session_cookie());
            let response = send(&sso, build(request)).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
            let location = response.headers()[header::LOCATION].to_str().unwrap();
            assert!(
                location.starts_with(&format!("{}/session/end?ui=1", issuer.issuer())),
                "{location}"
            );
            assert_eq!(
                location_param(&response, "post_logout_redirect_uri"),
                format!("{ORIGIN}/")
            );
            assert!(set_cookies(&response)[0].starts_with("mlflow_gateway_session=; Max-Age=0"));
        }

        #[tokio::test]
        async fn a_due_session_is_refreshed_once_and_renewed() {
            let issuer = TestIssuer::start().await;
            let sso = sso_of(&issuer, |_| {});
            issuer.state().token_answer = (
                StatusCode::OK,
                json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt-2"}),
            );
            let old = session_cookie_with(
                SECRET,
                SystemTime::now() - Duration::from_secs(1),
                Duration::from_secs(3600),
                Some("rt-1"),
            );
            let mut renewed = Vec::new();
            for _ in 0..2 {
                let request = get("/api/2.0/mlflow/experiments/search").header(COOKIE, &old);
                let response = send(&sso, build(request)).await;
                assert_eq!(branch(&response), Some("direct"));
                assert_eq!(response.headers()["x-user"], "alice@example.com");
                assert_eq!(forwarded_cookies(&response), "");
                renewed.push(cookie_pairs(&response));
            }
            // One refresh for both requests with the old cookie.
            assert_eq!(issuer.state().token_requests.len(), 1);
            let request = &issuer.state().token_requests[0];
            assert!(
                request
                    .form
                    .contains(&("refresh_token".into(), "rt-1".into()))
            );
            // The new session is not due, and carries the new refresh token.
            let jar = {
                let mut jar = HeaderMap::new();
                jar.insert(COOKIE, renewed[0].parse().unwrap());
                jar
            };
            let session = SessionData::open(&sso.cookie, &jar, SystemTime::now()).unwrap();
            assert!(!session.refresh_due(SystemTime::now()));
            assert_eq!(session.refresh_token.as_deref(), Some("rt-2"));
        }
    }
}
