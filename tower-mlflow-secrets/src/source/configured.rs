//! [`ConfiguredSource`]: the providers enabled by a [`Config`](crate::config::Config), tried
//! in order.

use std::fmt;

use super::{Fetched, SecretSource, SourceError};
use crate::config::{EnvConfigError, Provider};

/// The source built from a [`Config`](crate::config::Config): the enabled providers, tried
/// in order when fallback is on (a failure of the last one is returned; it is transient if
/// any failure was).
pub struct ConfiguredSource {
    sources: Vec<ProviderSource>,
}

impl ConfiguredSource {
    pub(crate) fn new(sources: Vec<ProviderSource>) -> Self {
        Self { sources }
    }
}

impl fmt::Debug for ConfiguredSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfiguredSource")
            .field("providers", &self.sources.len())
            .finish()
    }
}

impl SecretSource for ConfiguredSource {
    #[allow(clippy::manual_async_fn)] // the trait spells out `+ Send`
    fn fetch(&self) -> impl Future<Output = Result<Fetched, SourceError>> + Send {
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
                    SourceError::transient("every secret provider failed").with_source(e)
                }
                Some(e) => e,
                None => SourceError::permanent("no secret provider configured"),
            })
        }
    }
}

/// One built provider.
pub(crate) enum ProviderSource {
    #[cfg(feature = "vault")]
    Vault(super::vault::Vault),
    #[cfg(feature = "aws")]
    Aws(super::aws::AwsSecretsManager),
    #[cfg(feature = "azure")]
    Azure(super::azure::AzureKeyVault),
}

impl ProviderSource {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        // `*self`: with no provider feature the enum is empty and the match has no arms.
        match *self {
            #[cfg(feature = "vault")]
            Self::Vault(ref s) => s.fetch().await,
            #[cfg(feature = "aws")]
            Self::Aws(ref s) => s.fetch().await,
            #[cfg(feature = "azure")]
            Self::Azure(ref s) => s.fetch().await,
        }
    }

    /// Builds the source for `provider`; an error names the provider's variables.
    #[allow(clippy::unused_async)] // async only with the `aws` feature
    pub(crate) async fn build(provider: &Provider) -> Result<Self, EnvConfigError> {
        match provider {
            #[cfg(feature = "vault")]
            Provider::Vault(v) => vault(v)
                .map(Self::Vault)
                .map_err(|e| EnvConfigError::provider("vault (VAULT_ADDR, VAULT_CACERT, ...)", e)),
            #[cfg(feature = "aws")]
            Provider::Aws(a) => aws(a).await.map(Self::Aws).map_err(|e| match e {
                super::aws::AwsSecretsManagerBuildError::NoRegion => {
                    EnvConfigError::Missing("AWS_REGION")
                }
                other => EnvConfigError::provider("aws", other),
            }),
            #[cfg(feature = "azure")]
            Provider::Azure(z) => azure(z).map(Self::Azure).map_err(|e| {
                EnvConfigError::provider("azure (AZURE_KEY_VAULT_URL, MLFLOW_AZURE_SECRET_NAME)", e)
            }),
            #[cfg(not(feature = "vault"))]
            Provider::Vault(_) => Err(EnvConfigError::FeatureDisabled("vault")),
            #[cfg(not(feature = "aws"))]
            Provider::Aws(_) => Err(EnvConfigError::FeatureDisabled("aws")),
            #[cfg(not(feature = "azure"))]
            Provider::Azure(_) => Err(EnvConfigError::FeatureDisabled("azure")),
        }
    }
}

#[cfg(feature = "vault")]
fn vault(
    v: &crate::config::VaultConfig,
) -> Result<super::vault::Vault, super::vault::VaultBuildError> {
    use super::vault::{KvVersion, Vault, VaultAuth};

    use crate::config::VaultAuthConfig;

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
    b.build()
}

#[cfg(feature = "aws")]
async fn aws(
    a: &crate::config::AwsConfig,
) -> Result<super::aws::AwsSecretsManager, super::aws::AwsSecretsManagerBuildError> {
    let mut b = super::aws::AwsSecretsManager::builder(&a.secret_id);
    if let Some(r) = &a.region {
        b = b.region(r);
    }
    if let Some(s) = &a.version_stage {
        b = b.version_stage(s);
    }
    if let Some(id) = &a.version_id {
        b = b.version_id(id);
    }
    b.build().await
}

#[cfg(feature = "azure")]
fn azure(
    z: &crate::config::AzureConfig,
) -> Result<super::azure::AzureKeyVault, super::azure::AzureKeyVaultBuildError> {
    let mut b = super::azure::AzureKeyVault::builder(&z.vault_url, &z.secret_name);
    if let Some(v) = &z.version {
        b = b.version(v);
    }
    b.build()
}
