//! OpenID Connect discovery of the JWKS.

use super::*;

#[tokio::test]
async fn discovery_finds_the_jwks() {
    let server = rsa_server();
    let jwt = Jwt::builder()
        .issuer(server.issuer())
        .audience(AUD)
        .build()
        .unwrap();
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_some());
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn discovery_with_another_issuer_is_an_error() {
    let server = rsa_server();
    *server.discovery_issuer.lock().unwrap() = Some("http://127.0.0.1:1".into());
    let jwt = Jwt::builder()
        .issuer(server.issuer())
        .audience(AUD)
        .build()
        .unwrap();
    let err = jwt.refresh().await.unwrap_err();
    assert_eq!(
        err.kind(),
        &JwtErrorKind::IssuerMismatch {
            found: "http://127.0.0.1:1".into()
        }
    );
    assert_eq!(server.hits(), 0);
}
