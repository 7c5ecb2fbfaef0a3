//! [`EnvConfigError`]: why the environment does not describe a usable configuration.

use std::{error::Error, fmt, sync::Arc};

/// A configuration error from [`Config::from_env`](super::Config::from_env) and the
/// methods that build from it. It names the variable, never its value.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum EnvConfigError {
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
    /// A provider could not be built from its settings; the cause is the
    /// [`source`](Error::source).
    Provider {
        /// The provider and the variables its settings come from.
        provider: &'static str,
        /// The provider's build error.
        source: Arc<dyn Error + Send + Sync>,
    },
    /// The cache or the header layer rejected the settings; the cause is the
    /// [`source`](Error::source).
    Layer(Arc<dyn Error + Send + Sync>),
}

impl EnvConfigError {
    #[cfg_attr(
        not(any(feature = "vault", feature = "aws", feature = "azure")),
        allow(dead_code)
    )]
    pub(crate) fn provider(
        provider: &'static str,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self::Provider {
            provider,
            source: Arc::new(source),
        }
    }
}

impl fmt::Display for EnvConfigError {
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
            Self::Provider { provider, .. } => write!(f, "{provider} could not be set up"),
            Self::Layer(_) => f.write_str("the secret header layer could not be built"),
        }
    }
}

impl Error for EnvConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Provider { source, .. } | Self::Layer(source) => Some(&**source),
            _ => None,
        }
    }
}

/// Equal when the variant and its fields are; causes compare by their text, since errors
/// have no equality of their own.
impl PartialEq for EnvConfigError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::NoProviderEnabled, Self::NoProviderEnabled) => true,
            (Self::Missing(a), Self::Missing(b))
            | (Self::FeatureDisabled(a), Self::FeatureDisabled(b)) => a == b,
            (
                Self::Invalid { variable, reason },
                Self::Invalid {
                    variable: other_variable,
                    reason: other_reason,
                },
            ) => variable == other_variable && reason == other_reason,
            (
                Self::Provider { provider, source },
                Self::Provider {
                    provider: other_provider,
                    source: other_source,
                },
            ) => provider == other_provider && source.to_string() == other_source.to_string(),
            (Self::Layer(a), Self::Layer(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

impl Eq for EnvConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_keep_their_cause() {
        let err = EnvConfigError::provider("vault (VAULT_ADDR)", std::io::Error::other("bad CA"));
        assert_eq!(err.to_string(), "vault (VAULT_ADDR) could not be set up");
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("bad CA")
        );
        assert_eq!(
            err,
            EnvConfigError::provider("vault (VAULT_ADDR)", std::io::Error::other("bad CA"))
        );
        assert_ne!(
            err,
            EnvConfigError::provider("vault (VAULT_ADDR)", std::io::Error::other("other"))
        );
        assert_ne!(err, EnvConfigError::NoProviderEnabled);
    }

    #[test]
    fn variable_errors_have_no_cause() {
        let err = EnvConfigError::Missing("VAULT_ADDR");
        assert_eq!(err.to_string(), "VAULT_ADDR is not set");
        assert!(err.source().is_none());
    }
}
