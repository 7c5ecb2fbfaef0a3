//! [`SsoConfig`]: browser sign-in with an OpenID Connect issuer (`--oidc-*`,
//! `--session-*`, the allow-lists).

use std::{fmt, path::PathBuf, time::Duration};

use http::Uri;

use super::{ConfigError, toml_list, toml_text};

/// Browser sign-in for the MLflow UI: the authorization-code flow with PKCE against an OpenID
/// Connect issuer, and the session cookie that follows. Build it with [`SsoConfig::new`] and
/// the public fields; [`Config::validate`](super::Config::validate) checks it.
///
/// ```
/// use mlflow_gateway::SsoConfig;
///
/// let sso = SsoConfig::new(
///     "https://login.example.com/realms/ml",
///     "mlflow",
///     "/run/secrets/oidc-client",
///     "https://mlflow.example.com/_gateway/callback".parse().unwrap(),
///     "/run/secrets/session.key",
/// );
/// assert_eq!(sso.redirect_origin(), "https://mlflow.example.com");
/// assert_eq!(sso.scopes, ["openid", "email", "profile"]);
/// assert_eq!(sso.session_lifetime, SsoConfig::DEFAULT_SESSION_LIFETIME);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SsoConfig {
    /// The issuer (`--oidc-issuer`): `https://`, or `http://` to a loopback host only.
    pub issuer: String,
    /// The client registered at the issuer (`--oidc-client-id`).
    pub client_id: String,
    /// The file holding the client secret (`--oidc-client-secret-file`).
    pub client_secret_file: PathBuf,
    /// The external callback URL (`--oidc-redirect-url`): absolute, path exactly
    /// [`CALLBACK_PATH`](Self::CALLBACK_PATH), no query; `http://` to a loopback host only.
    pub redirect_url: Uri,
    /// The file holding the session secret (`--session-secret-file`): one secret a line, the
    /// first seals new cookies and all open them (rotation).
    pub session_secret_file: PathBuf,
    /// The scopes asked for (`--oidc-scopes`); `openid` among them.
    pub scopes: Vec<String>,
    /// The ID-token claim that names the user (`--oidc-user-claim`).
    pub user_claim: String,
    /// The ID-token claim that lists the user's groups (`--oidc-groups-claim`).
    pub groups_claim: String,
    /// How long a session lasts after sign-in (`--session-lifetime`).
    pub session_lifetime: Duration,
    /// Users whose verified email is in one of these domains are admitted
    /// (`--allowed-email-domain`; lower case, no `@`).
    pub allowed_email_domains: Vec<String>,
    /// Users with one of these verified emails are admitted (`--allowed-email`; lower case).
    pub allowed_emails: Vec<String>,
    /// Users in one of these groups are admitted (`--allowed-group`).
    pub allowed_groups: Vec<String>,
    /// Users in this group are admins (`--admin-group`,
    /// [`Authorization::is_admin`](tower_mlflow_auth::Authorization::is_admin)).
    pub admin_group: Option<String>,
    /// Sign out at the issuer too, when it has an `end_session_endpoint`
    /// (`--oidc-end-session`).
    pub end_session: bool,
    /// Extra CAs for the issuer's certificate (from `--jwt-ca-file`).
    pub ca_file: Option<PathBuf>,
}

impl SsoConfig {
    /// Default `session_lifetime`: 8 hours, a working day.
    pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
    /// The shortest `session_lifetime`: 1 minute.
    pub const MIN_SESSION_LIFETIME: Duration = Duration::from_secs(60);
    /// The longest `session_lifetime`: 30 days.
    pub const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
    /// Default `scopes`.
    pub const DEFAULT_SCOPES: &str = "openid email profile";
    /// Default `user_claim`.
    pub const DEFAULT_USER_CLAIM: &str = "email";
    /// Default `groups_claim`.
    pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
    /// The path of the redirect URL, where the gateway receives the issuer's answer.
    pub const CALLBACK_PATH: &str = "/_gateway/callback";

