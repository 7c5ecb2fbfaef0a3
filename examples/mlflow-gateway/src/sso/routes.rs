//! The gateway's own pages, `/_gateway/*`: [`Sso::answer`] routes to sign-in (`login`), the
//! issuer's answer (`callback`), sign-out (`logout`) and `userinfo`, and builds their pages.

use std::{sync::Arc, time::SystemTime};

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, request::Parts};
use secrecy::ExposeSecret as _;
use tower_mlflow_auth::session::ReturnPath;

use super::{
    Sso,
    pages::{self, Page},
    query::{percent_decode, query_param},
    service,
    session::SessionData,
    transaction::Transaction,
};
use crate::proxy::ProxyBody;

impl Sso {
    /// Answers a request for `/_gateway/…`; every answer is `Cache-Control: no-store`.
    pub(super) async fn answer(&self, parts: &Parts) -> Response<ProxyBody> {
        let mut response = match parts.uri.path() {
            "/_gateway/login" => self.login(parts).await,
            "/_gateway/callback" => self.callback(parts).await,
            "/_gateway/logout" => self.logout(parts).await,
            "/_gateway/userinfo" => self.userinfo(parts).await,
            _ => pages::not_found(),
        };
        pages::no_store(&mut response);
        response
    }

    /// `GET /_gateway/login?rd=PATH`: a new sign-in that comes back to `PATH`.
    async fn login(&self, parts: &Parts) -> Response<ProxyBody> {
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            return pages::method_not_allowed("GET, HEAD");
        }
        let return_to = query_param(parts.uri.query(), "rd")
            .and_then(percent_decode)
            .and_then(|rd| ReturnPath::parse(&rd))
            // Back to the login page would be a loop.
            .filter(|rd| !service::is_own_path(rd.as_str()))
            .unwrap_or_default();
        self.start_login(&parts.headers, &return_to).await
    }

    /// A new login transaction and the 302 to the issuer's authorization endpoint.
    pub(super) async fn start_login(
        &self,
        request: &HeaderMap,
        return_to: &ReturnPath,
    ) -> Response<ProxyBody> {
        let Ok(transaction) = Transaction::begin(return_to) else {
            tracing::error!("cannot start a sign-in: no randomness");
            return unavailable_page();
        };
        let now = SystemTime::now();
        let cookies = match transaction.set_cookies(&self.keys, request, !self.insecure, now) {
            Ok(cookies) => cookies,
            Err(error) => {
                tracing::error!(%error, "cannot start a sign-in");
                return unavailable_page();
            }
        };
        let url = match self.provider.authorization_url(&transaction).await {
            Ok(url) => url,
            Err(error) => {
                let error: &dyn std::error::Error = &error;
                tracing::warn!(error, "cannot start a sign-in: the issuer is unavailable");
                return unavailable_page();
            }
        };
        let mut response = pages::redirect(StatusCode::FOUND, &url);
        pages::set_cookies(&mut response, cookies);
        response
    }

    /// `GET /_gateway/callback?code&state` (or `?error`): the issuer's answer.
    async fn callback(&self, parts: &Parts) -> Response<ProxyBody> {
        // Not HEAD: a code is redeemed once, for the page that shows the answer.
        if parts.method != Method::GET {
            return pages::method_not_allowed("GET");
        }
        let query = parts.uri.query();
        let param = |name| query_param(query, name).and_then(percent_decode);
        let state = param("state");
        let removal = state
            .as_deref()
            .and_then(|state| Transaction::removal_cookie(state, !self.insecure));
        let mut response = match (param("error"), param("code"), state.as_deref()) {
            (Some(error), _, _) => issuer_error_page(&error),
            (None, Some(code), Some(state)) => {
                self.finish_login(&parts.headers, &code, state).await
            }
            (None, _, _) => {
                tracing::info!("sign-in refused: the callback has no code or no state");
                failed_page(StatusCode::BAD_REQUEST, "This sign-in link is incomplete.")
            }
        };
        pages::set_cookies(&mut response, removal.into_iter().collect());
        response
    }

    /// The callback with a code: the transaction, then the code, then the access rules.
    async fn finish_login(
        &self,
        request: &HeaderMap,
        code: &str,
        state: &str,
    ) -> Response<ProxyBody> {
        let now = SystemTime::now();
        // The state is checked before the code is redeemed: a forged callback costs nothing
        // at the issuer.
        let Some(transaction) = Transaction::take(&self.keys, request, state, now) else {
            tracing::info!(
                "sign-in refused: no login transaction for this state (expired, foreign or from another browser)"
            );
            return failed_page(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired or was started in another browser.",
            );
        };
        if !self.used_states.first_use(state, now) {
            tracing::info!("sign-in refused: the state was used already");
            return failed_page(
                StatusCode::BAD_REQUEST,
                "This sign-in link was used already.",
            );
        }
        let tokens = match self.provider.redeem(code, &transaction).await {
            Ok(tokens) => tokens,
            Err(error) => {
                let error: &dyn std::error::Error = &error;
                tracing::warn!(error, "sign-in failed: the code was not redeemed");
                return failed_page(
                    StatusCode::BAD_GATEWAY,
                    "The sign-in service did not confirm this sign-in.",
                );
            }
        };
        let Some(claims) = &tokens.claims else {
            tracing::warn!("sign-in failed: the token response has no ID token");
            return failed_page(
                StatusCode::BAD_GATEWAY,
                "The sign-in service sent no ID token.",
            );
        };
        let identity = match self.rules.admit(claims) {
            Ok(identity) => identity,
            Err(denied) => {
                tracing::info!(reason = %denied, "sign-in denied by the access rules");
                return self.denied_page(&denied.to_string());
            }
        };
        let refresh_token = tokens
            .refresh_token
            .as_ref()
            .map(|token| token.expose_secret().to_owned());
        let nonce = transaction.nonce.clone();
        let session =
            SessionData::start(identity, nonce, &tokens, refresh_token, now, self.lifetime);
        let cookies = match session.seal(&self.cookie, request, now) {
            Ok(cookies) => cookies,
            Err(error) => {
                tracing::warn!(%error, user = %session.identity.user, "sign-in failed: the session cannot be sealed");
                return failed_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The session cannot be stored in a cookie.",
                );
            }
        };
        tracing::info!(user = %session.identity.user, "signed in");
        let mut response = pages::redirect(StatusCode::SEE_OTHER, &transaction.return_to);
        pages::set_cookies(&mut response, cookies);
        response
    }

    /// `POST /_gateway/logout`: removes every session cookie; then the issuer's sign-out
    /// (`--oidc-end-session`) or a "signed out" page.
    async fn logout(&self, parts: &Parts) -> Response<ProxyBody> {
        if parts.method != Method::POST {
            return pages::method_not_allowed("POST");
        }
        if !self.is_from_own_origin(&parts.extensions, &parts.headers) {
            tracing::info!("sign-out refused: not from the gateway's origin");
            return pages::cross_origin();
        }
        let removals = self.cookie.removal_cookies(&parts.headers);
        let after = format!("{}/", self.redirect_origin);
        let end_session = match self.end_session {
            true => self.provider.end_session_url(&after).await,
            false => None,
        };
        let mut response = match end_session {
            Some(url) => pages::redirect(StatusCode::SEE_OTHER, &url),
            None => Page::default()
                .text("You are signed out of MLflow.")
                .link("/", "Sign in again")
                .render(StatusCode::OK, "Signed out"),
        };
        pages::set_cookies(&mut response, removals);
        response
    }

    /// `GET /_gateway/userinfo`: who the session is, as JSON; 401 without one.
    async fn userinfo(&self, parts: &Parts) -> Response<ProxyBody> {
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            return pages::method_not_allowed("GET, HEAD");
        }
        let now = SystemTime::now();
        let unauthenticated = || {
            pages::json_error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "No session: sign in at /_gateway/login.",
            )
        };
        let Some(session) = SessionData::open(&self.cookie, &parts.headers, now) else {
            return unauthenticated();
        };
        let (session, cookies) = if session.refresh_due(now) {
            match self.renew(&session, &parts.headers, now).await {
                Ok(renewed) => renewed,
                Err(removals) => {
                    let mut response = unauthenticated();
                    pages::set_cookies(&mut response, removals);
                    return response;
                }
            }
        } else {
            (Arc::new(session), Vec::new())
        };
        let identity = &session.identity;
        let mut response = pages::json(
            StatusCode::OK,
            &serde_json::json!({
                "user": identity.user,
                "email": identity.email,
                "groups": identity.groups,
                "admin": identity.admin,
                "expires_at": session.expires_at,
            }),
        );
        pages::set_cookies(&mut response, cookies);
        response
    }

    /// The 403 page after the issuer's sign-in, for someone the access rules refuse.
    fn denied_page(&self, why: &str) -> Response<ProxyBody> {
        let mut response = Page::default()
            .text(why)
            .text("Sign out, then sign in as someone with access to MLflow.")
            .sign_out_form()
            .render(StatusCode::FORBIDDEN, "Access denied");
        // With sign-out at the issuer, the form's answer redirects there; browsers hold
        // redirects after a form to `form-action` too.
        if let (true, Some(issuer)) = (self.end_session, &self.issuer_origin) {
            let policy = format!("{} {issuer}", pages::CONTENT_SECURITY_POLICY);
            if let Ok(policy) = HeaderValue::try_from(policy) {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_SECURITY_POLICY, policy);
            }
        }
        response
    }
}

