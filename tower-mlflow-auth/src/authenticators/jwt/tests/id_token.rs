//! `Jwt::verify_id_token`: the bearer checks plus `nonce`, `azp`, `iat`, and no caching;
//! `Jwt::verify_refreshed_id_token`: the same with the session's `sub` and an optional nonce.

use super::*;
use crate::authenticators::{IdTokenError, jwt::IdTokenClaims};

const NONCE: &str = "n-0S6_WzA2Mj";

fn id_claims(server: &JwksServer) -> Value {
    let mut c = claims(server);
    c["nonce"] = json!(NONCE);
    c["email_verified"] = json!(true);
    c["name"] = json!("Alice A.");
    c
}

async fn verify(server: &JwksServer, claims: &Value) -> Result<IdTokenClaims, IdTokenError> {
    let jwt = server.builder().build().unwrap();
    jwt.verify_id_token(&rs256(claims), NONCE).await
}

/// Why `jwt` refuses an ID token that is valid for `server`.
async fn refused(jwt: &Jwt, server: &JwksServer) -> IdTokenError {
    let token = rs256(&id_claims(server));
    jwt.verify_id_token(&token, NONCE).await.unwrap_err()
}

#[tokio::test]
async fn valid_id_token_gives_its_claims() {
    let server = rsa_server();
    let got = verify(&server, &id_claims(&server)).await.unwrap();
    assert_eq!(got.subject(), "alice");
    assert_eq!(got.email(), Some("alice@example.com"));
    assert!(got.email_verified());
    assert_eq!(got.name(), Some("Alice A."));
    assert_eq!(
        got.string_list_claim(&"groups".into()),
        ["users", "mlflow-admins"]
    );
    assert_eq!(got.string_claim(&"email".into()), Some("alice@example.com"));
    assert!(got.expires_at().unwrap() > SystemTime::now());
}

#[tokio::test]
async fn wrong_or_missing_nonce_is_refused() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let token = rs256(&id_claims(&server));
    assert_eq!(
        jwt.verify_id_token(&token, "other").await.unwrap_err(),
        IdTokenError::Nonce
    );
    assert_eq!(
        jwt.verify_id_token(&token, "").await.unwrap_err(),
        IdTokenError::Nonce
    );
    let mut c = id_claims(&server);
    c.as_object_mut().unwrap().remove("nonce");
    let err = verify(&server, &c).await.unwrap_err();
    assert_eq!(err, IdTokenError::MissingClaim("nonce".into()));
}

#[tokio::test]
async fn wrong_aud_iss_azp_and_expired_are_refused() {
    let server = rsa_server();
    let mut c = id_claims(&server);
    c["aud"] = json!("another-client");
    assert_eq!(
        verify(&server, &c).await.unwrap_err(),
        IdTokenError::Audience
    );
    let mut c = id_claims(&server);
    c["iss"] = json!("http://elsewhere");
    assert_eq!(verify(&server, &c).await.unwrap_err(), IdTokenError::Issuer);
    let mut c = id_claims(&server);
    c["exp"] = json!(now() - 3600);
    assert_eq!(
        verify(&server, &c).await.unwrap_err(),
        IdTokenError::Expired
    );
    let mut c = id_claims(&server);
    c["aud"] = json!([AUD, "another-client"]);
    assert_eq!(
        verify(&server, &c).await.unwrap_err(),
        IdTokenError::AuthorizedParty
    );
    c["azp"] = json!(AUD);
    assert!(verify(&server, &c).await.is_ok());
    let mut c = id_claims(&server);
    c["iat"] = json!(now() + 3600);
    assert_eq!(
        verify(&server, &c).await.unwrap_err(),
        IdTokenError::IssuedAt
    );
    c.as_object_mut().unwrap().remove("iat");
    assert_eq!(
        verify(&server, &c).await.unwrap_err(),
        IdTokenError::MissingClaim("iat".into())
    );
}

#[tokio::test]
async fn another_key_or_unknown_kid_is_refused() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let forged = token(rsa_b(), "RS256", "a", &id_claims(&server));
    assert_eq!(
        jwt.verify_id_token(&forged, NONCE).await.unwrap_err(),
        IdTokenError::Signature
    );
    let unknown = token(rsa_b(), "RS256", "b", &id_claims(&server));
    assert_eq!(
        jwt.verify_id_token(&unknown, NONCE).await.unwrap_err(),
        IdTokenError::UnknownKey
    );
    assert_eq!(
        jwt.verify_id_token("not.a.jwt", NONCE).await.unwrap_err(),
        IdTokenError::Malformed
    );
}

