//! The HTTPS listener's certificate: loaded from two PEM files, swapped as a whole when either
//! file changes, so new handshakes use the new pair while open connections keep theirs.
//!
//! The current pair sits in an [`ArcSwap`]: one writer (the poller), lock-free readers (every
//! handshake), and always a value — `Reloading`'s single-flight and freshness are not needed.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;
use tower_mlflow_core::{BoxError, blocking::run_blocking, http::error_chain};

use crate::config::TlsFiles;

/// A certificate/key pair that cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsFilesError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid PEM or holds nothing of the expected kind.
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected: `certificate` or `private key`.
        expected: &'static str,
        /// Why, when the PEM parser said.
        source: Option<BoxError>,
    },
    /// The private key is of a kind the TLS stack cannot sign with.
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: BoxError,
    },
    /// The key does not belong to the certificate.
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The reload task failed.
    Task(BoxError),
}

impl fmt::Display for TlsFilesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, .. } => write!(f, "cannot read {}", path.display()),
            Self::Pem { path, expected, .. } => {
                write!(f, "{} holds no PEM {expected}", path.display())
            }
            Self::Key { path, .. } => write!(f, "unusable private key in {}", path.display()),
            Self::Mismatch { cert, key } => write!(
                f,
                "the key in {} does not belong to the certificate in {}",
                key.display(),
                cert.display()
            ),
            Self::Task(_) => f.write_str("the certificate reload task failed"),
        }
    }
}

impl std::error::Error for TlsFilesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Pem {
                source: Some(source),
                ..
            }
            | Self::Key { source, .. }
            | Self::Task(source) => Some(&**source),
            Self::Pem { source: None, .. } | Self::Mismatch { .. } => None,
        }
    }
}

/// Hands every handshake the current pair.
#[derive(Debug)]
struct Resolver(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The TLS side of the listener: the acceptor and the files it follows.
#[derive(Clone)]
pub(crate) struct TlsListener {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Loads the pair; ALPN offers `h2` then `http/1.1`.
    pub(crate) fn new(files: &TlsFiles) -> Result<Self, TlsFilesError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let resolver = Arc::new(Resolver(ArcSwap::from_pointee(load(files, &provider)?)));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            files: files.clone(),
            provider,
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Polls the files' metadata forever; on a change, loads the pair and swaps it in, or
    /// logs why not and keeps the old one.
    pub(crate) async fn follow_files(self) {
        let mut seen = stamp(&self.files);
        let mut ticks = tokio::time::interval(self.files.reload_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = stamp(&self.files);
            if now == seen {
                continue;
            }
            seen = now;
            match self.reload().await {
                Ok(()) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                }
                Err(error) => tracing::error!(
                    error = %error_chain(&error),
                    "TLS certificate not reloaded; keeping the previous one"
                ),
            }
        }
    }

    /// Loads the pair now and swaps it in (the poller and SIGHUP); on an error the old pair
    /// stays.
    pub(crate) async fn reload(&self) -> Result<(), TlsFilesError> {
        let (files, provider) = (self.files.clone(), self.provider.clone());
        let pair = run_blocking(move || load(&files, &provider))
            .await
            .unwrap_or_else(|failed| Err(TlsFilesError::Task(failed.into())))?;
        self.resolver.0.store(Arc::new(pair));
        Ok(())
    }
}

/// What tells a changed file: modification time and length (inode too on unix, for a file
/// replaced by rename).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(files: &TlsFiles) -> [Stamp; 2] {
    let one = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some((meta.modified().ok()?, meta.len(), inode))
    };
    [one(&files.cert), one(&files.key)]
}

/// Reads and checks the pair.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsFilesError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsFilesError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let pem_error = |path: &Path, expected, source: Option<BoxError>| TlsFilesError::Pem {
        path: path.to_owned(),
        expected,
        source,
    };
    let certs = CertificateDer::pem_slice_iter(&read(&files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&files.cert, "certificate", Some(e.into())))?;
    if certs.is_empty() {
        return Err(pem_error(&files.cert, "certificate", None));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| pem_error(&files.key, "private key", Some(e.into())))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsFilesError::Key {
            path: files.key.clone(),
            source: e.into(),
        })?;
    let pair = CertifiedKey::new(certs, key);
    pair.keys_match().map_err(|_| TlsFilesError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?;
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let files = TlsFiles::new(
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&files.cert, made.cert.pem()).unwrap();
        std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
        files
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_good_pair_loads() {
        let dir = temp_dir("good");
        TlsListener::new(&write_pair(&dir, "a")).unwrap();
    }

    #[test]
    fn errors_name_the_file() {
        let dir = temp_dir("bad");
        let files = write_pair(&dir, "a");
        std::fs::write(&files.key, "not a key").unwrap();
        let error = TlsListener::new(&files).unwrap_err();
        assert!(matches!(
            error,
            TlsFilesError::Pem {
                expected: "private key",
                ..
            }
        ));
        assert!(error.to_string().contains("a.key"), "{error}");

        let (a, b) = (write_pair(&dir, "a"), write_pair(&dir, "b"));
        let mixed = TlsFiles::new(a.cert, b.key);
        let error = TlsListener::new(&mixed).unwrap_err();
        assert!(matches!(error, TlsFilesError::Mismatch { .. }), "{error}");

        let missing = TlsFiles::new(dir.join("none.crt"), dir.join("none.key"));
        let error = TlsListener::new(&missing).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cannot read {}", dir.join("none.crt").display())
        );
    }

    #[test]
    fn stamps_change_with_the_files() {
        let dir = temp_dir("stamp");
        let files = write_pair(&dir, "a");
        let before = stamp(&files);
        assert!(before.iter().all(Option::is_some));
        std::fs::write(&files.cert, "different length").unwrap();
        assert_ne!(stamp(&files), before);
    }
}