/// The page of an `error=` from the issuer: 403 for `access_denied` (the user said no, or
/// the issuer refused them), 502 otherwise; never a redirect, so never a loop.
fn issuer_error_page(error: &str) -> Response<ProxyBody> {
    // The issuer's word (or a forged link's): printable ASCII, one short line, in the log
    // and on the page.
    let error: String = error
        .chars()
        .filter(char::is_ascii_graphic)
        .take(64)
        .collect();
    tracing::info!(error = %error, "sign-in failed at the issuer");
    let (status, why) = match error.as_str() {
        "access_denied" => (StatusCode::FORBIDDEN, "The sign-in service denied access."),
        _ => (
            StatusCode::BAD_GATEWAY,
            "The sign-in service reported an error.",
        ),
    };
    try_again_page(status, "Sign-in failed", &[why, &format!("Error: {error}")])
}

/// A failed sign-in with a "try again" link.
fn failed_page(status: StatusCode, why: &str) -> Response<ProxyBody> {
    try_again_page(status, "Sign-in failed", &[why])
}

fn unavailable_page() -> Response<ProxyBody> {
    try_again_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in unavailable",
        &["The sign-in service is unavailable at the moment. Please try again later."],
    )
}

/// A sign-in that did not happen: `lines` say why, then a link back to the login.
fn try_again_page(status: StatusCode, title: &str, lines: &[&str]) -> Response<ProxyBody> {
    let page = lines
        .iter()
        .fold(Page::default(), |page, line| page.text(line));
    page.link(pages::LOGIN_PATH, "Try again")
        .render(status, title)
}

