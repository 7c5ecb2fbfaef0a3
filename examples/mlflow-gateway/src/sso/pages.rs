//! What the gateway answers itself under `/_gateway/`: small HTML5 pages for people (no
//! script, every user value escaped) and JSON bodies for scripts and for the UI's API calls.

use std::fmt::{self, Write as _};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use tower_mlflow_auth::AuthRejection;

use crate::proxy::ProxyBody;

/// The `Content-Security-Policy` of every page: nothing may load, the page's own `<style>`
/// applies, and its forms post only to the gateway.
pub(crate) const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'";

/// Where a page's "try again" link goes.
pub(crate) const LOGIN_PATH: &str = "/_gateway/login";

/// Where a page's sign-out form posts.
pub(crate) const LOGOUT_PATH: &str = "/_gateway/logout";

/// `text` with `&`, `<`, `>`, `"` and `'` as character references: safe in element content
/// and in quoted attribute values.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// The body of a page: paragraphs, a link, a sign-out form. Texts given as `&str` are
/// escaped; only the fixed markup of these pieces is written raw.
#[derive(Default)]
pub(crate) struct Page {
    body: String,
}

impl Page {
    /// A paragraph of plain text (escaped).
    pub(crate) fn text(mut self, text: &str) -> Self {
        let _ = write!(self.body, "<p>{}</p>", Escaped(text));
        self
    }

    /// A paragraph with one link.
    pub(crate) fn link(mut self, href: &str, text: &str) -> Self {
        let _ = write!(
            self.body,
            "<p><a href=\"{}\">{}</a></p>",
            Escaped(href),
            Escaped(text)
        );
        self
    }

    /// A button that signs out (`POST /_gateway/logout`).
    pub(crate) fn sign_out_form(mut self) -> Self {
        let _ = write!(
            self.body,
            "<form method=\"post\" action=\"{LOGOUT_PATH}\"><button type=\"submit\">Sign out</button></form>"
        );
        self
    }

    /// The whole response: `status`, the page titled `title`, the security headers.
    pub(crate) fn render(self, status: StatusCode, title: &str) -> Response<ProxyBody> {
        let html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
             <h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
            title = Escaped(title),
            body = self.body,
        );
        let mut response = respond(status, html.into(), "text/html; charset=utf-8");
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        response
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;\
                     padding:0 1rem;line-height:1.5}";

/// A JSON response: `status` and `value`.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    // Serialising a `Value` cannot fail.
    let body = serde_json::to_vec(value).unwrap_or_default();
    respond(status, body.into(), "application/json")
}

/// `{"error": error, "message": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, error: &str, message: &str) -> Response<ProxyBody> {
    json(
        status,
        &serde_json::json!({ "error": error, "message": message }),
    )
}

/// The 403 of a state-changing request with a session from another origin.
pub(crate) fn cross_origin() -> Response<ProxyBody> {
    json_error(
        StatusCode::FORBIDDEN,
        "cross_origin",
        "This request changes state and carries the session cookie, but its Origin (or \
         Referer) is not the gateway's.",
    )
}

/// 405 with `Allow`.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<ProxyBody> {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This method is not allowed here.",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The 404 of an unknown path under `/_gateway/`.
pub(crate) fn not_found() -> Response<ProxyBody> {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "No such page of the gateway.",
    )
}

/// The `AuthLayer`'s rejections as JSON, when browser sign-in is on: a script of the UI
/// gets a body it can read, and the 401 has no `Basic` challenge unless a password store
/// asks for one (the layer adds the challenges of its authenticator).
pub(crate) fn rejection(rejection: &AuthRejection) -> Response<ProxyBody> {
    let error = match rejection {
        AuthRejection::Forbidden => "forbidden",
        AuthRejection::Unavailable => "unavailable",
        _ => "unauthenticated",
    };
    json_error(rejection.status(), error, rejection.message())
}

/// A redirect (`302` or `303`) to `location`, never cached.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut response = respond(status, Bytes::new(), "text/plain; charset=utf-8");
    match HeaderValue::try_from(location) {
        Ok(location) => {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Err(_) => *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    response
}

/// Appends `cookies` as `Set-Cookie` headers.
pub(crate) fn set_cookies(response: &mut Response<ProxyBody>, cookies: Vec<HeaderValue>) {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
}

/// `Cache-Control: no-store`: nothing the gateway answers itself is kept by a cache.
pub(crate) fn no_store(response: &mut Response<ProxyBody>) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn respond(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    no_store(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    async fn text(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn user_values_are_escaped() {
        assert_eq!(
            Escaped(r#"<script>alert("x&y's")</script>"#).to_string(),
            "&lt;script&gt;alert(&quot;x&amp;y&#39;s&quot;)&lt;/script&gt;"
        );
        assert_eq!(Escaped("plain").to_string(), "plain");
    }

    #[tokio::test]
    async fn pages_are_html5_without_script_and_with_the_policy() {
        let response = Page::default()
            .text("<b>bob</b> is not allowed")
            .sign_out_form()
            .link(LOGIN_PATH, "Try again")
            .render(StatusCode::FORBIDDEN, "Access <denied>");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let html = text(response).await;
        assert!(
            html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
            "{html}"
        );
        assert!(
            html.contains("<title>Access &lt;denied&gt;</title>"),
            "{html}"
        );
        assert!(html.contains("<p>&lt;b&gt;bob&lt;/b&gt; is not allowed</p>"));
        assert!(html.contains("<form method=\"post\" action=\"/_gateway/logout\">"));
        assert!(html.contains("<a href=\"/_gateway/login\">Try again</a>"));
        assert!(!html.contains("<script"), "{html}");
    }

    #[tokio::test]
    async fn rejections_are_json_with_the_layer_status() {
        let response = rejection(&AuthRejection::Missing);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
        let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body["error"], "unauthenticated");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("not authenticated")
        );
        assert_eq!(
            rejection(&AuthRejection::Unavailable).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
