//! The rustls client configuration (feature `http-client-tls`): aws-lc-rs, explicit trust
//! anchors, optional client certificate.

use std::{fmt, sync::Arc};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use zeroize::Zeroizing;

use super::HttpClientBuildError;

/// Trust anchors and client identity, as given to the builder.
#[derive(Clone)]
pub(super) struct TlsSettings {
    /// Whether the webpki (Mozilla) public roots are trusted.
    pub(super) public_roots: bool,
    /// PEM bundles whose certificates are trusted as well.
    pub(super) ca_pems: Vec<Vec<u8>>,
    /// PEM certificate chain and private key for mutual TLS.
    pub(super) client_pem: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            public_roots: true,
            ca_pems: Vec::new(),
            client_pem: None,
        }
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("public_roots", &self.public_roots)
            .field("ca_pems", &self.ca_pems.len())
            .field("client_cert", &self.client_pem.is_some())
            .finish()
    }
}

impl TlsSettings {
    /// `http` wrapped in TLS for `https` URIs; `http` URIs pass through it.
    pub(super) fn connector(
        &self,
        mut http: HttpConnector,
    ) -> Result<HttpsConnector<HttpConnector>, HttpClientBuildError> {
        let config = self.client_config()?;
        // The TLS connector hands `https` URIs to this one, which refuses them by default.
        http.enforce_http(false);
        Ok(HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http))
    }

    fn client_config(&self) -> Result<ClientConfig, HttpClientBuildError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| HttpClientBuildError::Tls)?
            .with_root_certificates(self.roots()?);
        match &self.client_pem {
            None => Ok(builder.with_no_client_auth()),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| HttpClientBuildError::InvalidClientCert)?;
                if chain.is_empty() {
                    return Err(HttpClientBuildError::InvalidClientCert);
                }
                let key = PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|_| HttpClientBuildError::InvalidClientCert)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|_| HttpClientBuildError::InvalidClientCert)
            }
        }
    }

    fn roots(&self) -> Result<RootCertStore, HttpClientBuildError> {
        let mut roots = RootCertStore::empty();
        if self.public_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for (bundle, pem) in self.ca_pems.iter().enumerate() {
            // A bundle without a certificate is an error rather than nothing trusted, which
            // would fail every request later.
            let malformed = HttpClientBuildError::InvalidCa {
                bundle,
                certificate: None,
            };
            let certificates = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| malformed.clone())?;
            if certificates.is_empty() {
                return Err(malformed);
            }
            for (index, certificate) in certificates.into_iter().enumerate() {
                roots
                    .add(certificate)
                    .map_err(|_| HttpClientBuildError::InvalidCa {
                        bundle,
                        certificate: Some(index),
                    })?;
            }
        }
        if roots.is_empty() {
            return Err(HttpClientBuildError::NoTrustAnchors);
        }
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem().into_bytes()
    }

    fn settings(public_roots: bool, ca_pems: Vec<Vec<u8>>) -> TlsSettings {
        TlsSettings {
            public_roots,
            ca_pems,
            client_pem: None,
        }
    }

    #[test]
    fn public_roots_by_default() {
        let roots = TlsSettings::default().roots().unwrap();
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
    }

    #[test]
    fn extra_ca_is_added_to_the_public_roots() {
        let roots = settings(true, vec![ca_pem()]).roots().unwrap();
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len() + 1);
    }

    #[test]
    fn ca_alone_replaces_the_public_roots() {
        let roots = settings(false, vec![ca_pem(), ca_pem()]).roots().unwrap();
        assert_eq!(roots.len(), 2);
    }

    #[test]
    fn bad_or_empty_ca_is_rejected() {
        for pem in [b"not a pem".to_vec(), Vec::new()] {
            let err = settings(true, vec![pem]).client_config().err();
            assert_eq!(
                err,
                Some(HttpClientBuildError::InvalidCa {
                    bundle: 0,
                    certificate: None
                })
            );
        }
        let err = settings(false, Vec::new()).client_config().err();
        assert_eq!(err, Some(HttpClientBuildError::NoTrustAnchors));
    }

    #[test]
    fn unusable_bundle_is_named_with_its_certificate() {
        let invalid = |bundle, certificate| HttpClientBuildError::InvalidCa {
            bundle,
            certificate,
        };
        let no_certificate = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            settings(false, vec![ca_pem(), no_certificate.to_vec()])
                .roots()
                .unwrap_err(),
            invalid(1, None)
        );
        // Well-formed PEM whose DER is not a certificate.
        let garbage_der = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let bundle = [ca_pem(), garbage_der.to_vec()].concat();
        assert_eq!(
            settings(false, vec![ca_pem(), bundle]).roots().unwrap_err(),
            invalid(1, Some(1))
        );
        let one = settings(false, vec![ca_pem()]).roots().unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn connector_builds_from_the_settings() {
        assert!(
            TlsSettings::default()
                .connector(HttpConnector::new())
                .is_ok()
        );
        assert!(
            settings(false, Vec::new())
                .connector(HttpConnector::new())
                .is_err()
        );
    }

    #[test]
    fn client_certificate_must_match_its_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let good = TlsSettings {
            client_pem: Some((
                cert.pem().into_bytes(),
                Zeroizing::new(key.serialize_pem().into_bytes()),
            )),
            ..TlsSettings::default()
        };
        assert!(good.client_config().is_ok());
        let other_key = rcgen::KeyPair::generate().unwrap();
        let mismatched = TlsSettings {
            client_pem: Some((
                cert.pem().into_bytes(),
                Zeroizing::new(other_key.serialize_pem().into_bytes()),
            )),
            ..TlsSettings::default()
        };
        assert_eq!(
            mismatched.client_config().err(),
            Some(HttpClientBuildError::InvalidClientCert)
        );
        let no_chain = TlsSettings {
            client_pem: Some((Vec::new(), Zeroizing::new(key.serialize_pem().into_bytes()))),
            ..TlsSettings::default()
        };
        assert_eq!(
            no_chain.client_config().err(),
            Some(HttpClientBuildError::InvalidClientCert)
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let tls = TlsSettings {
            client_pem: Some((b"CERT".to_vec(), Zeroizing::new(b"PRIVATE-KEY".to_vec()))),
            ..TlsSettings::default()
        };
        let text = format!("{tls:?}");
        assert!(
            !text.contains("PRIVATE") && !text.contains("CERT"),
            "{text}"
        );
    }
}
