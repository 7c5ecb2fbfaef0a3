//! The browser sign-in options (`--oidc-*`, `--session-*`, `--allowed-*`, `--admin-group`)
//! and their [`SsoConfig`].

use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::config::{ConfigError, SsoConfig, shown_url};

/// The browser sign-in options of [`Flags`](super::Flags), in its `--help` between
/// `--jwt-ca-file` and `--realm`.
// `group(skip)`: no argument group of its own, so clap's checks stay as they were.
#[derive(Debug, Args)]
#[group(skip)]
// The field docs are the `--help` text, read in a terminal: URLs and <placeholders> in them
// are meant literally, not as links or HTML.
#[allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]
#[non_exhaustive]
pub struct SsoFlags {
    /// Sign people in to the MLflow UI with this OpenID Connect issuer (keys and endpoints
    /// from its discovery document): an https URL, or plain http to a loopback host only.
    /// Needs --oidc-client-id, --oidc-client-secret-file, --oidc-redirect-url and
    /// --session-secret-file. Page loads without credentials go to the issuer's login;
    /// Authorization headers (Basic, Bearer) keep working for API clients.
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,

    /// The client ID registered at the --oidc-issuer for the gateway.
    #[arg(long, value_name = "ID")]
    pub oidc_client_id: Option<String>,

    /// File holding the client secret of --oidc-client-id (surrounding whitespace ignored;
    /// read at start). The gateway authenticates to the token endpoint with
    /// client_secret_basic.
    #[arg(long, value_name = "FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// The full external URL of the callback, as registered at the issuer, such as
    /// https://mlflow.example.com/_gateway/callback: the path exactly /_gateway/callback, no
    /// query; plain http only to a loopback host. Never derived from the Host header; its
    /// origin is also an allowed origin (--public-url).
    #[arg(long, value_name = "URL")]
    pub oidc_redirect_url: Option<String>,

    /// File of the secret that encrypts the session cookies: at least 32 random bytes, such
    /// as the output of `openssl rand -base64 48`. Several lines rotate keys: the first
    /// seals new cookies, every line opens them. Replicas share the file.
    #[arg(long, value_name = "FILE")]
    pub session_secret_file: Option<PathBuf>,

    /// The scopes asked of the --oidc-issuer, separated by spaces; must include openid
    /// (offline_access asks for a refresh token).
    #[arg(long, value_name = "SCOPES", default_value = SsoConfig::DEFAULT_SCOPES)]
    pub oidc_scopes: String,

    /// The ID-token claim that names the user (sent upstream in --user-header). With
    /// `email` the address must be verified (email_verified).
    #[arg(long, value_name = "CLAIM", default_value = SsoConfig::DEFAULT_USER_CLAIM)]
    pub oidc_user_claim: String,

    /// The ID-token claim that lists the user's groups (for --allowed-group, --admin-group
    /// and X-Forwarded-Groups).
    #[arg(long, value_name = "CLAIM", default_value = SsoConfig::DEFAULT_GROUPS_CLAIM)]
    pub oidc_groups_claim: String,

    /// Seconds a browser session lasts after sign-in (60 to 2592000). With a refresh token
    /// (scope offline_access) the session is refreshed, and the allow-lists applied again,
    /// when the ID token expires.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = SsoConfig::DEFAULT_SESSION_LIFETIME.as_secs()
    )]
    pub session_lifetime: u64,

    /// Admit users whose verified email is in this domain, such as example.com (repeatable
    /// or comma-separated). With no --allowed-* option, every user of the issuer is admitted;
    /// with several, any match admits.
    #[arg(long, value_name = "DOMAIN")]
    pub allowed_email_domain: Vec<String>,

    /// Admit the user with this verified email (repeatable or comma-separated; compared
    /// case-insensitively).
    #[arg(long, value_name = "EMAIL")]
    pub allowed_email: Vec<String>,

    /// Admit users whose --oidc-groups-claim holds this group (repeatable or
    /// comma-separated).
    #[arg(long, value_name = "GROUP")]
    pub allowed_group: Vec<String>,

    /// Browser-session users whose --oidc-groups-claim holds this group are gateway admins
    /// (`admin` in /_gateway/userinfo; default: none). Unlike --mlflow-admin-group, which
    /// sets MLflow's own is_admin for JWT users under delegation.
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Option<String>,

    /// On sign-out (POST /_gateway/logout) also end the session at the issuer, when its
    /// discovery document has an end_session_endpoint (default: only the gateway's cookie
    /// is removed).
    #[arg(long)]
    pub oidc_end_session: bool,
}