    /// Sign-in at `issuer` as `client_id`, the issuer's answers at `redirect_url`, with every
    /// default: every user of the issuer admitted, no admins, 8-hour sessions.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret_file: impl Into<PathBuf>,
        redirect_url: Uri,
        session_secret_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret_file: client_secret_file.into(),
            redirect_url,
            session_secret_file: session_secret_file.into(),
            scopes: Self::DEFAULT_SCOPES.split(' ').map(str::to_owned).collect(),
            user_claim: Self::DEFAULT_USER_CLAIM.into(),
            groups_claim: Self::DEFAULT_GROUPS_CLAIM.into(),
            session_lifetime: Self::DEFAULT_SESSION_LIFETIME,
            allowed_email_domains: Vec::new(),
            allowed_emails: Vec::new(),
            allowed_groups: Vec::new(),
            admin_group: None,
            end_session: false,
            ca_file: None,
        }
    }

    /// The origin of the redirect URL, `scheme://host[:port]` in lower case without the
    /// scheme's default port: where the browser sees the gateway, so what `Origin` headers of
    /// the UI carry.
    ///
    /// ```
    /// # use mlflow_gateway::SsoConfig;
    /// let mut sso = SsoConfig::new("https://idp", "c", "/s", "https://x/".parse().unwrap(), "/k");
    /// sso.redirect_url = "https://MLflow.Example.com:443/_gateway/callback".parse().unwrap();
    /// assert_eq!(sso.redirect_origin(), "https://mlflow.example.com");
    /// sso.redirect_url = "http://127.0.0.1:8080/_gateway/callback".parse().unwrap();
    /// assert_eq!(sso.redirect_origin(), "http://127.0.0.1:8080");
    /// ```
    pub fn redirect_origin(&self) -> String {
        let uri = &self.redirect_url;
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        match uri.port_u16() {
            Some(port) if Some(port) != default_port => format!("{scheme}://{host}:{port}"),
            _ => format!("{scheme}://{host}"),
        }
    }

    /// Checks every setting, naming the flag and the value refused.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |flag, value: &str, expected| {
            Err(ConfigError::InvalidSsoValue {
                flag,
                value: value.to_owned(),
                expected,
            })
        };
        let issuer = self.issuer.parse::<Uri>();
        if issuer.as_ref().is_ok_and(has_userinfo) {
            let shown = shown_url(&self.issuer);
            return invalid(
                "--oidc-issuer",
                &shown,
                "must not hold a user name or password",
            );
        }
        if !issuer.is_ok_and(|uri| uri.host().is_some() && safe_scheme(&uri)) {
            return invalid(
                "--oidc-issuer",
                &shown_url(&self.issuer),
                "must be an https:// URL (plain http only to a loopback host: anyone on the \
                 path could substitute the keys)",
            );
        }
        if let Some(expected) = redirect_url_problem(&self.redirect_url) {
            let shown = shown_url(&self.redirect_url.to_string());
            return invalid("--oidc-redirect-url", &shown, expected);
        }
        if !self.scopes.iter().any(|scope| scope == "openid") {
            let scopes = self.scopes.join(" ");
            return invalid("--oidc-scopes", &scopes, "must include openid");
        }
        let lifetime = Self::MIN_SESSION_LIFETIME..=Self::MAX_SESSION_LIFETIME;
        if !lifetime.contains(&self.session_lifetime) {
            let secs = self.session_lifetime.as_secs().to_string();
            return invalid(
                "--session-lifetime",
                &secs,
                "must be between 60 and 2592000 seconds (30 days)",
            );
        }
        for (flag, value) in [
            ("--oidc-client-id", &self.client_id),
            ("--oidc-user-claim", &self.user_claim),
            ("--oidc-groups-claim", &self.groups_claim),
        ] {
            if value.trim().is_empty() {
                return invalid(flag, value, "must not be empty");
            }
        }
        for domain in &self.allowed_email_domains {
            let fits = !domain.is_empty()
                && !domain.contains('@')
                && domain.bytes().all(|b| b.is_ascii_graphic());
            if !fits {
                let expected = "must be a domain such as example.com, without @";
                return invalid("--allowed-email-domain", domain, expected);
            }
        }
        for email in &self.allowed_emails {
            let fits = email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@')
            }) && email.bytes().all(|b| b.is_ascii_graphic() || !b.is_ascii());
            if !fits {
                return invalid("--allowed-email", email, "must have exactly one @");
            }
        }
        let groups = self.allowed_groups.iter().map(|g| ("--allowed-group", g));
        for (flag, group) in groups.chain(self.admin_group.iter().map(|g| ("--admin-group", g))) {
            if group.is_empty() {
                return invalid(flag, group, "must not be empty");
            }
        }
        Ok(())
    }

    /// Whether the issuer is fetched over `https://`.
    pub(super) fn issuer_is_https(&self) -> bool {
        self.issuer
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    }
}

