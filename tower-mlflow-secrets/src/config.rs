//! [`Config::from_env`]: the configuration of mlflow-secrets-auth, read from the same
//! environment variables, turned into a [`SecretHeaderLayer`].
//!
//! Provider selection is as in the Python plugin: `MLFLOW_SECRETS_AUTH_ENABLE` (a comma
//! list of `vault`, `aws-secrets-manager`, `azure-key-vault`) or the per-provider booleans
//! `MLFLOW_SECRETS_AUTH_ENABLE_VAULT` / `_AWS_SECRETS_MANAGER` / `_AZURE_KEY_VAULT`
//! (`1`, `true`, `yes`, `on`); the first enabled provider in the order vault > aws > azure
//! is used. With `MLFLOW_SECRETS_FALLBACK=true` (an addition) a failed fetch falls through to
//! the next enabled provider.
//!
//! | Variable | Default | Notes |
//! |---|---|---|
//! | `MLFLOW_SECRETS_ALLOWED_HOSTS` | origin of `MLFLOW_TRACKING_URI` | comma list, [`HostAllowlist`] patterns; **unlike the plugin, unset does not mean "all hosts"** |
//! | `MLFLOW_AUTH_HEADER_NAME` | `Authorization` | any case of `authorization` is `Authorization` |
//! | `MLFLOW_{VAULT,AWS,AZURE}_AUTH_MODE` | `bearer` | `bearer` or `basic`; anything else is an error |
//! | `MLFLOW_{VAULT,AWS,AZURE}_TTL_SEC` | 300 | ≤ 0 → 300, clamped to 1..=86400; not a number is an error |
//! | `VAULT_ADDR`, `MLFLOW_VAULT_SECRET_PATH` | required | a path without `/` means `secret/<path>` |
//! | `VAULT_TOKEN` or `VAULT_ROLE_ID` + `VAULT_SECRET_ID` | required | the token wins |
//! | `MLFLOW_AWS_SECRET_ID` | required | `AWS_REGION`, then `AWS_DEFAULT_REGION`, then the SDK chain |
//! | `AZURE_KEY_VAULT_URL`, `MLFLOW_AZURE_SECRET_NAME` | required | the URL must be https |
//!
//! Additions (not read by the plugin): `MLFLOW_SECRETS_FORMAT` (`json` (default), `token`,
//! `userpass`), `MLFLOW_SECRETS_ON_DISALLOWED_HOST` (`strip` (default): the request goes out
//! without the secret; `fail`: it fails), `MLFLOW_SECRETS_ALLOW_PLAIN_HTTP`,
//! `MLFLOW_SECRETS_FALLBACK`, `VAULT_NAMESPACE`, `VAULT_CACERT`, `VAULT_CLIENT_CERT`,
//! `VAULT_CLIENT_KEY`, `MLFLOW_VAULT_APPROLE_MOUNT` (`approle`), `MLFLOW_VAULT_KV_MOUNT`,
//! `MLFLOW_VAULT_KV_VERSION` (`1`/`2`), `MLFLOW_VAULT_SECRET_VERSION`,
//! `MLFLOW_VAULT_SECRET_FIELD`, `MLFLOW_AWS_VERSION_STAGE`, `MLFLOW_AWS_VERSION_ID`,
//! `MLFLOW_AZURE_SECRET_VERSION`. When the secret is unavailable the layer always fails
//! closed (the plugin sent the request without credentials).
//!
//! Errors name the variable that is missing or invalid, never its value.
//!
//! ```
//! use std::collections::HashMap;
//! use tower_mlflow_secrets::config::{Config, Provider};
//!
//! let env: HashMap<&str, &str> = [
//!     ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
//!     ("VAULT_ADDR", "https://vault.example.com:8200"),
//!     ("VAULT_TOKEN", "hvs.example"),
//!     ("MLFLOW_VAULT_SECRET_PATH", "kv/mlflow"),
//!     ("MLFLOW_SECRETS_ALLOWED_HOSTS", "mlflow.example.com"),
//! ]
//! .into();
//! let config = Config::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
//! assert!(matches!(config.providers()[0], Provider::Vault(_)));
//! ```

use std::{fmt, path::PathBuf, time::Duration};

use http::{HeaderName, Uri, header::AUTHORIZATION};
use secrecy::SecretString;

use crate::{
    HostAllowlist,
    format::{HeaderMode, HeaderTemplate, SecretFormat},
    header::DisallowedHost,
};

