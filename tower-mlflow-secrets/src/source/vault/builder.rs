//! [`VaultBuilder`]: the address, authentication, KV location and TLS settings, checked by
//! [`build`](VaultBuilder::build).

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use http::Uri;
use tokio::sync::Mutex;

use super::{Inner, KvLocation, KvVersion, State, TokenState, Vault, VaultAuth, VaultBuildError};
use crate::source::http::{HttpClient, HttpClientBuildError, TlsSettings, scheme_is_safe};

/// Builds a [`Vault`] source.
pub struct VaultBuilder {
    address: String,
    auth: Option<VaultAuth>,
    namespace: Option<String>,
    mount: Option<String>,
    kv_version: Option<KvVersion>,
    path: Option<String>,
    version: Option<u64>,
    field: Option<String>,
    ca_file: Option<PathBuf>,
    ca_pem: Option<Vec<u8>>,
    client_files: Option<(PathBuf, PathBuf)>,
    client_pem: Option<(Vec<u8>, Vec<u8>)>,
    allow_plain_http: bool,
    timeout: Duration,
    renew_before: Option<Duration>,
}

impl fmt::Debug for VaultBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBuilder")
            .field("address", &self.address)
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .field("mount", &self.mount)
            .field("kv_version", &self.kv_version)
            .field("path", &self.path)
            .field("version", &self.version)
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl VaultBuilder {
    /// Sets the authentication.
    #[must_use]
    pub fn auth(mut self, auth: VaultAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Sets the Enterprise / HCP namespace (`X-Vault-Namespace`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the KV mount (for example `secret` or `kv`); `path` is then relative to it.
    /// Without it, `path` is a full path and the mount is detected.
    #[must_use]
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = Some(mount.into());
        self
    }

    /// Sets the KV version; without it the version is detected.
    #[must_use]
    pub fn kv_version(mut self, version: KvVersion) -> Self {
        self.kv_version = Some(version);
        self
    }

    /// Sets the secret path (relative to the mount if one is set).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Pins a KV v2 version (default: the latest).
    #[must_use]
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Returns only this field of the secret's data, as text, instead of the whole object
    /// as JSON.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Trusts only the certificates in this PEM file (like `VAULT_CACERT`).
    #[must_use]
    pub fn ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Trusts only the certificates in this PEM bundle.
    #[must_use]
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents this client certificate chain and key, PEM files (like `VAULT_CLIENT_CERT`
    /// and `VAULT_CLIENT_KEY`).
    #[must_use]
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_files = Some((cert.into(), key.into()));
        self
    }

    /// Presents this client certificate chain and key, PEM.
    #[must_use]
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_pem = Some((cert.into(), key.into()));
        self
    }

    /// Allows plain http to hosts that are not loopback (off by default).
    #[must_use]
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Timeout for each HTTP request to Vault (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Renews the token when less than this is left of its lease (default: a third of the
    /// lease).
    #[must_use]
    pub fn renew_before(mut self, lead: Duration) -> Self {
        self.renew_before = Some(lead);
        self
    }

    /// Checks the configuration and builds the source. No request is sent yet.
    pub fn build(mut self) -> Result<Vault, VaultBuildError> {
        let address = self.checked_address()?;
        let auth = self.auth.take().ok_or(VaultBuildError::NoAuth)?;
        let path = self
            .path
            .take()
            .map(|p| p.trim_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .ok_or(VaultBuildError::NoPath)?;
        if self.version.is_some() && self.kv_version == Some(KvVersion::V1) {
            return Err(VaultBuildError::VersionOnKvV1);
        }
        if let Some(ns) = &self.namespace {
            http::HeaderValue::from_str(ns).map_err(|_| VaultBuildError::InvalidNamespace)?;
        }
        let http = self.http_client()?;
        let mount = self
            .mount
            .map(|m| m.trim_matches('/').to_owned())
            .filter(|m| !m.is_empty());
        let location = match (&mount, self.kv_version) {
            (Some(mount), Some(version)) => Some(KvLocation {
                mount: mount.clone(),
                version,
                path: path.clone(),
            }),
            _ => None,
        };
        let token = match &auth {
            VaultAuth::Token(token) => Some(TokenState::fixed(token.clone())),
            VaultAuth::AppRole { .. } => None,
        };
        Ok(Vault {
            inner: Arc::new(Inner {
                address: address.to_string().trim_end_matches('/').to_owned(),
                auth,
                namespace: self.namespace,
                path,
                mount,
                version: self.version,
                field: self.field,
                http,
                allow_plain_http: self.allow_plain_http,
                renew_before: self.renew_before,
                state: Mutex::new(State { token, location }),
            }),
        })
    }

    /// The address as a URI: absolute, `http` or `https`, plain http only where allowed.
    fn checked_address(&self) -> Result<Uri, VaultBuildError> {
        let address: Uri = self
            .address
            .trim()
            .trim_end_matches('/')
            .parse()
            .map_err(|_| VaultBuildError::InvalidAddress)?;
        if address.host().is_none() || !matches!(address.scheme_str(), Some("http" | "https")) {
            return Err(VaultBuildError::InvalidAddress);
        }
        if !scheme_is_safe(&address, self.allow_plain_http) {
            return Err(VaultBuildError::PlainHttp);
        }
        Ok(address)
    }

    /// The HTTP client with the CA and client certificate (files win over PEM given inline).
    fn http_client(&mut self) -> Result<HttpClient, VaultBuildError> {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|_| VaultBuildError::UnreadableFile(p.clone()));
        let ca_pem = match (&self.ca_file, self.ca_pem.take()) {
            (Some(file), _) => Some(read(file)?),
            (None, pem) => pem,
        };
        let client_pem = match (&self.client_files, self.client_pem.take()) {
            (Some((cert, key)), _) => Some((read(cert)?, read(key)?)),
            (None, pem) => pem,
        };
        let tls = TlsSettings { ca_pem, client_pem };
        HttpClient::new(tls, self.timeout).map_err(|e| match e {
            HttpClientBuildError::InvalidClientCert => VaultBuildError::InvalidClientCert,
            _ => VaultBuildError::InvalidCa,
        })
    }
}

impl Vault {
    /// Starts a builder for the Vault server at `address` (as in `VAULT_ADDR`).
    pub fn builder(address: impl Into<String>) -> VaultBuilder {
        VaultBuilder {
            address: address.into(),
            auth: None,
            namespace: None,
            mount: None,
            kv_version: None,
            path: None,
            version: None,
            field: None,
            ca_file: None,
            ca_pem: None,
            client_files: None,
            client_pem: None,
            allow_plain_http: false,
            timeout: Duration::from_secs(10),
            renew_before: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_rejects_plain_http_to_remote_hosts() {
        let err = Vault::builder("http://vault.example.com:8200")
            .auth(VaultAuth::token("t"))
            .path("secret/x")
            .build()
            .err();
        assert_eq!(err, Some(VaultBuildError::PlainHttp));
    }

    #[test]
    fn builder_needs_auth_and_path() {
        let no_auth = Vault::builder("https://v").path("x").build().err();
        assert_eq!(no_auth, Some(VaultBuildError::NoAuth));
        let no_path = Vault::builder("https://v")
            .auth(VaultAuth::token("t"))
            .build()
            .err();
        assert_eq!(no_path, Some(VaultBuildError::NoPath));
    }

    #[test]
    fn version_pin_on_v1_is_rejected() {
        let err = Vault::builder("https://v")
            .auth(VaultAuth::token("t"))
            .path("x")
            .mount("kv")
            .kv_version(KvVersion::V1)
            .version(2)
            .build()
            .err();
        assert_eq!(err, Some(VaultBuildError::VersionOnKvV1));
    }
}
