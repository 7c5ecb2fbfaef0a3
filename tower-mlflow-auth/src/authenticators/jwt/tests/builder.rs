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
