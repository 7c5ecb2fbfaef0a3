//! The gateway assertion: who the authenticated user is, signed for MLflow's basic-auth app
//! (`--mlflow-assertion-secret-file`), so that MLflow's own permissions judge every request.
//!
//! The MLflow side is the Python package in `examples/mlflow-gateway/python`
//! (`authorization_function = mlflow_gateway_auth:authenticate_request`). The header:
//!
//! ```text
//! X-MLflow-Gateway-Assertion: v1.<unix seconds>.<admin>.<b64(user)>.<b64(mac)>
//! mac = HMAC-SHA256(secret, "mlflow-gateway-assertion.v1\n<unix seconds>\n<admin>\n<b64(user)>\n<METHOD>\n<path>")
//! ```
//!
//! `b64` is base64url without padding, `<admin>` is `1` / `0` (in / not in
//! `--mlflow-admin-group`) or `-` (unknown: MLflow keeps its own `is_admin`), and `<path>` is
//! the upstream request path percent-decoded, without the query string. MLflow accepts it for
//! 60 s either side of its clock. The path is the only free-form field and it comes last, so
//! the signed text has one reading. The query string and the body are not signed: the
//! assertion is a bearer credential on the gateway → MLflow hop for its 60 s.
//!
//! ```
//! use mlflow_gateway::assertion::{AdminClaim, Asserter};
//! use secrecy::SecretString;
//!
//! let asserter = Asserter::new(SecretString::from("0123456789abcdef0123456789abcdef")).unwrap();
//! let value = asserter.header_value("alice", AdminClaim::Unknown, &http::Method::GET, "/api/x", 1_700_000_000);
//! assert!(value.to_str().unwrap().starts_with("v1.1700000000.-.YWxpY2U."));
//! ```

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use hmac::{Hmac, KeyInit as _, Mac as _};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, uri::PathAndQuery};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;
use tower_mlflow_auth::{Authorization, Scheme};
use tower_mlflow_core::http::HttpClient;

use crate::proxy::Upstream;

/// Signs gateway assertions with the shared secret.
#[derive(Clone)]
pub struct Asserter {
    secret: SecretString,
}

impl fmt::Debug for Asserter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asserter").finish_non_exhaustive()
    }
}

/// What the gateway knows about the user's admin status, sent as `<admin>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminClaim {
    /// In `--mlflow-admin-group`: MLflow makes the user an admin.
    Yes,
    /// Groups known and not in it: MLflow makes the user a non-admin.
    No,
    /// No group information (a password login): MLflow keeps its own `is_admin`.
    Unknown,
}

impl AdminClaim {
    /// The claim for `principal`: group membership (the JWT `groups` claim, already turned
    /// into [`Authorization::is_admin`] by the JWT authenticator) is only known for bearer
    /// tokens, and only when `admin_group` is configured.
    pub fn of(principal: &Authorization, admin_group: bool) -> Self {
        match (admin_group, principal.scheme()) {
            (true, Scheme::Bearer) if principal.is_admin() => Self::Yes,
            (true, Scheme::Bearer) => Self::No,
            _ => Self::Unknown,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "1",
            Self::No => "0",
            Self::Unknown => "-",
        }
    }
}

impl Asserter {
    /// The header that carries the assertion. Clients' copies (every spelling) are removed.
    pub const HEADER: HeaderName = HeaderName::from_static("x-mlflow-gateway-assertion");
    /// The shortest secret accepted, in bytes (the Python side enforces the same).
    pub const MIN_SECRET_LEN: usize = 32;
    /// How long MLflow accepts an assertion (documentation; enforced on the MLflow side).
    pub const VALIDITY: Duration = Duration::from_secs(60);

    /// An asserter with `secret` (surrounding whitespace removed, as the Python side does).
    ///
    /// # Errors
    ///
    /// [`AssertionSecretError::TooShort`] below [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN).
    pub fn new(secret: SecretString) -> Result<Self, AssertionSecretError> {
        let exposed = secret.expose_secret();
        let trimmed = exposed.trim();
        if trimmed.len() < Self::MIN_SECRET_LEN {
            return Err(AssertionSecretError::TooShort { path: None });
        }
        let secret = if trimmed.len() == exposed.len() {
            secret
        } else {
            SecretString::from(trimmed)
        };
        Ok(Self { secret })
    }

