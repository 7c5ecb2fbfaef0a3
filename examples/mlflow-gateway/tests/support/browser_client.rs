//! A browser stand-in for sign-in tests: plain HTTP/1.1 over loopback, a cookie jar per
//! `host:port` (Path, Max-Age and Expires honoured), redirects followed one hop at a time, and
//! HTML forms (the provider's login and consent forms) parsed and posted like a browser does.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// What a browser sends for a top-level page load.
const NAVIGATE_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// One response, with the URL it answered.
#[derive(Clone)]
pub struct Page {
    /// The URL requested.
    pub url: Uri,
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, as text (lossy).
    pub body: String,
}

impl Page {
    /// Whether it is a 301, 302, 303, 307 or 308 with a `Location`.
    pub fn is_redirect(&self) -> bool {
        self.status.is_redirection() && self.headers.contains_key(header::LOCATION)
    }

    /// Its `Location`, resolved against [`url`](Self::url).
    pub fn location(&self) -> Option<Uri> {
        let location = self.headers.get(header::LOCATION)?.to_str().ok()?;
        resolve(&self.url, location)
    }

    /// Its `Content-Type`, or "".
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Its `Set-Cookie` values.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The `Set-Cookie` values naming cookie `name` (or, with a trailing `*`, any cookie
    /// whose name starts with the rest).
    pub fn set_cookies_named(&self, name: &str) -> Vec<&str> {
        self.set_cookies()
            .into_iter()
            .filter(|line| {
                let cookie_name = line.split('=').next().unwrap_or("").trim();
                match name.strip_suffix('*') {
                    Some(prefix) => cookie_name.starts_with(prefix),
                    None => cookie_name == name,
                }
            })
            .collect()
    }

    /// `href` (from this page) resolved against [`url`](Self::url).
    pub fn resolve(&self, href: &str) -> Option<Uri> {
        resolve(&self.url, href)
    }

    /// The first `<form>` of the body, if any.
    pub fn form(&self) -> Option<Form> {
        Form::parse(&self.url, &self.body)
    }

    /// The body as JSON; panics naming the page when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body: String = self.body.chars().take(1500).collect();
        f.debug_struct("Page")
            .field("url", &self.url)
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

/// An HTML form: where it posts and its pre-filled fields (hidden inputs and inputs with a
/// `value`).
#[derive(Clone, Debug)]
pub struct Form {
    /// The resolved `action` (the page's URL when absent).
    pub action: Uri,
    /// `GET` or `POST` (upper case).
    pub method: Method,
    /// Names of every input, in order.
    pub inputs: Vec<String>,
    /// Pre-filled `(name, value)` pairs.
    pub fields: Vec<(String, String)>,
}

impl Form {
    /// The first form in `html`, served at `url`.
    pub fn parse(url: &Uri, html: &str) -> Option<Self> {
        let start = find_ci(html, "<form")?;
        let rest = &html[start..];
        let end = find_ci(rest, "</form").unwrap_or(rest.len());
        let inner = &rest[..end];
        let tag_end = inner.find('>')?;
        let form_attrs = attributes(&inner[5..tag_end]);
        let action = attr(&form_attrs, "action").unwrap_or_default();
        let action = if action.is_empty() {
            url.clone()
        } else {
            resolve(url, &action)?
        };
        let method = match attr(&form_attrs, "method") {
            Some(m) if m.eq_ignore_ascii_case("post") => Method::POST,
            _ => Method::GET,
        };
        let mut inputs = Vec::new();
        let mut fields = Vec::new();
        let mut cursor = &inner[tag_end..];
        while let Some(at) = find_ci(cursor, "<input") {
            let tag = &cursor[at + 6..];
            let close = tag.find('>').unwrap_or(tag.len());
            let attrs = attributes(&tag[..close]);
            cursor = &tag[close..];
            let Some(name) = attr(&attrs, "name") else {
                continue;
            };
            inputs.push(name.clone());
            if let Some(value) = attr(&attrs, "value") {
                fields.push((name, value));
            }
        }
        Some(Self {
            action,
            method,
            inputs,
            fields,
        })
    }

    /// Whether it has an input named `name`.
    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|n| n == name)
    }

