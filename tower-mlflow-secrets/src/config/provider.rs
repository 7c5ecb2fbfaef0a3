//! The per-provider settings ([`Provider`]) and how each is read from the environment.

use std::{fmt, path::PathBuf, time::Duration};

use secrecy::SecretString;

use super::{EnvConfigError, env::Env};

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

/// The settings the first enabled provider decides for all of them.
pub(super) struct Primary {
    /// Its `MLFLOW_*_TTL_SEC`.
    pub(super) ttl: Duration,
    /// Whether its `MLFLOW_*_AUTH_MODE` is `basic`.
    pub(super) basic: bool,
    /// The name of that auth mode variable, for errors.
    pub(super) mode_var: &'static str,
}

impl Primary {
    fn read<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        ttl_var: &'static str,
        mode_var: &'static str,
    ) -> Result<Self, EnvConfigError> {
        Ok(Self {
            ttl: env.ttl(ttl_var)?,
            basic: env.basic_mode(mode_var)?,
            mode_var,
        })
    }
}

/// Reads the settings of every enabled provider, in the order vault > aws > azure, and the
/// [`Primary`] settings of the first.
pub(super) fn read_providers<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    [vault, aws, azure]: [bool; 3],
) -> Result<(Vec<Provider>, Primary), EnvConfigError> {
    let mut providers = Vec::new();
    let mut primary = None;
    if vault {
        providers.push(Provider::Vault(vault_config(env)?));
        if primary.is_none() {
            primary = Some(Primary::read(
                env,
                "MLFLOW_VAULT_TTL_SEC",
                "MLFLOW_VAULT_AUTH_MODE",
            )?);
        }
    }
    if aws {
        providers.push(Provider::Aws(aws_config(env)?));
        if primary.is_none() {
            primary = Some(Primary::read(
                env,
                "MLFLOW_AWS_TTL_SEC",
                "MLFLOW_AWS_AUTH_MODE",
            )?);
        }
    }
    if azure {
        providers.push(Provider::Azure(azure_config(env)?));
        if primary.is_none() {
            primary = Some(Primary::read(
                env,
                "MLFLOW_AZURE_TTL_SEC",
                "MLFLOW_AZURE_AUTH_MODE",
            )?);
        }
    }
    let primary = primary.ok_or(EnvConfigError::NoProviderEnabled)?;
    Ok((providers, primary))
}

fn aws_config<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<AwsConfig, EnvConfigError> {
    Ok(AwsConfig {
        region: env
            .get("AWS_REGION")
            .or_else(|| env.get("AWS_DEFAULT_REGION")),
        secret_id: env.require("MLFLOW_AWS_SECRET_ID")?,
        version_stage: env.get("MLFLOW_AWS_VERSION_STAGE"),
        version_id: env.get("MLFLOW_AWS_VERSION_ID"),
    })
}

fn azure_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<AzureConfig, EnvConfigError> {
    let vault_url = env.require("AZURE_KEY_VAULT_URL")?;
    if !vault_url.starts_with("https://") {
        return Err(EnvConfigError::Invalid {
            variable: "AZURE_KEY_VAULT_URL",
            reason: "must start with https://",
        });
    }
    Ok(AzureConfig {
        vault_url,
        secret_name: env.require("MLFLOW_AZURE_SECRET_NAME")?,
        version: env.get("MLFLOW_AZURE_SECRET_VERSION"),
    })
}

fn vault_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<VaultConfig, EnvConfigError> {
    let address = env.require("VAULT_ADDR")?;
    let auth = vault_auth(env)?;
    let mut path = env
        .require("MLFLOW_VAULT_SECRET_PATH")?
        .trim_matches('/')
        .to_owned();
    let mount = env.get("MLFLOW_VAULT_KV_MOUNT");
    if mount.is_none() && !path.contains('/') {
        // The plugin reads a bare name from the `secret` mount.
        path.insert_str(0, "secret/");
    }
    let (kv_version, version) = vault_versions(env)?;
    let client_cert = match (env.get("VAULT_CLIENT_CERT"), env.get("VAULT_CLIENT_KEY")) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (Some(_), None) => return Err(EnvConfigError::Missing("VAULT_CLIENT_KEY")),
        (None, Some(_)) => return Err(EnvConfigError::Missing("VAULT_CLIENT_CERT")),
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

/// `VAULT_TOKEN` wins; otherwise AppRole needs both IDs.
fn vault_auth<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<VaultAuthConfig, EnvConfigError> {
    if let Some(token) = env.get("VAULT_TOKEN") {
        return Ok(VaultAuthConfig::Token(SecretString::from(token)));
    }
    match (env.get("VAULT_ROLE_ID"), env.get("VAULT_SECRET_ID")) {
        (Some(role_id), Some(secret_id)) => Ok(VaultAuthConfig::AppRole {
            mount: env
                .get("MLFLOW_VAULT_APPROLE_MOUNT")
                .unwrap_or_else(|| "approle".to_owned()),
            role_id,
            secret_id: SecretString::from(secret_id),
        }),
        (Some(_), None) => Err(EnvConfigError::Missing("VAULT_SECRET_ID")),
        _ => Err(EnvConfigError::Missing("VAULT_TOKEN")),
    }
}

/// `MLFLOW_VAULT_KV_VERSION` and `MLFLOW_VAULT_SECRET_VERSION` (which KV v1 does not have).
fn vault_versions<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<(Option<u8>, Option<u64>), EnvConfigError> {
    let kv_version = match env.get("MLFLOW_VAULT_KV_VERSION").as_deref() {
        None => None,
        Some("1") => Some(1),
        Some("2") => Some(2),
        Some(_) => {
            return Err(EnvConfigError::Invalid {
                variable: "MLFLOW_VAULT_KV_VERSION",
                reason: "expected 1 or 2",
            });
        }
    };
    let version = env
        .get("MLFLOW_VAULT_SECRET_VERSION")
        .map(|v| v.parse::<u64>())
        .transpose()
        .map_err(|_| EnvConfigError::Invalid {
            variable: "MLFLOW_VAULT_SECRET_VERSION",
            reason: "not a positive whole number",
        })?;
    if version.is_some() && kv_version == Some(1) {
        return Err(EnvConfigError::Invalid {
            variable: "MLFLOW_VAULT_SECRET_VERSION",
            reason: "KV v1 has no versions",
        });
    }
    Ok((kv_version, version))
}
