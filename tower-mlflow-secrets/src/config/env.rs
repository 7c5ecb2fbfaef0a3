//! Reading variables: trimmed lookups, the plugin's boolean, TTL and auth-mode rules, and the
//! settings shared by every provider (header, format, allowlist, disallowed-host policy).

use std::time::Duration;

use http::{HeaderName, Uri, header::AUTHORIZATION};

use super::EnvConfigError;
use crate::{
    CachedSecret, HostAllowlist,
    format::{HeaderMode, HeaderTemplate, SecretFormat},
    header::DisallowedHost,
};

/// The provider slugs of `MLFLOW_SECRETS_AUTH_ENABLE`, in priority order.
pub(super) const SLUGS: [&str; 3] = ["vault", "aws-secrets-manager", "azure-key-vault"];

fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Variables read through a lookup function.
pub(super) struct Env<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub(super) fn new(lookup: F) -> Self {
        Self { lookup }
    }

    /// A trimmed, non-empty value.
    pub(super) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn require(&self, name: &'static str) -> Result<String, EnvConfigError> {
        self.get(name).ok_or(EnvConfigError::Missing(name))
    }

    pub(super) fn flag(&self, name: &'static str) -> Result<bool, EnvConfigError> {
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
            Some(_) => Err(EnvConfigError::Invalid {
                variable: name,
                reason: "expected 1/true/yes/on or 0/false/no/off",
            }),
        }
    }

    /// The plugin's TTL rule: ≤ 0 → 300, clamped to 1..=86400 (the plugin's variables keep
    /// the plugin's meaning; the in-code builder rejects out-of-range TTLs instead).
    pub(super) fn ttl(&self, name: &'static str) -> Result<Duration, EnvConfigError> {
        let secs = match self.get(name) {
            None => CachedSecret::DEFAULT_TTL.as_secs(),
            Some(v) => {
                let n: i64 = v.parse().map_err(|_| EnvConfigError::Invalid {
                    variable: name,
                    reason: "not a whole number of seconds",
                })?;
                if n <= 0 {
                    CachedSecret::DEFAULT_TTL.as_secs()
                } else {
                    n.unsigned_abs().clamp(1, CachedSecret::MAX_TTL.as_secs())
                }
            }
        };
        Ok(Duration::from_secs(secs))
    }

    /// Whether the auth mode variable `name` asks for Basic (else Bearer).
    pub(super) fn basic_mode(&self, name: &'static str) -> Result<bool, EnvConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("bearer") => Ok(false),
            Some("basic") => Ok(true),
            Some(_) => Err(EnvConfigError::Invalid {
                variable: name,
                reason: "expected `bearer` or `basic`",
            }),
        }
    }

    /// Which providers are enabled, in [`SLUGS`] order: the comma list of
    /// `MLFLOW_SECRETS_AUTH_ENABLE` or the per-provider booleans.
    pub(super) fn enabled_providers(&self) -> Result<[bool; 3], EnvConfigError> {
        let mut enabled = [false; 3];
        if let Some(list) = self.get("MLFLOW_SECRETS_AUTH_ENABLE") {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let item = item.to_ascii_lowercase();
                let index = SLUGS.iter().position(|s| *s == item).ok_or(EnvConfigError::Invalid {
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
            enabled[index] |= self.flag(var)?;
        }
        Ok(enabled)
    }

    /// The header name, mode and secret format. `basic` and `mode_var` come from the first
    /// enabled provider's `MLFLOW_*_AUTH_MODE`.
    pub(super) fn template(
        &self,
        basic: bool,
        mode_var: &'static str,
    ) -> Result<HeaderTemplate, EnvConfigError> {
        let header = match self.get("MLFLOW_AUTH_HEADER_NAME") {
            None => AUTHORIZATION,
            Some(name) if name.eq_ignore_ascii_case("authorization") => AUTHORIZATION,
            Some(name) => HeaderName::try_from(name).map_err(|_| EnvConfigError::Invalid {
                variable: "MLFLOW_AUTH_HEADER_NAME",
                reason: "not a valid HTTP header name",
            })?,
        };
        let format = match self
            .get("MLFLOW_SECRETS_FORMAT")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("json") => SecretFormat::json(),
            Some("token") => SecretFormat::Token,
            Some("userpass") => SecretFormat::UserPass,
            Some(_) => {
                return Err(EnvConfigError::Invalid {
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
        HeaderTemplate::new(header, mode, format).map_err(|_| EnvConfigError::Invalid {
            variable: if basic { mode_var } else { "MLFLOW_SECRETS_FORMAT" },
            reason: "the auth mode does not fit the secret format (basic needs userpass or json, bearer needs token or json)",
        })
    }

    /// The allowlist and the text it was read from: `MLFLOW_SECRETS_ALLOWED_HOSTS`, where a
    /// host without a port allows any port (as the plugin, which ignores ports), else the
    /// origin of `MLFLOW_TRACKING_URI` (its port only).
    pub(super) fn allowlist(&self) -> Result<(HostAllowlist, String), EnvConfigError> {
        let mut builder = HostAllowlist::builder();
        let (allowed_hosts, hosts_var) = match self.get("MLFLOW_SECRETS_ALLOWED_HOSTS") {
            Some(list) => {
                builder = builder.any_port_unless_given();
                (list, "MLFLOW_SECRETS_ALLOWED_HOSTS")
            }
            None => (self.tracking_origin()?, "MLFLOW_TRACKING_URI"),
        };
        let allowlist = builder
            .hosts_from_list(&allowed_hosts)
            .allow_plain_http(self.flag("MLFLOW_SECRETS_ALLOW_PLAIN_HTTP")?)
            .build()
            .map_err(|_| EnvConfigError::Invalid {
                variable: hosts_var,
                reason: "a host pattern is invalid or plain http to a non-loopback host",
            })?;
        Ok((allowlist, allowed_hosts))
    }

    /// `scheme://host[:port]` of `MLFLOW_TRACKING_URI`, without user info.
    fn tracking_origin(&self) -> Result<String, EnvConfigError> {
        let uri: Uri = self
            .get("MLFLOW_TRACKING_URI")
            .ok_or(EnvConfigError::Missing("MLFLOW_SECRETS_ALLOWED_HOSTS"))?
            .parse()
            .map_err(|_| EnvConfigError::Invalid {
                variable: "MLFLOW_TRACKING_URI",
                reason: "not a URL",
            })?;
        let authority = uri.authority().ok_or(EnvConfigError::Invalid {
            variable: "MLFLOW_TRACKING_URI",
            reason: "has no host (a local file store needs no secret)",
        })?;
        let scheme = uri.scheme_str().unwrap_or("https");
        Ok(format!(
            "{scheme}://{}",
            authority.as_str().rsplit('@').next().unwrap_or("")
        ))
    }

    /// `MLFLOW_SECRETS_ON_DISALLOWED_HOST`: `strip` (the default) or `fail`.
    pub(super) fn on_disallowed_host(&self) -> Result<DisallowedHost, EnvConfigError> {
        match self
            .get("MLFLOW_SECRETS_ON_DISALLOWED_HOST")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("strip") => Ok(DisallowedHost::SendWithoutSecret),
            Some("fail") => Ok(DisallowedHost::Fail),
            Some(_) => Err(EnvConfigError::Invalid {
                variable: "MLFLOW_SECRETS_ON_DISALLOWED_HOST",
                reason: "expected strip or fail",
            }),
        }
    }
}