    /// The pre-filled fields with `overrides` set (replacing or adding), URL-encoded.
    pub fn encode(&self, overrides: &[(&str, &str)]) -> String {
        let mut fields = self.fields.clone();
        for (name, value) in overrides {
            fields.retain(|(n, _)| n != name);
            fields.push(((*name).to_owned(), (*value).to_owned()));
        }
        fields
            .iter()
            .map(|(n, v)| format!("{}={}", form_encode(n), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Why [`Jar::sign_in`] did not end signed in.
#[derive(Debug)]
#[non_exhaustive]
pub enum SignInError {
    /// The flow ended on a page that is neither a form to fill nor the gateway (the
    /// provider refused the login, or an error page).
    Stuck(Page),
    /// The provider kept showing forms.
    TooManyForms(Page),
    /// The gateway answered the callback (or what followed) with this non-2xx page.
    Refused(Page),
}

impl fmt::Display for SignInError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stuck(page) => write!(f, "sign-in stuck at {page:?}"),
            Self::TooManyForms(page) => write!(f, "the provider kept showing forms: {page:?}"),
            Self::Refused(page) => write!(f, "the gateway refused the sign-in: {page:?}"),
        }
    }
}

impl std::error::Error for SignInError {}

impl SignInError {
    /// The page the flow ended on.
    pub fn page(&self) -> &Page {
        match self {
            Self::Stuck(page) | Self::TooManyForms(page) | Self::Refused(page) => page,
        }
    }
}

/// One stored cookie.
#[derive(Clone, Debug)]
pub struct Cookie {
    /// `host:port` it belongs to.
    pub authority: String,
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Its path (the default path when the server gave none).
    pub path: String,
    /// When it expires; `None` for a session cookie.
    pub expires: Option<SystemTime>,
    /// The `Set-Cookie` line that made it.
    pub set_cookie: String,
}

/// A cookie-keeping HTTP client, like a browser tab without JavaScript.
#[derive(Debug)]
pub struct Jar {
    client: Client<HttpConnector, Full<Bytes>>,
    cookies: Vec<Cookie>,
}

impl Default for Jar {
    fn default() -> Self {
        Self::new()
    }
}

impl Jar {
    /// The most redirects followed in a row.
    pub const MAX_REDIRECTS: usize = 20;
    /// The most provider forms [`authorize`](Self::authorize) fills in one sign-in.
    pub const MAX_FORMS: usize = 4;
    /// How long one exchange may take.
    pub const TIMEOUT: Duration = Duration::from_secs(60);