/// `url` for an error message: without the user information of a URL (`https://…@host/`), and
/// not at all when it is no URL but holds an `@` (it might be a password).
pub(crate) fn shown_url(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) if has_userinfo(&uri) => {
            let scheme = uri.scheme_str().unwrap_or_default();
            let host = uri.host().unwrap_or_default();
            let port = uri
                .port()
                .map(|port| format!(":{port}"))
                .unwrap_or_default();
            let path = uri.path_and_query().map_or("", |path| path.as_str());
            format!("{scheme}://…@{host}{port}{path}")
        }
        Ok(_) => url.to_owned(),
        Err(_) if url.contains('@') => "(not shown)".to_owned(),
        Err(_) => url.to_owned(),
    }
}

fn has_userinfo(uri: &Uri) -> bool {
    uri.authority()
        .is_some_and(|authority| authority.as_str().contains('@'))
}

/// `https://`, or `http://` to a loopback host.
fn safe_scheme(uri: &Uri) -> bool {
    tower_mlflow_core::http::scheme_is_safe(uri, false)
}

/// What is wrong with a redirect URL, as the end of a sentence, or `None`.
fn redirect_url_problem(url: &Uri) -> Option<&'static str> {
    if url.scheme().is_none() || url.authority().is_none() {
        return Some(
            "must be an absolute URL such as https://mlflow.example.com/_gateway/callback",
        );
    }
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Some("must be an http(s) URL");
    }
    if has_userinfo(url) {
        return Some("must not hold a user name or password");
    }
    if url.query().is_some() {
        return Some("must not have a query");
    }
    if url.path() != SsoConfig::CALLBACK_PATH {
        return Some("must have the path /_gateway/callback");
    }
    if !safe_scheme(url) {
        return Some("must be https:// (plain http only to a loopback host)");
    }
    None
}

/// The settings in the `--config` file's format, one a line; file names, never a secret.
impl fmt::Display for SsoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = vec![
            toml_text("oidc-issuer", &self.issuer),
            toml_text("oidc-client-id", &self.client_id),
            toml_text(
                "oidc-client-secret-file",
                &self.client_secret_file.display(),
            ),
            toml_text("oidc-redirect-url", &self.redirect_url),
            toml_text("session-secret-file", &self.session_secret_file.display()),
            toml_text("oidc-scopes", &self.scopes.join(" ")),
            toml_text("oidc-user-claim", &self.user_claim),
            toml_text("oidc-groups-claim", &self.groups_claim),
            format!("session-lifetime = {}", self.session_lifetime.as_secs()),
            format!(
                "allowed-email-domain = {}",
                toml_list(&self.allowed_email_domains)
            ),
            format!("allowed-email = {}", toml_list(&self.allowed_emails)),
            format!("allowed-group = {}", toml_list(&self.allowed_groups)),
        ];
        if let Some(group) = &self.admin_group {
            lines.push(toml_text("admin-group", group));
        }
        lines.push(format!("oidc-end-session = {}", self.end_session));
        f.write_str(&lines.join("\n"))
    }
}