/// A configuration error. It names the variable, never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No provider is enabled.
    NoProviderEnabled,
    /// A required variable is not set (or empty).
    Missing(&'static str),
    /// A variable has a value that cannot be used; the reason is given.
    Invalid {
        /// The variable.
        variable: &'static str,
        /// Why (never the value).
        reason: &'static str,
    },
    /// The provider needs a cargo feature that is not enabled.
    FeatureDisabled(&'static str),
    /// The provider could not be built (a message without secrets).
    Provider(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoProviderEnabled => f.write_str(
                "no secret provider enabled: set MLFLOW_SECRETS_AUTH_ENABLE (vault, aws-secrets-manager, azure-key-vault)",
            ),
            Self::Missing(var) => write!(f, "{var} is not set"),
            Self::Invalid { variable, reason } => write!(f, "{variable} is invalid: {reason}"),
            Self::FeatureDisabled(feature) => write!(
                f,
                "this build has no `{feature}` support (enable the cargo feature `{feature}`)"
            ),
            Self::Provider(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Vault settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VaultConfig {
    /// `VAULT_ADDR`.
    pub address: String,
    /// `VAULT_TOKEN`, or AppRole from `VAULT_ROLE_ID` / `VAULT_SECRET_ID`.
    pub auth: VaultAuthConfig,
    /// `MLFLOW_VAULT_SECRET_PATH` (a path without `/` becomes `secret/<path>`).
    pub path: String,
    /// `MLFLOW_VAULT_KV_MOUNT`.
    pub mount: Option<String>,
    /// `MLFLOW_VAULT_KV_VERSION`: 1 or 2.
    pub kv_version: Option<u8>,
    /// `MLFLOW_VAULT_SECRET_VERSION`.
    pub version: Option<u64>,
    /// `MLFLOW_VAULT_SECRET_FIELD`.
    pub field: Option<String>,
    /// `VAULT_NAMESPACE`.
    pub namespace: Option<String>,
    /// `VAULT_CACERT`.
    pub ca_cert: Option<PathBuf>,
    /// `VAULT_CLIENT_CERT` and `VAULT_CLIENT_KEY`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// How to log in to Vault.
#[derive(Clone)]
#[non_exhaustive]
pub enum VaultAuthConfig {
    /// `VAULT_TOKEN`.
    Token(SecretString),
    /// `VAULT_ROLE_ID`, `VAULT_SECRET_ID`, `MLFLOW_VAULT_APPROLE_MOUNT`.
    AppRole {
        /// The auth mount.
        mount: String,
        /// The role ID.
        role_id: String,
        /// The secret ID.
        secret_id: SecretString,
    },
}

impl fmt::Debug for VaultAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token([REDACTED])"),
            Self::AppRole { mount, .. } => write!(f, "AppRole {{ mount: {mount:?}, .. }}"),
        }
    }
}

/// AWS Secrets Manager settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AwsConfig {
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`; `None` leaves it to the SDK chain.
    pub region: Option<String>,
    /// `MLFLOW_AWS_SECRET_ID`.
    pub secret_id: String,
    /// `MLFLOW_AWS_VERSION_STAGE`.
    pub version_stage: Option<String>,
    /// `MLFLOW_AWS_VERSION_ID`.
    pub version_id: Option<String>,
}

/// Azure Key Vault settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AzureConfig {
    /// `AZURE_KEY_VAULT_URL` (https).
    pub vault_url: String,
    /// `MLFLOW_AZURE_SECRET_NAME`.
    pub secret_name: String,
    /// `MLFLOW_AZURE_SECRET_VERSION`.
    pub version: Option<String>,
}

/// One enabled provider.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Provider {
    /// HashiCorp Vault.
    Vault(VaultConfig),
    /// AWS Secrets Manager.
    Aws(AwsConfig),
    /// Azure Key Vault.
    Azure(AzureConfig),
}

impl Provider {
    /// The plugin's slug for the provider.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Vault(_) => "vault",
            Self::Aws(_) => "aws-secrets-manager",
            Self::Azure(_) => "azure-key-vault",
        }
    }
}

/// The resolved configuration; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Config {
    providers: Vec<Provider>,
    ttl: Duration,
    template: HeaderTemplate,
    allowlist: HostAllowlist,
    allowed_hosts: String,
    disallowed: DisallowedHost,
    fallback: bool,
}

const DEFAULT_TTL: u64 = 300;

fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

struct Env<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// A trimmed, non-empty value.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn require(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if is_truthy(&v) => Ok(true),
            Some(v)
                if matches!(
                    v.to_ascii_lowercase().as_str(),
                    "0" | "false" | "no" | "off"
                ) =>
            {
                Ok(false)
            }
            Some(_) => Err(ConfigError::Invalid {
                variable: name,
                reason: "expected 1/true/yes/on or 0/false/no/off",
            }),
        }
    }

    /// The plugin's TTL rule: ≤ 0 → 300, clamped to 1..=86400.
    fn ttl(&self, name: &'static str) -> Result<Duration, ConfigError> {
        let secs = match self.get(name) {
            None => DEFAULT_TTL,
            Some(v) => {
                let n: i64 = v.parse().map_err(|_| ConfigError::Invalid {
                    variable: name,
                    reason: "not a whole number of seconds",
                })?;
                if n <= 0 {
                    DEFAULT_TTL
                } else {
                    n.unsigned_abs().clamp(1, 86_400)
                }
            }
        };
        Ok(Duration::from_secs(secs))
    }

    fn mode(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("bearer") => Ok(false),
            Some("basic") => Ok(true),
            Some(_) => Err(ConfigError::Invalid {
                variable: name,
                reason: "expected `bearer` or `basic`",
            }),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (for tests, or another source of settings).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup };
        let mut enabled = [false; 3];
        const SLUGS: [&str; 3] = ["vault", "aws-secrets-manager", "azure-key-vault"];
        if let Some(list) = env.get("MLFLOW_SECRETS_AUTH_ENABLE") {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let item = item.to_ascii_lowercase();
                let index = SLUGS.iter().position(|s| *s == item).ok_or(ConfigError::Invalid {
                    variable: "MLFLOW_SECRETS_AUTH_ENABLE",
                    reason: "unknown provider (expected vault, aws-secrets-manager, azure-key-vault)",
                })?;
                enabled[index] = true;
            }
        }
        for (index, var) in [
            "MLFLOW_SECRETS_AUTH_ENABLE_VAULT",
            "MLFLOW_SECRETS_AUTH_ENABLE_AWS_SECRETS_MANAGER",
            "MLFLOW_SECRETS_AUTH_ENABLE_AZURE_KEY_VAULT",
        ]
        .into_iter()
        .enumerate()
        {
            enabled[index] |= env.flag(var)?;
        }
        let fallback = env.flag("MLFLOW_SECRETS_FALLBACK")?;

        let mut providers = Vec::new();
        let mut first = None;
        if enabled[0] {
            providers.push(Provider::Vault(vault_config(&env)?));
            first.get_or_insert((
                env.ttl("MLFLOW_VAULT_TTL_SEC")?,
                env.mode("MLFLOW_VAULT_AUTH_MODE")?,
                "MLFLOW_VAULT_AUTH_MODE",
            ));
        }
        if enabled[1] {
            let region = env
                .get("AWS_REGION")
                .or_else(|| env.get("AWS_DEFAULT_REGION"));
            providers.push(Provider::Aws(AwsConfig {
                region,
                secret_id: env.require("MLFLOW_AWS_SECRET_ID")?,
                version_stage: env.get("MLFLOW_AWS_VERSION_STAGE"),
                version_id: env.get("MLFLOW_AWS_VERSION_ID"),
            }));
            first.get_or_insert((
                env.ttl("MLFLOW_AWS_TTL_SEC")?,
                env.mode("MLFLOW_AWS_AUTH_MODE")?,
                "MLFLOW_AWS_AUTH_MODE",
            ));
        }
        if enabled[2] {
            let vault_url = env.require("AZURE_KEY_VAULT_URL")?;
            if !vault_url.starts_with("https://") {
                return Err(ConfigError::Invalid {
                    variable: "AZURE_KEY_VAULT_URL",
                    reason: "must start with https://",
                });
            }
            providers.push(Provider::Azure(AzureConfig {
                vault_url,
                secret_name: env.require("MLFLOW_AZURE_SECRET_NAME")?,
                version: env.get("MLFLOW_AZURE_SECRET_VERSION"),
            }));
            first.get_or_insert((
                env.ttl("MLFLOW_AZURE_TTL_SEC")?,
                env.mode("MLFLOW_AZURE_AUTH_MODE")?,
                "MLFLOW_AZURE_AUTH_MODE",
            ));
        }
        let Some((ttl, basic, mode_var)) = first else {
            return Err(ConfigError::NoProviderEnabled);
        };
        if !fallback {
            // As the plugin: only the first enabled provider is used.
            providers.truncate(1);
        }

        let header = match env.get("MLFLOW_AUTH_HEADER_NAME") {
            None => AUTHORIZATION,
            Some(name) if name.eq_ignore_ascii_case("authorization") => AUTHORIZATION,
            Some(name) => HeaderName::try_from(name).map_err(|_| ConfigError::Invalid {
                variable: "MLFLOW_AUTH_HEADER_NAME",
                reason: "not a valid HTTP header name",
            })?,
        };
        let format = match env
            .get("MLFLOW_SECRETS_FORMAT")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("json") => SecretFormat::json(),
            Some("token") => SecretFormat::Token,
            Some("userpass") => SecretFormat::UserPass,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    variable: "MLFLOW_SECRETS_FORMAT",
                    reason: "expected json, token or userpass",
                });
            }
        };
        // As the plugin: bearer on `Authorization`, the raw token on a custom header,
        // Basic on any header.
        let mode = match (basic, header == AUTHORIZATION) {
            (true, _) => HeaderMode::Basic,
            (false, true) => HeaderMode::Bearer,
            (false, false) => HeaderMode::Raw,
        };
        let template = HeaderTemplate::new(header, mode, format).map_err(|_| {
            ConfigError::Invalid {
                variable: if basic { mode_var } else { "MLFLOW_SECRETS_FORMAT" },
                reason: "the auth mode does not fit the secret format (basic needs userpass or json, bearer needs token or json)",
            }
        })?;

        let (allowed_hosts, hosts_var) = match env.get("MLFLOW_SECRETS_ALLOWED_HOSTS") {
            Some(list) => (list, "MLFLOW_SECRETS_ALLOWED_HOSTS"),
            None => {
                let uri: Uri = env
                    .get("MLFLOW_TRACKING_URI")
                    .ok_or(ConfigError::Missing("MLFLOW_SECRETS_ALLOWED_HOSTS"))?
                    .parse()
                    .map_err(|_| ConfigError::Invalid {
                        variable: "MLFLOW_TRACKING_URI",
                        reason: "not a URL",
                    })?;
                let authority = uri.authority().ok_or(ConfigError::Invalid {
                    variable: "MLFLOW_TRACKING_URI",
                    reason: "has no host (a local file store needs no secret)",
                })?;
                let scheme = uri.scheme_str().unwrap_or("https");
                (
                    format!(
                        "{scheme}://{}",
                        authority.as_str().rsplit('@').next().unwrap_or("")
                    ),
                    "MLFLOW_TRACKING_URI",
                )
            }
        };
        let allowlist = HostAllowlist::builder()
            .hosts_from_list(&allowed_hosts)
            .allow_plain_http(env.flag("MLFLOW_SECRETS_ALLOW_PLAIN_HTTP")?)
            .build()
            .map_err(|_| ConfigError::Invalid {
                variable: hosts_var,
                reason: "a host pattern is invalid or plain http to a non-loopback host",
            })?;
        let disallowed = match env
            .get("MLFLOW_SECRETS_ON_DISALLOWED_HOST")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("strip") => DisallowedHost::SendWithoutSecret,
            Some("fail") => DisallowedHost::Fail,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    variable: "MLFLOW_SECRETS_ON_DISALLOWED_HOST",
                    reason: "expected strip or fail",
                });
            }
        };
        Ok(Self {
            providers,
            ttl,
            template,
            allowlist,
            allowed_hosts,
            disallowed,
            fallback,
        })
    }

    /// The providers in use, in order (one unless fallback is on).
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The cache TTL (of the first enabled provider).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The header name, mode and secret format.
    pub fn template(&self) -> &HeaderTemplate {
        &self.template
    }

    /// The allowlist.
    pub fn allowlist(&self) -> &HostAllowlist {
        &self.allowlist
    }

    /// The allowlist as written (`MLFLOW_SECRETS_ALLOWED_HOSTS` or the tracking URI origin).
    pub fn allowed_hosts(&self) -> &str {
        &self.allowed_hosts
    }

    /// What happens to requests to other hosts.
    pub fn on_disallowed_host(&self) -> DisallowedHost {
        self.disallowed
    }

    /// Whether a failed fetch falls through to the next provider.
    pub fn fallback(&self) -> bool {
        self.fallback
    }
}

/// The source built from a [`Config`]: the enabled providers, tried in order when fallback
/// is on (a failure of the last one is returned; it is transient if any failure was).
pub struct ConfiguredSource {
    sources: Vec<ProviderSource>,
}

enum ProviderSource {
    #[cfg(feature = "vault")]
    Vault(crate::source::vault::Vault),
    #[cfg(feature = "aws")]
    Aws(crate::source::aws::AwsSecretsManager),
    #[cfg(feature = "azure")]
    Azure(crate::source::azure::AzureKeyVault),
}

impl fmt::Debug for ConfiguredSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfiguredSource")
            .field("providers", &self.sources.len())
            .finish()
    }
}

impl ProviderSource {
    async fn fetch(&self) -> Result<crate::source::Fetched, crate::source::SourceError> {
        // `*self`: with no provider feature the enum is empty and the match has no arms.
        match *self {
            #[cfg(feature = "vault")]
            Self::Vault(ref s) => crate::source::SecretSource::fetch(s).await,
            #[cfg(feature = "aws")]
            Self::Aws(ref s) => crate::source::SecretSource::fetch(s).await,
            #[cfg(feature = "azure")]
            Self::Azure(ref s) => crate::source::SecretSource::fetch(s).await,
        }
    }
}

impl crate::source::SecretSource for ConfiguredSource {
    #[allow(clippy::manual_async_fn)] // the trait spells out `+ Send`
    fn fetch(
        &self,
    ) -> impl Future<Output = Result<crate::source::Fetched, crate::source::SourceError>> + Send
    {
        async move {
            let mut transient = false;
            let mut last = None;
            for source in &self.sources {
                match source.fetch().await {
                    Ok(fetched) => return Ok(fetched),
                    Err(e) => {
                        tracing::warn!(target: "tower_mlflow_secrets", error = %e, "secret provider failed");
                        transient |= e.is_transient();
                        last = Some(e);
                    }
                }
            }
            Err(match last {
                Some(e) if transient && !e.is_transient() => {
                    crate::source::SourceError::transient("every secret provider failed")
                        .with_source(e)
                }
                Some(e) => e,
                None => crate::source::SourceError::permanent("no secret provider configured"),
            })
        }
    }
}

impl Config {
    /// Builds the source(s). For AWS this loads the SDK configuration (credential chain,
    /// region); nothing is fetched yet.
    pub async fn source(&self) -> Result<ConfiguredSource, ConfigError> {
        let mut sources = Vec::new();
        for provider in &self.providers {
            sources.push(build_provider(provider).await?);
        }
        Ok(ConfiguredSource { sources })
    }

    /// Builds the source, a [`CachedSecret`](crate::CachedSecret) with the configured TTL,
    /// and the [`SecretHeaderLayer`](crate::SecretHeaderLayer).
    pub async fn layer(&self) -> Result<crate::SecretHeaderLayer, ConfigError> {
        let secret = crate::CachedSecret::builder(self.source().await?)
            .ttl(self.ttl)
            .build();
        crate::SecretHeaderLayer::builder(secret)
            .template(self.template.clone())
            .allowlist(self.allowlist.clone())
            .on_disallowed_host(self.disallowed)
            .build()
            .map_err(|e| ConfigError::Provider(e.to_string()))
    }
}

#[allow(clippy::unused_async)] // async only with the `aws` feature
async fn build_provider(provider: &Provider) -> Result<ProviderSource, ConfigError> {
    match provider {
        #[cfg(feature = "vault")]
        Provider::Vault(v) => {
            use crate::source::vault::{KvVersion, Vault, VaultAuth};
            let auth = match &v.auth {
                VaultAuthConfig::Token(t) => VaultAuth::Token(t.clone()),
                VaultAuthConfig::AppRole {
                    mount,
                    role_id,
                    secret_id,
                } => VaultAuth::AppRole {
                    mount: mount.clone(),
                    role_id: role_id.clone(),
                    secret_id: secret_id.clone(),
                },
            };
            let mut b = Vault::builder(&v.address).auth(auth).path(&v.path);
            if let Some(m) = &v.mount {
                b = b.mount(m);
            }
            match v.kv_version {
                Some(1) => b = b.kv_version(KvVersion::V1),
                Some(_) => b = b.kv_version(KvVersion::V2),
                None => {}
            }
            if let Some(n) = v.version {
                b = b.version(n);
            }
            if let Some(f) = &v.field {
                b = b.field(f);
            }
            if let Some(ns) = &v.namespace {
                b = b.namespace(ns);
            }
            if let Some(ca) = &v.ca_cert {
                b = b.ca_pem_file(ca);
            }
            if let Some((cert, key)) = &v.client_cert {
                b = b.client_cert_files(cert, key);
            }
            b.build().map(ProviderSource::Vault).map_err(|e| {
                ConfigError::Provider(format!("vault (VAULT_ADDR, VAULT_CACERT, ...): {e}"))
            })
        }
        #[cfg(not(feature = "vault"))]
        Provider::Vault(_) => Err(ConfigError::FeatureDisabled("vault")),
        #[cfg(feature = "aws")]
        Provider::Aws(a) => {
            let mut b = crate::source::aws::AwsSecretsManager::builder(&a.secret_id);
            if let Some(r) = &a.region {
                b = b.region(r);
            }
            if let Some(s) = &a.version_stage {
                b = b.version_stage(s);
            }
            if let Some(id) = &a.version_id {
                b = b.version_id(id);
            }
            b.build()
                .await
                .map(ProviderSource::Aws)
                .map_err(|e| match e {
                    crate::source::aws::AwsBuildError::NoRegion => {
                        ConfigError::Missing("AWS_REGION")
                    }
                    other => ConfigError::Provider(format!("aws: {other}")),
                })
        }
        #[cfg(not(feature = "aws"))]
        Provider::Aws(_) => Err(ConfigError::FeatureDisabled("aws")),
        #[cfg(feature = "azure")]
        Provider::Azure(z) => {
            let mut b = crate::source::azure::AzureKeyVault::builder(&z.vault_url, &z.secret_name);
            if let Some(v) = &z.version {
                b = b.version(v);
            }
            b.build().map(ProviderSource::Azure).map_err(|e| {
                ConfigError::Provider(format!(
                    "azure (AZURE_KEY_VAULT_URL, MLFLOW_AZURE_SECRET_NAME): {e}"
                ))
            })
        }
        #[cfg(not(feature = "azure"))]
        Provider::Azure(_) => Err(ConfigError::FeatureDisabled("azure")),
    }
}

fn vault_config<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<VaultConfig, ConfigError> {
    let address = env.require("VAULT_ADDR")?;
    let auth = match env.get("VAULT_TOKEN") {
        Some(token) => VaultAuthConfig::Token(SecretString::from(token)),
        None => match (env.get("VAULT_ROLE_ID"), env.get("VAULT_SECRET_ID")) {
            (Some(role_id), Some(secret_id)) => VaultAuthConfig::AppRole {
                mount: env
                    .get("MLFLOW_VAULT_APPROLE_MOUNT")
                    .unwrap_or_else(|| "approle".to_owned()),
                role_id,
                secret_id: SecretString::from(secret_id),
            },
            (Some(_), None) => return Err(ConfigError::Missing("VAULT_SECRET_ID")),
            _ => return Err(ConfigError::Missing("VAULT_TOKEN")),
        },
    };
    let mut path = env
        .require("MLFLOW_VAULT_SECRET_PATH")?
        .trim_matches('/')
        .to_owned();
    let mount = env.get("MLFLOW_VAULT_KV_MOUNT");
    if mount.is_none() && !path.contains('/') {
        // The plugin reads a bare name from the `secret` mount.
        path.insert_str(0, "secret/");
    }
    let kv_version = match env.get("MLFLOW_VAULT_KV_VERSION").as_deref() {
        None => None,
        Some("1") => Some(1),
        Some("2") => Some(2),
        Some(_) => {
            return Err(ConfigError::Invalid {
                variable: "MLFLOW_VAULT_KV_VERSION",
                reason: "expected 1 or 2",
            });
        }
    };
    let version = env
        .get("MLFLOW_VAULT_SECRET_VERSION")
        .map(|v| v.parse::<u64>())
        .transpose()
        .map_err(|_| ConfigError::Invalid {
            variable: "MLFLOW_VAULT_SECRET_VERSION",
            reason: "not a positive whole number",
        })?;
    if version.is_some() && kv_version == Some(1) {
        return Err(ConfigError::Invalid {
            variable: "MLFLOW_VAULT_SECRET_VERSION",
            reason: "KV v1 has no versions",
        });
    }
    let client_cert = match (env.get("VAULT_CLIENT_CERT"), env.get("VAULT_CLIENT_KEY")) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (Some(_), None) => return Err(ConfigError::Missing("VAULT_CLIENT_KEY")),
        (None, Some(_)) => return Err(ConfigError::Missing("VAULT_CLIENT_CERT")),
        (None, None) => None,
    };
    Ok(VaultConfig {
        address,
        auth,
        path,
        mount,
        kv_version,
        version,
        field: env.get("MLFLOW_VAULT_SECRET_FIELD"),
        namespace: env.get("VAULT_NAMESPACE"),
        ca_cert: env.get("VAULT_CACERT").map(PathBuf::from),
        client_cert,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const HOSTS: (&str, &str) = ("MLFLOW_SECRETS_ALLOWED_HOSTS", "mlflow.example.com");
    const VAULT: [(&str, &str); 3] = [
        ("VAULT_ADDR", "https://vault.example.com"),
        ("VAULT_TOKEN", "hvs.secret-token"),
        ("MLFLOW_VAULT_SECRET_PATH", "kv/mlflow"),
    ];
    const AWS: (&str, &str) = ("MLFLOW_AWS_SECRET_ID", "mlflow/prod");

    #[test]
    fn nothing_enabled_is_an_error() {
        assert_eq!(config(&[HOSTS]).err(), Some(ConfigError::NoProviderEnabled));
    }

    #[test]
    fn vault_wins_over_aws_without_fallback() {
        let mut vars = vec![
            HOSTS,
            AWS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "AWS-Secrets-Manager, vault"),
        ];
        vars.extend(VAULT);
        let c = config(&vars).unwrap();
        assert_eq!(c.providers().len(), 1);
        assert_eq!(c.providers()[0].slug(), "vault");
        assert!(!c.fallback());
    }

    #[test]
    fn fallback_keeps_every_enabled_provider_in_order() {
        let mut vars = vec![
            HOSTS,
            AWS,
            ("MLFLOW_SECRETS_AUTH_ENABLE_AWS_SECRETS_MANAGER", "yes"),
            ("MLFLOW_SECRETS_AUTH_ENABLE_VAULT", "On"),
            ("MLFLOW_SECRETS_FALLBACK", "true"),
        ];
        vars.extend(VAULT);
        let c = config(&vars).unwrap();
        let slugs: Vec<_> = c.providers().iter().map(Provider::slug).collect();
        assert_eq!(slugs, ["vault", "aws-secrets-manager"]);
    }

    #[test]
    fn unknown_slug_names_the_variable() {
        let err = config(&[HOSTS, ("MLFLOW_SECRETS_AUTH_ENABLE", "gcp")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("MLFLOW_SECRETS_AUTH_ENABLE is invalid"),
            "{err}"
        );
    }

    #[test]
    fn missing_vault_addr_is_named() {
        let err = config(&[HOSTS, ("MLFLOW_SECRETS_AUTH_ENABLE", "vault")]).unwrap_err();
        assert_eq!(err, ConfigError::Missing("VAULT_ADDR"));
    }

    #[test]
    fn token_wins_over_approle_and_approle_mount_defaults() {
        let mut vars = vec![HOSTS, ("MLFLOW_SECRETS_AUTH_ENABLE", "vault")];
        vars.extend(VAULT);
        vars.push(("VAULT_ROLE_ID", "r"));
        vars.push(("VAULT_SECRET_ID", "s"));
        let c = config(&vars).unwrap();
        let Provider::Vault(v) = &c.providers()[0] else {
            panic!("not vault")
        };
        assert!(
            matches!(v.auth, VaultAuthConfig::Token(ref t) if t.expose_secret() == "hvs.secret-token")
        );
        vars.retain(|(k, _)| *k != "VAULT_TOKEN");
        let c = config(&vars).unwrap();
        let Provider::Vault(v) = &c.providers()[0] else {
            panic!("not vault")
        };
        assert!(matches!(&v.auth, VaultAuthConfig::AppRole { mount, .. } if mount == "approle"));
    }

    #[test]
    fn bare_vault_path_means_the_secret_mount() {
        let c = config(&[
            HOSTS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
            ("VAULT_ADDR", "https://v"),
            ("VAULT_TOKEN", "t"),
            ("MLFLOW_VAULT_SECRET_PATH", "mlflow"),
        ])
        .unwrap();
        let Provider::Vault(v) = &c.providers()[0] else {
            panic!("not vault")
        };
        assert_eq!(v.path, "secret/mlflow");
    }

    #[test]
    fn ttl_follows_the_plugin_rules() {
        let ttl = |v: &str| {
            let mut vars = vec![
                HOSTS,
                ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
                ("MLFLOW_VAULT_TTL_SEC", v),
            ];
            vars.extend(VAULT);
            config(&vars).map(|c| c.ttl().as_secs())
        };
        assert_eq!(ttl("0"), Ok(300));
        assert_eq!(ttl("-5"), Ok(300));
        assert_eq!(ttl("999999"), Ok(86_400));
        assert_eq!(ttl("60"), Ok(60));
        assert_eq!(
            ttl("ten").err(),
            Some(ConfigError::Invalid {
                variable: "MLFLOW_VAULT_TTL_SEC",
                reason: "not a whole number of seconds"
            })
        );
    }

    #[test]
    fn invalid_auth_mode_is_named() {
        let err = config(&[
            HOSTS,
            AWS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "aws-secrets-manager"),
            ("MLFLOW_AWS_AUTH_MODE", "digest"),
        ])
        .unwrap_err();
        assert!(err.to_string().starts_with("MLFLOW_AWS_AUTH_MODE"), "{err}");
    }

    #[test]
    fn header_modes_follow_the_plugin() {
        let base = [
            HOSTS,
            AWS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "aws-secrets-manager"),
        ];
        let c = config(&base).unwrap();
        assert_eq!(c.template().mode(), &HeaderMode::Bearer);
        let mut custom = base.to_vec();
        custom.push(("MLFLOW_AUTH_HEADER_NAME", "X-Api-Key"));
        let c = config(&custom).unwrap();
        assert_eq!(c.template().mode(), &HeaderMode::Raw);
        assert_eq!(c.template().name().as_str(), "x-api-key");
        let mut basic = base.to_vec();
        basic.push(("MLFLOW_AWS_AUTH_MODE", "BASIC"));
        assert_eq!(
            config(&basic).unwrap().template().mode(),
            &HeaderMode::Basic
        );
        basic.push(("MLFLOW_SECRETS_FORMAT", "token"));
        assert!(
            config(&basic)
                .unwrap_err()
                .to_string()
                .starts_with("MLFLOW_AWS_AUTH_MODE")
        );
    }

    #[test]
    fn aws_region_falls_back_to_default_region() {
        let c = config(&[
            HOSTS,
            AWS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "aws-secrets-manager"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ])
        .unwrap();
        let Provider::Aws(a) = &c.providers()[0] else {
            panic!("not aws")
        };
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn azure_url_must_be_https() {
        let err = config(&[
            HOSTS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "azure-key-vault"),
            ("AZURE_KEY_VAULT_URL", "http://kv.vault.azure.net"),
            ("MLFLOW_AZURE_SECRET_NAME", "mlflow"),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::Invalid {
                variable: "AZURE_KEY_VAULT_URL",
                reason: "must start with https://"
            }
        );
    }

    #[test]
    fn allowlist_defaults_to_the_tracking_uri_origin() {
        let mut vars = vec![
            ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
            (
                "MLFLOW_TRACKING_URI",
                "https://user@mlflow.example.com:8443/",
            ),
        ];
        vars.extend(VAULT);
        let c = config(&vars).unwrap();
        assert!(
            c.allowlist()
                .allows(&"https://mlflow.example.com:8443/api".parse().unwrap())
        );
        assert!(
            !c.allowlist()
                .allows(&"https://mlflow.example.com/api".parse().unwrap())
        );
        vars.retain(|(k, _)| *k != "MLFLOW_TRACKING_URI");
        assert_eq!(
            config(&vars).err(),
            Some(ConfigError::Missing("MLFLOW_SECRETS_ALLOWED_HOSTS"))
        );
    }

    #[test]
    fn allowlist_with_ports_and_bad_patterns() {
        let mut vars = vec![
            ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
            (
                "MLFLOW_SECRETS_ALLOWED_HOSTS",
                "mlflow.example.com:5000, *.corp.example",
            ),
        ];
        vars.extend(VAULT);
        let c = config(&vars).unwrap();
        assert!(
            c.allowlist()
                .allows(&"https://mlflow.example.com:5000/".parse().unwrap())
        );
        assert!(
            c.allowlist()
                .allows(&"https://a.corp.example/".parse().unwrap())
        );
        vars[1] = ("MLFLOW_SECRETS_ALLOWED_HOSTS", "http://mlflow.example.com");
        let err = config(&vars).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("MLFLOW_SECRETS_ALLOWED_HOSTS is invalid"),
            "{err}"
        );
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        let mut vars = vec![
            HOSTS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
            ("MLFLOW_VAULT_TTL_SEC", "hvs.secret-token"),
        ];
        vars.extend(VAULT);
        let err = config(&vars).unwrap_err();
        assert!(!err.to_string().contains("hvs.secret-token"));
        vars.pop();
        vars.retain(|(k, _)| *k != "MLFLOW_VAULT_TTL_SEC");
        vars.extend(VAULT);
        let text = format!("{:?}", config(&vars).unwrap());
        assert!(!text.contains("hvs.secret-token"), "{text}");
    }

    #[test]
    fn disallowed_host_policy() {
        let mut vars = vec![
            HOSTS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
            ("MLFLOW_SECRETS_ON_DISALLOWED_HOST", "fail"),
        ];
        vars.extend(VAULT);
        assert_eq!(
            config(&vars).unwrap().on_disallowed_host(),
            DisallowedHost::Fail
        );
    }
}