    /// An empty jar.
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookies: Vec::new(),
        }
    }

    /// Sends `request` (an absolute URL) with the jar's cookies for it added to any `Cookie`
    /// it has, and stores the response's cookies. No redirect is followed. Panics when no
    /// answer comes within [`TIMEOUT`](Self::TIMEOUT).
    pub async fn send(&mut self, request: Request<Bytes>) -> Page {
        let (mut parts, body) = request.into_parts();
        let url = parts.uri.clone();
        if let Some(cookie) = self.cookie_header(&url) {
            let merged = match parts.headers.get(header::COOKIE) {
                Some(existing) => format!("{}; {cookie}", existing.to_str().unwrap_or("")),
                None => cookie,
            };
            parts
                .headers
                .insert(header::COOKIE, HeaderValue::from_str(&merged).unwrap());
        }
        let request = Request::from_parts(parts, Full::new(body));
        let response = tokio::time::timeout(Self::TIMEOUT, self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("no answer from {url} within {:?}", Self::TIMEOUT))
            .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"));
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Self::TIMEOUT, body.collect())
            .await
            .unwrap_or_else(|_| panic!("no body from {url} within {:?}", Self::TIMEOUT))
            .unwrap_or_else(|e| panic!("body from {url} failed: {e:?}"))
            .to_bytes();
        let page = Page {
            url,
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        for line in page.set_cookies() {
            self.store(&page.url, line);
        }
        page
    }

    /// One top-level page load (`Sec-Fetch-Mode: navigate`, `Accept: text/html…`) of `url`,
    /// without following redirects.
    pub async fn get(&mut self, url: &str) -> Page {
        let request = navigation(Method::GET, parse_url(url), None);
        self.send(request).await
    }

    /// A top-level page load of `url`, following redirects.
    pub async fn navigate(&mut self, url: &str) -> Page {
        let page = self.get(url).await;
        self.follow(page).await
    }

    /// Follows `page`'s redirects (as GETs, like a browser after a 302 or 303) until a page
    /// that is not one; panics after [`MAX_REDIRECTS`](Self::MAX_REDIRECTS).
    pub async fn follow(&mut self, page: Page) -> Page {
        match self.follow_until(page, |_| false).await {
            Ok(next) => unreachable!("stopped before {next}"),
            Err(page) => page,
        }
    }

    /// Follows `page`'s redirects until one points at a URL for which `stop` holds: that URL
    /// is returned, not visited. `Err` with the last page when the redirects end first.
    pub async fn follow_until(
        &mut self,
        mut page: Page,
        stop: impl Fn(&Uri) -> bool,
    ) -> Result<Uri, Page> {
        for _ in 0..Self::MAX_REDIRECTS {
            let Some(next) = page.location().filter(|_| page.is_redirect()) else {
                return Err(page);
            };
            if stop(&next) {
                return Ok(next);
            }
            page = self.send(navigation(Method::GET, next, None)).await;
        }
        panic!("more than {} redirects: {page:?}", Self::MAX_REDIRECTS);
    }

    /// Submits `page`'s first form with `overrides` set, as a browser does (`Origin` of the
    /// page, `application/x-www-form-urlencoded`), and follows the redirects. Panics when
    /// the page has no form.
    pub async fn submit_form(&mut self, page: &Page, overrides: &[(&str, &str)]) -> Page {
        let request = self.form_request(page, overrides);
        let answer = self.send(request).await;
        self.follow(answer).await
    }

    fn form_request(&self, page: &Page, overrides: &[(&str, &str)]) -> Request<Bytes> {
        let form = page.form().unwrap_or_else(|| panic!("no form on {page:?}"));
        let encoded = form.encode(overrides);
        if form.method == Method::GET {
            let mut url = form.action.to_string();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&encoded);
            return navigation(Method::GET, parse_url(&url), None);
        }
        let mut request = navigation(Method::POST, form.action, Some(Bytes::from(encoded)));
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_str(&origin_of(&page.url)).unwrap(),
        );
        request
    }

    /// From a page load of `start`, through the provider's login (as `login`, any password)
    /// and consent forms, up to the redirect to a `/_gateway/callback` URL, which is returned
    /// unvisited (with its `code` and `state`).
    pub async fn authorize(&mut self, start: &str, login: &str) -> Result<Uri, SignInError> {
        let page = self.get(start).await;
        self.authorize_from(page, login).await
    }

    /// [`authorize`](Self::authorize) from a page already fetched (such as the 302 of
    /// `/_gateway/login`).
    pub async fn authorize_from(&mut self, page: Page, login: &str) -> Result<Uri, SignInError> {
        let is_callback = |url: &Uri| url.path() == "/_gateway/callback";
        let mut page = match self.follow_until(page, is_callback).await {
            Ok(callback) => return Ok(callback),
            Err(page) => page,
        };
        for _ in 0..Self::MAX_FORMS {
            let Some(form) = page.form().filter(|_| page.status == StatusCode::OK) else {
                return Err(SignInError::Stuck(page));
            };
            let request = if form.has_input("login") {
                self.form_request(&page, &[("login", login), ("password", "any-password")])
            } else {
                self.form_request(&page, &[])
            };
            let answer = self.send(request).await;
            page = match self.follow_until(answer, is_callback).await {
                Ok(callback) => return Ok(callback),
                Err(page) => page,
            };
        }
        Err(SignInError::TooManyForms(page))
    }

    /// Signs in at `gateway` (`http://host:port`) as `login`: a page load of `/`, the
    /// provider's forms, the callback and its redirects. `Ok` with the page landed on when it
    /// is a 2xx; see [`SignInError`] otherwise.
    pub async fn sign_in(&mut self, gateway: &str, login: &str) -> Result<Page, SignInError> {
        let callback = self
            .authorize(&format!("{}/", gateway.trim_end_matches('/')), login)
            .await?;
        let page = self.navigate(&callback.to_string()).await;
        if page.status.is_success() {
            Ok(page)
        } else {
            Err(SignInError::Refused(page))
        }
    }

    /// A non-navigation request (`Accept: application/json`, like `fetch` from a page or a
    /// script), with a JSON body when given and `Origin` when given. No redirect followed.
    pub async fn api(
        &mut self,
        method: Method,
        url: &str,
        json: Option<&str>,
        origin: Option<&str>,
    ) -> Page {
        let mut request = Request::builder()
            .method(method)
            .uri(parse_url(url))
            .header(header::ACCEPT, "application/json");
        if json.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let body = Bytes::from(json.unwrap_or("").to_owned());
        self.send(request.body(body).unwrap()).await
    }

    /// The live cookies of `authority` (`host:port`).
    pub fn cookies(&self, authority: &str) -> Vec<&Cookie> {
        let now = SystemTime::now();
        self.cookies
            .iter()
            .filter(|c| c.authority == authority && c.expires.is_none_or(|at| at > now))
            .collect()
    }

    /// The value of `authority`'s live cookie `name` (any path).
    pub fn cookie(&self, authority: &str, name: &str) -> Option<&str> {
        self.cookies(authority)
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.value.as_str())
    }

    /// The names of `authority`'s live cookies.
    pub fn cookie_names(&self, authority: &str) -> Vec<String> {
        self.cookies(authority)
            .into_iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Sets cookie `name` for `authority` at `path`, as if the server had (a session cookie).
    pub fn set_cookie(&mut self, authority: &str, name: &str, value: &str, path: &str) {
        self.cookies
            .retain(|c| !(c.authority == authority && c.name == name && c.path == path));
        self.cookies.push(Cookie {
            authority: authority.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
            path: path.to_owned(),
            expires: None,
            set_cookie: format!("{name}={value}; Path={path}"),
        });
    }

    /// Removes every cookie of `authority` named `name`.
    pub fn remove_cookie(&mut self, authority: &str, name: &str) {
        self.cookies
            .retain(|c| !(c.authority == authority && c.name == name));
    }

    /// The `Cookie` header a browser would send to `url`.
    pub fn cookie_header(&self, url: &Uri) -> Option<String> {
        let authority = authority_of(url);
        let path = url.path();
        let mut matching: Vec<&Cookie> = self
            .cookies(&authority)
            .into_iter()
            .filter(|c| path_matches(path, &c.path))
            .collect();
        // Longer paths first (RFC 6265 §5.4).
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let header = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ");
        (!header.is_empty()).then_some(header)
    }

    fn store(&mut self, url: &Uri, line: &str) {
        let mut parts = line.split(';');
        let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return;
        }
        let mut path = None;
        let mut max_age = None;
        let mut expires = None;
        for attribute in parts {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            let (key, val) = (key.trim(), val.trim());
            if key.eq_ignore_ascii_case("path") && val.starts_with('/') {
                path = Some(val.to_owned());
            } else if key.eq_ignore_ascii_case("max-age") {
                max_age = val.parse::<i64>().ok();
            } else if key.eq_ignore_ascii_case("expires") {
                expires = parse_cookie_date(val);
            }
        }
        let path = path.unwrap_or_else(|| default_path(url.path()));
        let authority = authority_of(url);
        self.cookies
            .retain(|c| !(c.authority == authority && c.name == name && c.path == path));
        // Max-Age wins over Expires (RFC 6265 §5.3 step 3).
        let expires = match max_age {
            Some(secs) if secs <= 0 => Some(UNIX_EPOCH),
            Some(secs) => Some(SystemTime::now() + Duration::from_secs(secs.unsigned_abs())),
            None => expires,
        };
        if expires.is_some_and(|at| at <= SystemTime::now()) {
            return;
        }
        self.cookies.push(Cookie {
            authority,
            name: name.to_owned(),
            value: value.to_owned(),
            path,
            expires,
            set_cookie: line.to_owned(),
        });
    }
}

