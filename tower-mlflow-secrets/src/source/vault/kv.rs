//! The KV engine: finding the mount and its version (`sys/internal/ui/mounts`), and reading
//! the secret (v1 or v2, a pinned version, one field or the whole object).

use http::Method;
use secrecy::SecretString;
use serde_json::Value;

use super::{Inner, KvVersion, api::ReadError};
use crate::source::{Fetched, SourceError, lifetime};

#[derive(Clone, Debug)]
pub(super) struct KvLocation {
    pub(super) mount: String,
    pub(super) version: KvVersion,
    /// Relative to the mount.
    pub(super) path: String,
}

impl Inner {
    pub(super) async fn detect_location(
        &self,
        token: &SecretString,
    ) -> Result<KvLocation, ReadError> {
        let full_path = match &self.mount {
            Some(mount) => format!("{mount}/{}", self.path),
            None => self.path.clone(),
        };
        let request = self.request(
            Method::GET,
            &format!("sys/internal/ui/mounts/{full_path}"),
            Some(token),
            None,
        )?;
        let response = self.call(request, "vault mount detection").await?;
        let data = response.get("data").unwrap_or(&Value::Null);
        let mount = data
            .get("path")
            .and_then(Value::as_str)
            .map(|m| m.trim_matches('/').to_owned())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                SourceError::permanent("vault mount detection: no mount found for the path")
            })?;
        let engine = data.get("type").and_then(Value::as_str).unwrap_or("");
        if engine != "kv" && engine != "generic" {
            return Err(SourceError::permanent(format!(
                "vault mount `{mount}` is a `{engine}` engine, not kv"
            ))
            .into());
        }
        let version = match data
            .get("options")
            .and_then(|o| o.get("version"))
            .and_then(Value::as_str)
        {
            Some("2") => KvVersion::V2,
            _ => KvVersion::V1,
        };
        if version == KvVersion::V1 && self.version.is_some() {
            return Err(SourceError::permanent(
                "a secret version is pinned but the mount is KV v1",
            )
            .into());
        }
        // The configured path is full (`<mount>/<rest>`) unless it is already relative.
        let rest = full_path
            .strip_prefix(&mount)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(&full_path);
        let rest = match version {
            // Accept the API form `<mount>/data/<path>` for v2, as the Python plugin does.
            KvVersion::V2 => rest.strip_prefix("data/").unwrap_or(rest),
            KvVersion::V1 => rest,
        };
        tracing::debug!(target: "tower_mlflow_secrets", %mount, ?version, "vault kv mount detected");
        Ok(KvLocation {
            mount,
            version,
            path: rest.to_owned(),
        })
    }

    pub(super) async fn read(
        &self,
        token: &SecretString,
        location: &KvLocation,
    ) -> Result<Fetched, ReadError> {
        let api_path = match location.version {
            KvVersion::V1 => format!("{}/{}", location.mount, location.path),
            KvVersion::V2 => match self.version {
                Some(v) => format!("{}/data/{}?version={v}", location.mount, location.path),
                None => format!("{}/data/{}", location.mount, location.path),
            },
        };
        let request = self.request(Method::GET, &api_path, Some(token), None)?;
        let response = self.call(request, "vault kv read").await?;
        let data = match location.version {
            KvVersion::V1 => response.get("data"),
            KvVersion::V2 => response.get("data").and_then(|d| d.get("data")),
        };
        let data = match data {
            Some(Value::Object(map)) => map,
            _ => {
                return Err(SourceError::permanent(
                    "vault kv read: no data at the path (deleted or destroyed version?)",
                )
                .into());
            }
        };
        let text = match &self.field {
            Some(field) => match data.get(field) {
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(SourceError::permanent(format!(
                        "vault kv read: field `{field}` is not a string"
                    ))
                    .into());
                }
                None => {
                    return Err(SourceError::permanent(format!(
                        "vault kv read: no field `{field}` in the secret"
                    ))
                    .into());
                }
            },
            None => Value::Object(data.clone()).to_string(),
        };
        let mut fetched = Fetched::new(SecretString::from(text));
        let lease = lifetime::seconds(
            response.get("lease_duration"),
            "vault kv read",
            "lease_duration",
        )?;
        if let Some(lease) = lease.filter(|l| !l.is_zero()) {
            fetched = fetched.with_expires_in(lease);
        }
        Ok(fetched)
    }
}