impl SsoFlags {
    /// Browser sign-in, when `--oidc-issuer` is given: its four companions must be too, and
    /// the options that only make sense with it need it. `ca_file` is `--jwt-ca-file`, which
    /// serves both issuers.
    pub(super) fn into_config(
        mut self,
        ca_file: Option<PathBuf>,
    ) -> Result<Option<SsoConfig>, ConfigError> {
        let half = |given, missing| Err(ConfigError::Incomplete { given, missing });
        let required = [
            ("--oidc-issuer", self.oidc_issuer.is_some()),
            ("--oidc-client-id", self.oidc_client_id.is_some()),
            (
                "--oidc-client-secret-file",
                self.oidc_client_secret_file.is_some(),
            ),
            ("--oidc-redirect-url", self.oidc_redirect_url.is_some()),
            ("--session-secret-file", self.session_secret_file.is_some()),
        ];
        let first = |present: bool| required.iter().find(|(_, given)| *given == present);
        let (issuer, client_id, client_secret_file, redirect_url, session_secret_file) =
            match (first(true), first(false)) {
                (Some((given, _)), Some((missing, _))) => return half(given, missing),
                (None, _) => {
                    let needs_issuer = [
                        (
                            "--allowed-email-domain",
                            !self.allowed_email_domain.is_empty(),
                        ),
                        ("--allowed-email", !self.allowed_email.is_empty()),
                        ("--allowed-group", !self.allowed_group.is_empty()),
                        ("--admin-group", self.admin_group.is_some()),
                        ("--oidc-end-session", self.oidc_end_session),
                    ];
                    return match needs_issuer.into_iter().find(|(_, given)| *given) {
                        Some((given, _)) => half(given, "--oidc-issuer"),
                        None => Ok(None),
                    };
                }
                (Some(_), None) => (
                    self.oidc_issuer.take().unwrap_or_default(),
                    self.oidc_client_id.take().unwrap_or_default(),
                    self.oidc_client_secret_file.take().unwrap_or_default(),
                    self.oidc_redirect_url.take().unwrap_or_default(),
                    self.session_secret_file.take().unwrap_or_default(),
                ),
            };
        let invalid_url = |expected| ConfigError::InvalidSsoValue {
            flag: "--oidc-redirect-url",
            value: shown_url(&redirect_url),
            expected,
        };
        // http::Uri drops a fragment silently; the issuer would not.
        if redirect_url.contains('#') {
            return Err(invalid_url("must not have a fragment"));
        }
        let redirect_uri = redirect_url
            .parse()
            .map_err(|_| invalid_url("is not a URL"))?;
        let lower = |list: &mut Vec<String>| list.drain(..).map(|s| s.to_lowercase()).collect();
        Ok(Some(SsoConfig {
            scopes: self
                .oidc_scopes
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            user_claim: std::mem::take(&mut self.oidc_user_claim),
            groups_claim: std::mem::take(&mut self.oidc_groups_claim),
            session_lifetime: Duration::from_secs(self.session_lifetime),
            allowed_email_domains: lower(&mut self.allowed_email_domain),
            allowed_emails: lower(&mut self.allowed_email),
            allowed_groups: std::mem::take(&mut self.allowed_group),
            admin_group: self.admin_group.take(),
            end_session: self.oidc_end_session,
            ca_file,
            ..SsoConfig::new(
                issuer,
                client_id,
                client_secret_file,
                redirect_uri,
                session_secret_file,
            )
        }))
    }
}