/// Signs in at `gateway` as `login` in a new jar (see [`Jar::sign_in`]).
pub async fn sign_in(gateway: &str, login: &str) -> Result<Jar, SignInError> {
    let mut jar = Jar::new();
    jar.sign_in(gateway, login).await?;
    Ok(jar)
}

/// `scheme://host[:port]` of `url`.
pub fn origin_of(url: &Uri) -> String {
    format!(
        "{}://{}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map_or("", |a| a.as_str())
    )
}

/// `host:port` of `url` (port 80 when absent).
pub fn authority_of(url: &Uri) -> String {
    format!(
        "{}:{}",
        url.host().unwrap_or(""),
        url.port_u16().unwrap_or(80)
    )
}

/// A request like a browser's top-level page load or form submission.
fn navigation(method: Method, url: Uri, body: Option<Bytes>) -> Request<Bytes> {
    Request::builder()
        .method(method)
        .uri(url)
        .header(header::ACCEPT, NAVIGATE_ACCEPT)
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .header(header::USER_AGENT, "tower-mlflow-tests-jar")
        .body(body.unwrap_or_default())
        .unwrap()
}

fn parse_url(url: &str) -> Uri {
    url.parse()
        .unwrap_or_else(|e| panic!("not a URL: {url:?}: {e}"))
}

