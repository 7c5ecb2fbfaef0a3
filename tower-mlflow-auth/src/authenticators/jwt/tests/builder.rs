//! What `build()` refuses and accepts.

use super::*;

fn config_error(builder: JwtBuilder) -> JwtBuildError {
    builder.build().unwrap_err()
}

#[test]
fn builder_refuses_unsafe_or_incomplete_configurations() {
    let base = || {
        Jwt::builder()
            .issuer("http://127.0.0.1:9/realm")
            .audience(AUD)
    };
    assert_eq!(
        config_error(Jwt::builder().audience(AUD)),
        JwtBuildError::MissingIssuer
    );
    assert_eq!(
        config_error(Jwt::builder().issuer("http://127.0.0.1:9")),
        JwtBuildError::MissingAudience
    );
    assert_eq!(
        config_error(base().any_audience()),
        JwtBuildError::ConflictingAudience
    );
    assert_eq!(
        config_error(Jwt::builder().any_issuer().audience(AUD)),
        JwtBuildError::MissingKeySource
    );
    assert_eq!(
        config_error(base().algorithms([JwtAlgorithm::RS256, JwtAlgorithm::HS256])),
        JwtBuildError::SymmetricAlgorithm(JwtAlgorithm::HS256)
    );
    assert_eq!(
        config_error(base().algorithms([])),
        JwtBuildError::NoAlgorithms
    );
    assert_eq!(
        config_error(base().timeout(Duration::ZERO)),
        JwtBuildError::ZeroTimeout
    );
    assert_eq!(
        config_error(base().jwks_uri("http://idp.example.com/jwks")),
        JwtBuildError::Url {
            setting: "jwks_uri",
            problem: JwtErrorKind::InsecureUrl
        }
    );
    assert_eq!(
        config_error(base().jwks_uri("ftp://127.0.0.1/jwks")),
        JwtBuildError::Url {
            setting: "jwks_uri",
            problem: JwtErrorKind::InvalidUrl
        }
    );
    assert_eq!(
        config_error(base().jwks_uri("http://user:pw@127.0.0.1/jwks")),
        JwtBuildError::Url {
            setting: "jwks_uri",
            problem: JwtErrorKind::InvalidUrl
        }
    );
    assert!(
        base()
            .jwks_uri("http://idp.example.com/jwks")
            .allow_insecure_http()
            .build()
            .is_ok()
    );
    assert!(base().jwks_uri("http://[::1]:8080/jwks").build().is_ok());
    assert!(
        base()
            .jwks_uri("http://localhost:8080/jwks")
            .build()
            .is_ok()
    );
}

#[cfg(not(feature = "jwt-tls"))]
#[test]
fn https_needs_the_tls_feature() {
    let err = config_error(
        Jwt::builder()
            .issuer("https://idp.example.com")
            .audience(AUD),
    );
    assert_eq!(
        err,
        JwtBuildError::Url {
            setting: "issuer",
            problem: JwtErrorKind::HttpsUnsupported
        }
    );
    assert!(err.to_string().contains("jwt-tls"));
}

#[cfg(feature = "jwt-tls")]
#[test]
fn https_is_accepted_with_the_tls_feature() {
    assert!(
        Jwt::builder()
            .issuer("https://idp.example.com")
            .audience(AUD)
            .build()
            .is_ok()
    );
}

/// A self-signed P-256 CA (`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
/// -subj /CN=tower-mlflow-test-ca -days 36500 -nodes`); only its public half is here.
#[cfg(feature = "jwt-tls")]
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

/// `https` to an issuer, trusting these PEMs.
#[cfg(feature = "jwt-tls")]
fn with_roots(pems: &[&[u8]]) -> Result<Jwt, JwtBuildError> {
    pems.iter()
        .fold(
            Jwt::builder()
                .issuer("https://idp.example.com")
                .audience(AUD),
            |builder, pem| builder.root_certificates_pem(pem.to_vec()),
        )
        .build()
}

#[cfg(feature = "jwt-tls")]
#[test]
fn default_roots_are_the_mozilla_ones() {
    assert!(with_roots(&[]).is_ok());
}

#[cfg(feature = "jwt-tls")]
#[test]
fn ca_certificates_are_accepted_as_roots() {
    assert!(with_roots(&[CA.as_bytes()]).is_ok());
    assert!(with_roots(&[CA.as_bytes(), CA.as_bytes()]).is_ok());
}

#[cfg(feature = "jwt-tls")]
#[test]
fn unusable_pem_names_the_call_and_the_certificate() {
    let no_certificate = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert_eq!(
        with_roots(&[CA.as_bytes(), no_certificate]).unwrap_err(),
        JwtBuildError::RootCertificates {
            pem: 1,
            certificate: None
        }
    );
    assert_eq!(
        with_roots(&[b"not pem at all"]).unwrap_err(),
        JwtBuildError::RootCertificates {
            pem: 0,
            certificate: None
        }
    );
    let garbage_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_eq!(
        with_roots(&[format!("{CA}{garbage_der}").as_bytes()]).unwrap_err(),
        JwtBuildError::RootCertificates {
            pem: 0,
            certificate: Some(1)
        }
    );
}

#[test]
fn challenge_is_bearer() {
    let jwt = Jwt::builder()
        .issuer("http://127.0.0.1:9")
        .audience(AUD)
        .build()
        .unwrap();
    assert_eq!(jwt.challenges(), &[Challenge::BEARER]);
    assert!(format!("{jwt:?}").contains("Discovery"));
}