#[tokio::test]
async fn id_tokens_are_never_cached() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let token = rs256(&id_claims(&server));
    jwt.verify_id_token(&token, NONCE).await.unwrap();
    jwt.verify_id_token(&token, NONCE).await.unwrap();
    assert!(jwt.try_accept_now(&bearer(&token).borrowed()).is_none());
    assert_eq!(jwt.checks.signature_checks.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn any_audience_cannot_verify_id_tokens() {
    let server = rsa_server();
    let err = refused(&server.any_audience(), &server).await;
    assert_eq!(err, IdTokenError::Unconfigured);
}

#[tokio::test]
async fn unreachable_keys_are_a_keys_error() {
    let server = rsa_server();
    server.fail_with(500);
    let jwt = server
        .builder()
        .retry_interval(Duration::ZERO)
        .build()
        .unwrap();
    let err = refused(&jwt, &server).await;
    assert!(matches!(err, IdTokenError::Keys(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}

async fn verify_refreshed(
    server: &JwksServer,
    claims: &Value,
    subject: &str,
    original_nonce: &str,
) -> Result<IdTokenClaims, IdTokenError> {
    let jwt = server.builder().build().unwrap();
    jwt.verify_refreshed_id_token(&rs256(claims), subject, original_nonce)
        .await
}

#[tokio::test]
async fn refreshed_id_token_with_or_without_the_nonce_gives_its_claims() {
    let server = rsa_server();
    let with_nonce = verify_refreshed(&server, &id_claims(&server), "alice", NONCE)
        .await
        .unwrap();
    assert_eq!(with_nonce.subject(), "alice");
    assert_eq!(with_nonce.email(), Some("alice@example.com"));
    let mut c = id_claims(&server);
    c.as_object_mut().unwrap().remove("nonce");
    let without = verify_refreshed(&server, &c, "alice", NONCE).await.unwrap();
    assert_eq!(
        without.string_list_claim(&"groups".into()),
        ["users", "mlflow-admins"]
    );
}

#[tokio::test]
async fn refreshed_id_token_for_another_subject_is_refused_without_naming_it() {
    let server = rsa_server();
    let err = verify_refreshed(&server, &id_claims(&server), "mallory", NONCE)
        .await
        .unwrap_err();
    assert_eq!(err, IdTokenError::SubjectChanged);
    let text = err.to_string();
    assert!(text.contains("`sub`"), "{text}");
    assert!(
        !text.contains("alice") && !text.contains("mallory"),
        "{text}"
    );
    // The comparison is exact: no case folding, no prefix match.
    for subject in ["Alice", "alic", "alice ", ""] {
        let err = verify_refreshed(&server, &id_claims(&server), subject, NONCE).await;
        assert_eq!(
            err.unwrap_err(),
            IdTokenError::SubjectChanged,
            "{subject:?}"
        );
    }
}

#[tokio::test]
async fn refreshed_id_token_with_another_nonce_is_refused() {
    let server = rsa_server();
    let c = id_claims(&server);
    for original in ["other", ""] {
        let err = verify_refreshed(&server, &c, "alice", original).await;
        assert_eq!(err.unwrap_err(), IdTokenError::Nonce, "{original:?}");
    }
    let mut c = id_claims(&server);
    c["nonce"] = json!(42);
    let err = verify_refreshed(&server, &c, "alice", NONCE).await;
    assert_eq!(err.unwrap_err(), IdTokenError::MissingClaim("nonce".into()));
}

#[tokio::test]
async fn refreshed_id_token_gets_every_other_id_token_check() {
    let server = rsa_server();
    let mut expired = id_claims(&server);
    expired["exp"] = json!(now() - 3600);
    let mut foreign = id_claims(&server);
    foreign["aud"] = json!("another-client");
    let mut no_iat = id_claims(&server);
    no_iat.as_object_mut().unwrap().remove("iat");
    let mut no_sub = id_claims(&server);
    no_sub.as_object_mut().unwrap().remove("sub");
    for (claims, want) in [
        (expired, IdTokenError::Expired),
        (foreign, IdTokenError::Audience),
        (no_iat, IdTokenError::MissingClaim("iat".into())),
        (no_sub, IdTokenError::Subject),
    ] {
        let err = verify_refreshed(&server, &claims, "alice", NONCE).await;
        assert_eq!(err.unwrap_err(), want);
    }
    let jwt = server.builder().build().unwrap();
    let forged = token(rsa_b(), "RS256", "a", &id_claims(&server));
    let err = jwt.verify_refreshed_id_token(&forged, "alice", NONCE).await;
    assert_eq!(err.unwrap_err(), IdTokenError::Signature);
    let err = server
        .any_audience()
        .verify_refreshed_id_token(&rs256(&id_claims(&server)), "alice", NONCE)
        .await;
    assert_eq!(err.unwrap_err(), IdTokenError::Unconfigured);
}