    /// An asserter with the secret in the file at `path` (`--mlflow-assertion-secret-file`),
    /// read once: after rotating the file, restart the gateway (MLflow re-reads it itself).
    ///
    /// # Errors
    ///
    /// [`AssertionSecretError`] naming the file when it cannot be read or is too short.
    pub fn from_file(path: &Path) -> Result<Self, AssertionSecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| AssertionSecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::new(SecretString::from(text)).map_err(|_| AssertionSecretError::TooShort {
            path: Some(path.to_owned()),
        })
    }

    /// The header value for `subject` sending `method` to the upstream `path` at `unix_time`.
    pub fn header_value(
        &self,
        subject: &str,
        admin: AdminClaim,
        method: &Method,
        path: &str,
        unix_time: u64,
    ) -> HeaderValue {
        let timestamp = unix_time.to_string();
        let user = URL_SAFE_NO_PAD.encode(subject);
        let mut mac = <Hmac<Sha256>>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(CONTEXT);
        for field in [timestamp.as_str(), admin.as_str(), &user, method.as_str()] {
            mac.update(b"\n");
            mac.update(field.as_bytes());
        }
        mac.update(b"\n");
        mac.update(&percent_decoded(path));
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let value = format!("v1.{timestamp}.{}.{user}.{tag}", admin.as_str());
        HeaderValue::try_from(value).expect("base64url, digits and dots are header-safe")
    }

    /// [`header_value`](Self::header_value) now, by the wall clock (MLflow compares with its
    /// own wall clock, so tokio's monotonic clock would not do).
    pub fn header_value_now(
        &self,
        subject: &str,
        admin: AdminClaim,
        method: &Method,
        path: &str,
    ) -> HeaderValue {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.header_value(subject, admin, method, path, now)
    }
}

/// What the proxy does with an asserter: one header on each authenticated request.
#[derive(Debug)]
pub(crate) struct Delegation {
    asserter: Asserter,
    admin_group: bool,
}

impl Delegation {
    pub(crate) fn new(asserter: Asserter, admin_group: bool) -> Self {
        Self {
            asserter,
            admin_group,
        }
    }

    /// Signs the principal of `parts` (none on an exempt request: MLflow then sees an
    /// anonymous one) for its method and upstream path. Client copies are removed before.
    pub(crate) fn assert(&self, parts: &mut http::request::Parts) {
        let Some(principal) = parts.extensions.get::<Authorization>() else {
            return;
        };
        let value = self.asserter.header_value_now(
            principal.subject(),
            AdminClaim::of(principal, self.admin_group),
            &parts.method,
            parts.uri.path(),
        );
        parts.headers.insert(Asserter::HEADER, value);
    }
}

/// `path` with `%XX` escapes decoded, as the WSGI/ASGI server in front of MLflow does; a
/// malformed escape stays as it is.
fn percent_decoded(path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Invalid UTF-8 becomes U+FFFD on the Python side (werkzeug decodes with "replace").
    String::from_utf8_lossy(&out).into_owned().into_bytes()
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The first line of the signed text: a version bound into the MAC.
const CONTEXT: &[u8] = b"mlflow-gateway-assertion.v1";

/// Why the assertion secret cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum AssertionSecretError {
    /// The file cannot be read (or is not UTF-8).
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Fewer than [`Asserter::MIN_SECRET_LEN`] bytes once trimmed.
    TooShort {
        /// The file, when the secret came from one.
        path: Option<PathBuf>,
    },
}

impl fmt::Display for AssertionSecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, .. } => write!(
                f,
                "cannot read the --mlflow-assertion-secret-file {}",
                path.display()
            ),
            Self::TooShort { path } => {
                f.write_str("the MLflow assertion secret")?;
                if let Some(path) = path {
                    write!(f, " in {}", path.display())?;
                }
                write!(
                    f,
                    " is shorter than {} bytes (make one with `openssl rand -hex 32`)",
                    Asserter::MIN_SECRET_LEN
                )
            }
        }
    }
}

impl std::error::Error for AssertionSecretError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::TooShort { .. } => None,
        }
    }
}

/// The request the start-up check sends without an assertion.
const PROBE: &str = "/api/2.0/mlflow/experiments/search?max_results=1";