/// `location` resolved against `base`: absolute, `//authority…`, `/path…`, or relative to
/// `base`'s directory.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    let location = unescape_html(location);
    if location.contains("://") && !location.starts_with('/') {
        return location.parse().ok();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}").parse().ok();
    }
    let origin = origin_of(base);
    if location.starts_with('/') {
        return format!("{origin}{location}").parse().ok();
    }
    let directory = default_path(base.path());
    let directory = directory.trim_end_matches('/');
    format!("{origin}{directory}/{location}").parse().ok()
}

/// RFC 6265 §5.1.4: the directory of the request path.
fn default_path(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(at) => path[..at].to_owned(),
    }
}

/// RFC 6265 §5.1.4 path-match.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// An `Expires` date (`Thu, 01 Jan 1970 00:00:00 GMT` and the like): day, month name,
/// year and time in any order, as RFC 6265 §5.1.1 reads them.
fn parse_cookie_date(text: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for token in text.split([' ', ',', '-']) {
        let lower = token.to_ascii_lowercase();
        if time.is_none() && token.matches(':').count() == 2 {
            let mut hms = token.split(':').map(|n| n.parse::<u64>().ok());
            time = Some((hms.next()??, hms.next()??, hms.next()??));
        } else if day.is_none() && token.len() <= 2 && !token.is_empty() {
            day = token.parse::<u64>().ok();
        } else if month.is_none() && lower.len() >= 3 && MONTHS.contains(&&lower[..3]) {
            month = MONTHS.iter().position(|m| *m == &lower[..3]);
        } else if year.is_none() && token.len() == 4 {
            year = token.parse::<i64>().ok();
        }
    }
    let (day, month, year, (h, m, s)) = (day?, month?, year?, time?);
    let days = days_from_civil(year, month as i64 + 1, day as i64);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(needle)
}

/// The attributes of a tag's inside (`name="x" value='y' required`), names lower-cased,
/// values HTML-unescaped.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag.trim_end_matches('/').trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (value, remainder) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let inner = &after[1..];
                    let close = inner.find(quote).unwrap_or(inner.len());
                    (&inner[..close], inner.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let close = after
                        .find(|c: char| c.is_ascii_whitespace())
                        .unwrap_or(after.len());
                    (&after[..close], &after[close..])
                }
            };
            rest = remainder.trim_start();
            unescape_html(value)
        } else {
            String::new()
        };
        if !name.is_empty() {
            out.push((name, value));
        }
        rest = rest.trim_start_matches('/').trim_start();
    }
    out
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;` and numeric references decoded.
fn unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|&end| end <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The value of query parameter `name` in `url`, percent-decoded.
pub fn query_param(url: &Uri, name: &str) -> Option<String> {
    url.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