#[cfg(test)]
mod tests {
    use http::{Request, header};
    use secrecy::SecretString;
    use tower_mlflow_auth::{Exemptions, session::SessionKeys};

    use super::*;
    use crate::{
        config::SsoConfig,
        sso::provider::tests::{CLIENT_ID, TestIssuer},
    };

    /// A browser's `GET /_gateway/login` with `cookies` (`name=value` pairs).
    async fn login(sso: &Sso, cookies: &[String]) -> Vec<String> {
        let mut request = Request::get("/_gateway/login");
        if !cookies.is_empty() {
            request = request.header(header::COOKIE, cookies.join("; "));
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let response = sso.answer(&parts).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let set_cookies = response.headers().get_all(header::SET_COOKIE).iter();
        set_cookies
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_fifth_login_removes_the_oldest_transaction_cookie() {
        let issuer = TestIssuer::start().await;
        let config = SsoConfig::new(
            issuer.issuer(),
            CLIENT_ID,
            "/nonexistent/client-secret",
            "http://127.0.0.1:8080/_gateway/callback".parse().unwrap(),
            "/nonexistent/session-secret",
        );
        let keys =
            SessionKeys::from_secret(&SecretString::from("a-session-secret-of-at-least-32-bytes"))
                .unwrap();
        let secret = SecretString::from("gateway-secret");
        let sso = Sso::with_secrets(&config, secret, keys, Exemptions::new()).unwrap();

        // What the browser keeps: the cookies for /_gateway/, the oldest first.
        let mut jar: Vec<String> = Vec::new();
        for _ in 0..Transaction::MAX_OPEN {
            let [cookie] = &login(&sso, &jar).await[..] else {
                panic!("one cookie while there is room");
            };
            assert!(cookie.contains("; Path=/_gateway/;"), "{cookie}");
            jar.push(cookie.split(';').next().unwrap().to_owned());
        }
        let set_cookies = login(&sso, &jar).await;
        let oldest = jar[0].split('=').next().unwrap();
        assert_eq!(set_cookies.len(), 2, "{set_cookies:?}");
        assert_eq!(
            set_cookies[1],
            format!("{oldest}=; Path=/_gateway/; Max-Age=0; HttpOnly; SameSite=Lax")
        );
    }
}