/// Checks once that `upstream` refuses a request without an assertion (401), and warns
/// loudly when it does not: then anyone who reaches MLflow directly bypasses the gateway,
/// or MLflow is not running `mlflow_gateway_auth` and every delegated request will fail.
/// An upstream that is not up yet is retried for about a minute.
pub(crate) async fn check_upstream_refuses_unsigned(client: HttpClient, upstream: Upstream) {
    let Ok(uri) = upstream.uri_for(Some(&PathAndQuery::from_static(PROBE))) else {
        return;
    };
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=6 {
        let request = Request::get(uri.clone())
            .body(Bytes::new())
            .expect("a GET with a valid URI");
        match client.send(request).await {
            Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                tracing::info!(
                    upstream = %upstream,
                    "the upstream refuses requests without a gateway assertion: delegation is in force"
                );
                return;
            }
            Ok(response) => {
                tracing::error!(
                    upstream = %upstream,
                    status = response.status().as_u16(),
                    "!!! THE UPSTREAM ACCEPTS REQUESTS WITHOUT A GATEWAY ASSERTION (GET {PROBE} \
                     was not refused with 401). Run MLflow with --app-name basic-auth, \
                     authorization_function = mlflow_gateway_auth:authenticate_request and \
                     MLFLOW_GATEWAY_ASSERTION_SECRET_FILE, and keep it unreachable except \
                     through the gateway !!!"
                );
                return;
            }
            Err(error) if attempt < 6 => {
                tracing::debug!(%error, "the upstream is not answering yet; checking again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => {
                let error: &dyn std::error::Error = &error;
                tracing::warn!(
                    error,
                    upstream = %upstream,
                    "could not check that the upstream refuses requests without a gateway assertion"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asserter() -> Asserter {
        Asserter::new(SecretString::from("  0123456789abcdef0123456789abcdef\n")).unwrap()
    }

    /// Computed with `mlflow_gateway_auth.sign(b"0123456789abcdef0123456789abcdef", "alice",
    /// "GET", "/api/2.0/mlflow/experiments/get a", admin="1", now=1700000000)`.
    #[test]
    fn matches_the_python_signer() {
        let value = asserter().header_value(
            "alice",
            AdminClaim::Yes,
            &Method::GET,
            "/api/2.0/mlflow/experiments/get%20a",
            1_700_000_000,
        );
        assert_eq!(value, PYTHON_VECTOR);
    }

    const PYTHON_VECTOR: &str =
        "v1.1700000000.1.YWxpY2U.e72DtJJuSAt0sjqjSFfHXUIo4Hg_d87H8U2LWQ6Cn_s";

    #[test]
    fn every_signed_field_changes_the_mac() {
        let a = asserter();
        let base = a.header_value("u", AdminClaim::Unknown, &Method::GET, "/p", 1);
        for other in [
            a.header_value("v", AdminClaim::Unknown, &Method::GET, "/p", 1),
            a.header_value("u", AdminClaim::Yes, &Method::GET, "/p", 1),
            a.header_value("u", AdminClaim::Unknown, &Method::POST, "/p", 1),
            a.header_value("u", AdminClaim::Unknown, &Method::GET, "/q", 1),
            a.header_value("u", AdminClaim::Unknown, &Method::GET, "/p", 2),
        ] {
            let tag = |v: &HeaderValue| v.to_str().unwrap().rsplit('.').next().unwrap().to_owned();
            assert_ne!(tag(&base), tag(&other));
        }
    }

    #[test]
    fn percent_escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(percent_decoded("/a%20b%2Fc"), b"/a b/c");
        assert_eq!(percent_decoded("/x%zz%4"), b"/x%zz%4");
        assert_eq!(percent_decoded("/%E2%82%AC"), "/€".as_bytes());
        assert_eq!(percent_decoded("/%FF"), "/\u{FFFD}".as_bytes());
    }

    #[test]
    fn short_or_missing_secrets_are_refused_without_showing_them() {
        let error = Asserter::new(SecretString::from("short-secret")).unwrap_err();
        assert!(!error.to_string().contains("short-secret"), "{error}");
        let missing = Asserter::from_file(Path::new("/nonexistent/secret")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/secret"),
            "{missing}"
        );
        assert!(std::error::Error::source(&missing).is_some());
        assert_eq!(format!("{:?}", asserter()), "Asserter { .. }");
    }

    #[test]
    fn admin_claims_need_groups_and_a_token() {
        let basic = Authorization::new("a", Scheme::Basic).with_admin(true);
        let token = Authorization::new("a", Scheme::Bearer);
        assert_eq!(AdminClaim::of(&basic, true), AdminClaim::Unknown);
        assert_eq!(AdminClaim::of(&token, false), AdminClaim::Unknown);
        assert_eq!(AdminClaim::of(&token, true), AdminClaim::No);
        assert_eq!(
            AdminClaim::of(&token.with_admin(true), true),
            AdminClaim::Yes
        );
    }
}
