//! [`AwsSecretsManager`]: a secret from AWS Secrets Manager (feature `aws`).
//!
//! Uses the official `aws-config` + `aws-sdk-secretsmanager` crates with lean features
//! (hyper 1 + rustls client, no legacy hyper 0.14 stack), so the whole default credential
//! chain works: environment keys, `AWS_PROFILE` and shared config (AssumeRole, SSO), web
//! identity, ECS container credentials and IMDS. The region comes from the builder or the
//! SDK chain (`AWS_REGION`, `AWS_DEFAULT_REGION`, profile); the endpoint from the builder or
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL`.
//!
//! - `SecretString` is returned as is; `SecretBinary` is the raw bytes (the SDK has already
//!   decoded the base64 of the wire format), read as UTF-8 — decoded once.
//! - `VersionStage` (for example `AWSPREVIOUS`) or `VersionId` select a version; the default
//!   is `AWSCURRENT`.
//! - The SDK's own retries are turned off: [`CachedSecret`](crate::CachedSecret) retries
//!   transient failures (throttling, 5xx, network), so they are not multiplied.
//!   `ResourceNotFoundException`, access denied, invalid parameters and decryption
//!   failures are permanent.
//!
//! ```no_run
//! use tower_mlflow_secrets::{CachedSecret, source::aws::AwsSecretsManager};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = AwsSecretsManager::builder("mlflow/prod")
//!     .region("eu-west-1")
//!     .version_stage("AWSCURRENT")
//!     .build()
//!     .await?;
//! let secret = CachedSecret::new(source);
//! # let _ = secret;
//! # Ok(())
//! # }
//! ```
//!
//! The same from the environment:
//!
//! ```text
//! MLFLOW_SECRETS_AUTH_ENABLE=aws-secrets-manager
//! AWS_REGION=eu-west-1                 # or AWS_DEFAULT_REGION (an addition)
//! MLFLOW_AWS_SECRET_ID=mlflow/prod
//! MLFLOW_AWS_VERSION_STAGE=AWSCURRENT  # or MLFLOW_AWS_VERSION_ID (additions)
//! ```
//!
//! Differences from mlflow-secrets-auth: `SecretBinary` is not base64-decoded a second time
//! (the plugin fails with "Incorrect padding"), versions can be selected,
//! `AWS_DEFAULT_REGION` is honoured, and a missing secret is not retried.

use std::fmt;

use aws_sdk_secretsmanager::{
    Client,
    config::retry::RetryConfig,
    error::{ProvideErrorMetadata, SdkError},
    operation::get_secret_value::GetSecretValueError,
};
use secrecy::SecretString;

use super::{Fetched, SecretSource, SourceError, endpoint::is_https_or_loopback};

/// The SDK crates, re-exported so callers can build the `SdkConfig` given to
/// [`AwsSecretsManagerBuilder::sdk_config`] (credentials, endpoint) with the same versions.
pub use {aws_config, aws_sdk_secretsmanager as sdk};

/// Which version of the secret to read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AwsVersion {
    /// A staging label such as `AWSCURRENT`, `AWSPREVIOUS` or `AWSPENDING`.
    Stage(String),
    /// A version ID.
    Id(String),
}

/// A configuration error from [`AwsSecretsManagerBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AwsSecretsManagerBuildError {
    /// The secret ID is empty.
    EmptySecretId,
    /// No region was given and the SDK chain found none (`AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, profile).
    NoRegion,
    /// The endpoint is not https and not on loopback; names where it came from.
    InsecureEndpoint(&'static str),
}

impl fmt::Display for AwsSecretsManagerBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptySecretId => f.write_str("the AWS secret ID is empty"),
            Self::NoRegion => f.write_str(
                "no AWS region: set it on the builder or in AWS_REGION / AWS_DEFAULT_REGION",
            ),
            Self::InsecureEndpoint(from) => write!(
                f,
                "{from} must be an https URL (plain http only to a loopback host)"
            ),
        }
    }
}

impl std::error::Error for AwsSecretsManagerBuildError {}

/// Builds an [`AwsSecretsManager`] source.
#[derive(Debug)]
pub struct AwsSecretsManagerBuilder {
    secret_id: String,
    region: Option<String>,
    endpoint_url: Option<String>,
    version: Option<AwsVersion>,
    sdk_config: Option<aws_config::SdkConfig>,
}

