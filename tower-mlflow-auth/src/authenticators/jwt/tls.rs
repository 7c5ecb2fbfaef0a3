//! The TLS configuration of `https://` key fetches: rustls with the aws-lc-rs provider, chosen
//! explicitly so that no process-wide default provider is needed.

use std::sync::Arc;

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

use super::JwtBuildError;

/// A client configuration that trusts the certificates in `root_pems` or, when there are
/// none, the Mozilla roots from `webpki-roots`.
pub(super) fn client_config(root_pems: &[Vec<u8>]) -> Result<ClientConfig, JwtBuildError> {
    let roots = if root_pems.is_empty() {
        RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }
    } else {
        custom_roots(root_pems)?
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| JwtBuildError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Every certificate of every PEM as a trust anchor. A PEM without any certificate is an
/// error rather than an empty trust store, which would fail every fetch later.
fn custom_roots(root_pems: &[Vec<u8>]) -> Result<RootCertStore, JwtBuildError> {
    let mut roots = RootCertStore::empty();
    for (pem, text) in root_pems.iter().enumerate() {
        let malformed = JwtBuildError::RootCertificates {
            pem,
            certificate: None,
        };
        let certificates = CertificateDer::pem_slice_iter(text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| malformed.clone())?;
        if certificates.is_empty() {
            return Err(malformed);
        }
        for (index, certificate) in certificates.into_iter().enumerate() {
            roots
                .add(certificate)
                .map_err(|_| JwtBuildError::RootCertificates {
                    pem,
                    certificate: Some(index),
                })?;
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::{JwtBuildError, client_config, custom_roots};

    /// A self-signed P-256 CA (`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
    /// -subj /CN=tower-mlflow-test-ca -days 36500 -nodes`); only its public half is here.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBljCCATugAwIBAgIUJjXQywrcUJPvJ+PEkcvwSnnQSEIwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUdG93ZXItbWxmbG93LXRlc3QtY2EwIBcNMjYxMjAxMDg1MjQ1
WhgPMjEyNjExMDcwODUyNDVaMB8xHTAbBgNVBAMMFHRvd2VyLW1sZmxvdy10ZXN0
LWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEblR21iZ0kAbqVqbTIvDTUKbn
4AnFhXp3ab4EViHI4+p9ominwmuAg1hzww0NgIVESUulRI+C2GBQyT7dE7AaKaNT
MFEwHQYDVR0OBBYEFPxHdZeV1hUwU8N3s3wSkczlS0xgMB8GA1UdIwQYMBaAFPxH
dZeV1hUwU8N3s3wSkczlS0xgMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SQAwRgIhAPl4zyI1CEn3QKkEg48RnqGTkQzwsjaqF2wCGKlN5ThWAiEA+BbzZe6d
yBYHLAtw5Ppp8geVz25leP01T4wRVN7QHdA=
-----END CERTIFICATE-----
";

    #[test]
    fn default_roots_are_the_mozilla_ones() {
        assert!(client_config(&[]).is_ok());
    }

    #[test]
    fn a_ca_certificate_becomes_the_only_root() {
        let roots = custom_roots(&[CA.into()]).unwrap();
        assert_eq!(roots.len(), 1);
        assert!(client_config(&[CA.into(), CA.into()]).is_ok());
    }

    #[test]
    fn unusable_pem_names_the_call_and_the_certificate() {
        let no_certificate = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            custom_roots(&[CA.into(), no_certificate.to_vec()]).unwrap_err(),
            JwtBuildError::RootCertificates {
                pem: 1,
                certificate: None
            }
        );
        assert_eq!(
            custom_roots(&[b"not pem at all".to_vec()]).unwrap_err(),
            JwtBuildError::RootCertificates {
                pem: 0,
                certificate: None
            }
        );
        let garbage_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            custom_roots(&[format!("{CA}{garbage_der}").into_bytes()]).unwrap_err(),
            JwtBuildError::RootCertificates {
                pem: 0,
                certificate: Some(1)
            }
        );
    }
}
