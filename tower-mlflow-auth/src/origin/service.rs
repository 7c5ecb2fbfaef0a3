use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{
    HeaderMap, Method, Request, Response,
    header::{AUTHORIZATION, COOKIE, ORIGIN, REFERER},
};
use tower_service::Service;

use super::{
    future::ResponseFuture,
    parse::Origin,
    rejection::{OriginRejection, OriginRejectionKind},
};

/// Middleware that refuses state-changing requests with browser credentials from foreign
/// origins.
///
/// Made by [`OriginCheckLayer`](super::OriginCheckLayer); see the [module docs](crate::origin).
#[derive(Clone)]
pub struct OriginCheck<S> {
    inner: S,
    allowed: Arc<[Origin]>,
}

impl<S> OriginCheck<S> {
    pub(super) fn new(inner: S, allowed: Arc<[Origin]>) -> Self {
        Self { inner, allowed }
    }

    tower_mlflow_core::define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OriginCheck<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match verdict(&self.allowed, request.method(), request.headers()) {
            Verdict::Pass => {}
            Verdict::Verified => {
                request.headers_mut().remove(ORIGIN);
            }
            Verdict::Refuse(kind) => {
                let rejection = OriginRejection::new(kind);
                tracing::debug!(
                    %rejection,
                    method = %request.method(),
                    path = request.uri().path(),
                    origin = ?request.headers().get(ORIGIN),
                    "cross-origin request refused"
                );
                return ResponseFuture::rejected(rejection.into_response());
            }
        }
        ResponseFuture::inner(self.inner.call(request))
    }
}

/// What happens to one request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Forwarded unchanged.
    Pass,
    /// The `Origin` is an allowed one: forwarded without it, so that an upstream that allows
    /// only its own origin (MLflow 3) accepts it.
    Verified,
    /// Refused with a 403.
    Refuse(OriginRejectionKind),
}

/// The decision, from the method and the headers alone.
pub(super) fn verdict(allowed: &[Origin], method: &Method, headers: &HeaderMap) -> Verdict {
    if is_safe(method) {
        return Verdict::Pass;
    }
    let origin = single(headers, ORIGIN);
    if let Ok(Some(value)) = origin {
        let parsed = value.to_str().ok().map(|v| Origin::parse(v, false));
        if let Some(Ok(origin)) = parsed {
            if allowed.contains(&origin) {
                return Verdict::Verified;
            }
        }
    }
    if !carries_browser_credentials(headers) {
        return Verdict::Pass;
    }
    match origin {
        Err(()) => Verdict::Refuse(OriginRejectionKind::MalformedOrigin),
        Ok(Some(value)) if value.as_bytes().eq_ignore_ascii_case(b"null") => {
            Verdict::Refuse(OriginRejectionKind::NullOrigin)
        }
        Ok(Some(value)) => match value.to_str().ok().map(|v| Origin::parse(v, false)) {
            Some(Ok(_)) => Verdict::Refuse(OriginRejectionKind::ForeignOrigin),
            _ => Verdict::Refuse(OriginRejectionKind::MalformedOrigin),
        },
        // Only without `Origin`: a present one is never overruled by a `Referer`.
        Ok(None) => referer_verdict(allowed, headers),
    }
}

fn referer_verdict(allowed: &[Origin], headers: &HeaderMap) -> Verdict {
    match single(headers, REFERER) {
        Err(()) => Verdict::Refuse(OriginRejectionKind::MalformedReferer),
        Ok(Some(value)) => match value.to_str().ok().map(|v| Origin::parse(v, true)) {
            Some(Ok(origin)) if allowed.contains(&origin) => Verdict::Pass,
            Some(Ok(_)) => Verdict::Refuse(OriginRejectionKind::ForeignReferer),
            _ => Verdict::Refuse(OriginRejectionKind::MalformedReferer),
        },
        // Browsers send `Origin` on every state-changing request; without it (and without
        // `Referer`) only `Sec-Fetch-Site` can still tell a cross-site one.
        Ok(None) => match single(headers, "sec-fetch-site") {
            Ok(Some(site))
                if site.as_bytes().eq_ignore_ascii_case(b"cross-site")
                    || site.as_bytes().eq_ignore_ascii_case(b"same-site") =>
            {
                Verdict::Refuse(OriginRejectionKind::CrossSite)
            }
            _ => Verdict::Pass,
        },
    }
}

/// GET, HEAD, OPTIONS and TRACE; every other method (POST, PUT, PATCH, DELETE, extensions)
/// is treated as changing state.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Credentials a browser attaches by itself to a request a foreign page makes: cookies, and
/// the `Authorization` schemes it remembers after a login dialog (Basic, Digest, Negotiate,
/// NTLM). A `Bearer` token is set by a script of the page that holds it, so it is no such
/// credential.
pub(super) fn carries_browser_credentials(headers: &HeaderMap) -> bool {
    if headers.contains_key(COOKIE) {
        return true;
    }
    headers.get_all(AUTHORIZATION).iter().any(|value| {
        let scheme = value
            .as_bytes()
            .split(|b| *b == b' ')
            .next()
            .unwrap_or_default();
        [&b"basic"[..], b"digest", b"negotiate", b"ntlm"]
            .iter()
            .any(|ambient| scheme.eq_ignore_ascii_case(ambient))
    })
}

/// The header's one value; `Err` when it is repeated.
fn single<K: http::header::AsHeaderName>(
    headers: &HeaderMap,
    name: K,
) -> Result<Option<&http::HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        (Some(_), Some(_)) | (None, Some(_)) => Err(()),
    }
}

impl<S: fmt::Debug> fmt::Debug for OriginCheck<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginCheck")
            .field("inner", &self.inner)
            .field("allowed", &self.allowed)
            .finish()
    }
}