impl AwsSecretsManagerBuilder {
    /// Sets the region (default: the SDK chain).
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sends requests to this endpoint instead of the regional one (a VPC endpoint, or a
    /// local test server).
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Reads the version with this staging label.
    #[must_use]
    pub fn version_stage(mut self, stage: impl Into<String>) -> Self {
        self.version = Some(AwsVersion::Stage(stage.into()));
        self
    }

    /// Reads the version with this ID.
    #[must_use]
    pub fn version_id(mut self, id: impl Into<String>) -> Self {
        self.version = Some(AwsVersion::Id(id.into()));
        self
    }

    /// Uses this SDK configuration (credentials, region, endpoint, ...) instead of loading
    /// the default chain. Region and endpoint set on this builder still take precedence.
    #[must_use]
    pub fn sdk_config(mut self, config: aws_config::SdkConfig) -> Self {
        self.sdk_config = Some(config);
        self
    }

    /// Loads the SDK configuration (unless one was given) and builds the source. No request
    /// to Secrets Manager is sent yet.
    pub async fn build(self) -> Result<AwsSecretsManager, AwsSecretsManagerBuildError> {
        let secret_id = self.secret_id.trim().to_owned();
        if secret_id.is_empty() {
            return Err(AwsSecretsManagerBuildError::EmptySecretId);
        }
        check_endpoints(self.endpoint_url.as_deref(), self.sdk_config.as_ref())?;
        let sdk_config = match self.sdk_config {
            Some(config) => config,
            None => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(region) = &self.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                loader.load().await
            }
        };
        let mut config = aws_sdk_secretsmanager::config::Builder::from(&sdk_config)
            // CachedSecret retries transient failures; two retry loops would multiply.
            .retry_config(RetryConfig::disabled());
        if let Some(region) = self.region {
            config = config.region(aws_config::Region::new(region));
        }
        if let Some(url) = self.endpoint_url {
            config = config.endpoint_url(url);
        } else if let Some(url) = sdk_config.endpoint_url() {
            // The shared endpoint (`AWS_ENDPOINT_URL` or a profile's `endpoint_url`).
            if !is_https_or_loopback(url) {
                return Err(AwsSecretsManagerBuildError::InsecureEndpoint(
                    "AWS_ENDPOINT_URL (or the profile's endpoint_url)",
                ));
            }
        }
        let config = config.build();
        if config.region().is_none() {
            return Err(AwsSecretsManagerBuildError::NoRegion);
        }
        Ok(AwsSecretsManager {
            client: Client::from_conf(config),
            secret_id,
            version: self.version,
        })
    }
}

/// The endpoints the SDK may send the request to, known before the SDK configuration is
/// loaded: the builder's own, and the variables the SDK reads (checked even when a given
/// `SdkConfig` would override them: a plain-http endpoint in the environment is a mistake
/// either way).
fn check_endpoints(
    builder: Option<&str>,
    given: Option<&aws_config::SdkConfig>,
) -> Result<(), AwsSecretsManagerBuildError> {
    let given = given.and_then(aws_config::SdkConfig::endpoint_url);
    let env = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let candidates = [
        (builder.map(str::to_owned), "the endpoint_url setting"),
        (given.map(str::to_owned), "the SdkConfig's endpoint_url"),
        (
            env("AWS_ENDPOINT_URL_SECRETS_MANAGER"),
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        ),
        (env("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL"),
    ];
    for (url, from) in candidates {
        if url.is_some_and(|url| !is_https_or_loopback(&url)) {
            return Err(AwsSecretsManagerBuildError::InsecureEndpoint(from));
        }
    }
    Ok(())
}

/// A [`SecretSource`] reading one secret from AWS Secrets Manager; see the
/// [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct AwsSecretsManager {
    client: Client,
    secret_id: String,
    version: Option<AwsVersion>,
}

