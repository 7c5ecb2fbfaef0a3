//! [`Config::from_env`]: the configuration of mlflow-secrets-auth, read from the same
//! environment variables, turned into a [`SecretHeaderLayer`](crate::SecretHeaderLayer).
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
//! | `MLFLOW_SECRETS_ALLOWED_HOSTS` | origin of `MLFLOW_TRACKING_URI` | comma list, [`HostAllowlist`] patterns; as the plugin, a host without a port matches any port; https unless loopback; **unlike the plugin, unset does not mean "all hosts"** (see [the comparison](crate::allowlist)) |
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

mod env;
mod error;
mod provider;

use std::{sync::Arc, time::Duration};

pub use self::{
    error::EnvConfigError,
    provider::{AwsConfig, AzureConfig, Provider, VaultAuthConfig, VaultConfig},
};
#[doc(no_inline)]
pub use crate::source::ConfiguredSource;
use crate::{
    HostAllowlist, format::HeaderTemplate, header::DisallowedHost,
    source::configured::ProviderSource,
};

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

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, EnvConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (for tests, or another source of settings).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EnvConfigError> {
        let env = env::Env::new(lookup);
        let enabled = env.enabled_providers()?;
        let fallback = env.flag("MLFLOW_SECRETS_FALLBACK")?;
        let (mut providers, primary) = provider::read_providers(&env, enabled)?;
        if !fallback {
            // As the plugin: only the first enabled provider is used.
            providers.truncate(1);
        }
        let template = env.template(primary.basic, primary.mode_var)?;
        let (allowlist, allowed_hosts) = env.allowlist()?;
        let disallowed = env.on_disallowed_host()?;
        Ok(Self {
            providers,
            ttl: primary.ttl,
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

    /// Builds the source(s). For AWS this loads the SDK configuration (credential chain,
    /// region); nothing is fetched yet.
    pub async fn source(&self) -> Result<ConfiguredSource, EnvConfigError> {
        let mut sources = Vec::new();
        for provider in &self.providers {
            sources.push(ProviderSource::build(provider).await?);
        }
        Ok(ConfiguredSource::new(sources))
    }

    /// Builds the source, a [`CachedSecret`](crate::CachedSecret) with the configured TTL,
    /// and the [`SecretHeaderLayer`](crate::SecretHeaderLayer).
    pub async fn layer(&self) -> Result<crate::SecretHeaderLayer, EnvConfigError> {
        let secret = crate::CachedSecret::builder(self.source().await?)
            .ttl(self.ttl)
            .build()
            .map_err(|e| EnvConfigError::Layer(Arc::new(e)))?;
        crate::SecretHeaderLayer::builder(secret)
            .template(self.template.clone())
            .allowlist(self.allowlist.clone())
            .on_disallowed_host(self.disallowed)
            .build()
            .map_err(|e| EnvConfigError::Layer(Arc::new(e)))
    }
}

#[cfg(test)]
mod tests;