impl fmt::Debug for AwsSecretsManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecretsManager")
            .field("secret_id", &self.secret_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl AwsSecretsManager {
    /// Starts a builder for the secret with this name or ARN (as in
    /// `MLFLOW_AWS_SECRET_ID`).
    pub fn builder(secret_id: impl Into<String>) -> AwsSecretsManagerBuilder {
        AwsSecretsManagerBuilder {
            secret_id: secret_id.into(),
            region: None,
            endpoint_url: None,
            version: None,
            sdk_config: None,
        }
    }

    async fn fetch_inner(&self) -> Result<Fetched, SourceError> {
        let mut request = self.client.get_secret_value().secret_id(&self.secret_id);
        match &self.version {
            Some(AwsVersion::Stage(stage)) => request = request.version_stage(stage),
            Some(AwsVersion::Id(id)) => request = request.version_id(id),
            None => {}
        }
        let output = request
            .send()
            .await
            .map_err(|e| classify(&self.secret_id, e))?;
        if let Some(text) = output.secret_string() {
            return Ok(Fetched::new(SecretString::from(text.to_owned())));
        }
        if let Some(blob) = output.secret_binary() {
            // The SDK has already decoded the wire base64: these are the stored bytes.
            let text = std::str::from_utf8(blob.as_ref()).map_err(|_| {
                SourceError::permanent(format!(
                    "aws secret `{}`: SecretBinary is not UTF-8 text",
                    self.secret_id
                ))
            })?;
            return Ok(Fetched::new(SecretString::from(text.to_owned())));
        }
        Err(SourceError::permanent(format!(
            "aws secret `{}` has neither SecretString nor SecretBinary",
            self.secret_id
        )))
    }
}

fn classify<R: fmt::Debug + Send + Sync + 'static>(
    secret_id: &str,
    error: SdkError<GetSecretValueError, R>,
) -> SourceError {
    match &error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("unknown error");
            let message = err.message().unwrap_or("");
            let text = format!("aws secret `{secret_id}`: {code}: {message}");
            let transient = matches!(err, GetSecretValueError::InternalServiceError(_))
                || matches!(
                    code,
                    "ThrottlingException"
                        | "Throttling"
                        | "TooManyRequestsException"
                        | "RequestLimitExceeded"
                        | "ServiceUnavailable"
                        | "InternalFailure"
                );
            if transient {
                SourceError::transient(text)
            } else {
                SourceError::permanent(text)
            }
        }
        SdkError::ConstructionFailure(_) => SourceError::permanent(format!(
            "aws secret `{secret_id}`: the request could not be built"
        ))
        .with_source(error),
        // Dispatch (network), timeouts and unreadable responses may go away.
        _ => SourceError::transient(format!("aws secret `{secret_id}`: request failed"))
            .with_source(error),
    }
}

impl SecretSource for AwsSecretsManager {
    fn fetch(&self) -> impl Future<Output = Result<Fetched, SourceError>> + Send {
        let this = self.clone();
        async move { this.fetch_inner().await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_config() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[tokio::test]
    async fn empty_secret_id_is_rejected() {
        let err = AwsSecretsManager::builder("  ")
            .sdk_config(offline_config())
            .build()
            .await
            .err();
        assert_eq!(err, Some(AwsSecretsManagerBuildError::EmptySecretId));
    }

    #[tokio::test]
    async fn endpoints_must_be_https_off_loopback() {
        let build = |builder: AwsSecretsManagerBuilder| async move {
            builder.region("eu-west-1").build().await.err()
        };
        let plain = "http://secretsmanager.internal:4566";
        assert_eq!(
            build(
                AwsSecretsManager::builder("x")
                    .sdk_config(offline_config())
                    .endpoint_url(plain)
            )
            .await,
            Some(AwsSecretsManagerBuildError::InsecureEndpoint(
                "the endpoint_url setting"
            ))
        );
        let given = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(plain)
            .build();
        let err = build(AwsSecretsManager::builder("x").sdk_config(given)).await;
        assert_eq!(
            err,
            Some(AwsSecretsManagerBuildError::InsecureEndpoint(
                "the SdkConfig's endpoint_url"
            ))
        );
        assert!(err.unwrap().to_string().contains("must be an https URL"));
        for ok in [
            "http://127.0.0.1:4566",
            "https://vpce-1.secretsmanager.eu-west-1.vpce.amazonaws.com",
        ] {
            let builder = AwsSecretsManager::builder("x")
                .sdk_config(offline_config())
                .endpoint_url(ok);
            assert_eq!(build(builder).await, None, "{ok}");
        }
    }

    #[tokio::test]
    async fn missing_region_is_a_build_error() {
        let err = AwsSecretsManager::builder("x")
            .sdk_config(offline_config())
            .build()
            .await
            .err();
        assert_eq!(err, Some(AwsSecretsManagerBuildError::NoRegion));
    }

    #[tokio::test]
    async fn region_on_the_builder_wins() {
        let source = AwsSecretsManager::builder("x")
            .sdk_config(offline_config())
            .region("eu-west-1")
            .version_stage("AWSPREVIOUS")
            .build()
            .await;
        let source = source.ok();
        assert!(source.is_some());
        let text = format!("{source:?}");
        assert!(text.contains("AWSPREVIOUS"), "{text}");
    }
}
