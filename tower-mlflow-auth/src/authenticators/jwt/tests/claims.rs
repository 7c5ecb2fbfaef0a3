//! Accepted tokens, the principal made from their claims, and `exp`/`nbf`/`iss`/`aud`.

use super::*;

#[tokio::test]
async fn valid_rs256_token_maps_subject_admin_and_attributes() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .admin_if_claim("groups", "mlflow-admins")
        .copy_claim("email")
        .copy_claim_as("groups", "groups")
        .build()
        .unwrap();
    let who = accepts(&jwt, &rs256(&claims(&server))).await.unwrap();
    assert_eq!(who.subject(), "alice");
    assert_eq!(who.scheme(), Scheme::Bearer);
    assert!(who.is_admin());
    assert_eq!(who.attribute("email"), Some("alice@example.com"));
    assert_eq!(who.attribute("groups"), Some("users,mlflow-admins"));
}

#[tokio::test]
async fn admin_needs_a_matching_rule() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .admin_if_claim("role", "admin")
        .build()
        .unwrap();
    let who = accepts(&jwt, &rs256(&claims(&server))).await.unwrap();
    assert!(!who.is_admin());

    let mut c = claims(&server);
    c["role"] = json!("admin");
    assert!(accepts(&jwt, &rs256(&c)).await.unwrap().is_admin());
}

#[tokio::test]
async fn admin_from_scope_and_nested_claims() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .admin_if_scope("mlflow:admin")
        .admin_if_claim(ClaimPath::nested(["realm_access", "roles"]), "boss")
        .build()
        .unwrap();
    let mut c = claims(&server);
    c["scope"] = json!("read mlflow:admin");
    assert!(accepts(&jwt, &rs256(&c)).await.unwrap().is_admin());
    let mut c = claims(&server);
    c["scope"] = json!("read mlflow:administrator");
    assert!(!accepts(&jwt, &rs256(&c)).await.unwrap().is_admin());
    let mut c = claims(&server);
    c["realm_access"] = json!({"roles": ["boss"]});
    assert!(accepts(&jwt, &rs256(&c)).await.unwrap().is_admin());
}

#[tokio::test]
async fn subject_claim_is_configurable_and_required() {
    let server = rsa_server();
    let jwt = server.builder().subject_claim("client_id").build().unwrap();
    let mut c = claims(&server);
    assert!(accepts(&jwt, &rs256(&c)).await.is_none());
    c["client_id"] = json!("ci-bot");
    let who = accepts(&jwt, &rs256(&c)).await.unwrap();
    assert_eq!(who.subject(), "ci-bot");
    c["client_id"] = json!("");
    assert!(accepts(&jwt, &rs256(&c)).await.is_none());
}

#[tokio::test]
async fn valid_es256_token_is_accepted() {
    let server = JwksServer::start(vec![ec_a().jwk("e", None)]);
    let jwt = server.builder().build().unwrap();
    let who = accepts(&jwt, &token(ec_a(), "ES256", "e", &claims(&server))).await;
    assert_eq!(who.unwrap().subject(), "alice");
}

#[tokio::test]
async fn token_without_kid_is_tried_against_fitting_keys() {
    let server = JwksServer::start(vec![ec_a().jwk("e", None), rsa_a().jwk("a", None)]);
    let jwt = server.builder().build().unwrap();
    let t = token_with_header(rsa_a(), &json!({"alg": "RS256"}), &claims(&server));
    assert!(accepts(&jwt, &t).await.is_some());
}

#[tokio::test]
async fn audience_list_and_array_aud_claim() {
    let server = rsa_server();
    let jwt = server.builder().audience("other").build().unwrap();
    let mut c = claims(&server);
    c["aud"] = json!(["unrelated", "other"]);
    assert!(accepts(&jwt, &rs256(&c)).await.is_some());
}

#[tokio::test]
async fn any_audience_accepts_tokens_with_and_without_aud() {
    let server = rsa_server();
    let jwt = server.any_audience();
    let mut c = claims(&server);
    c["aud"] = json!("someone-else");
    assert!(accepts(&jwt, &rs256(&c)).await.is_some());
    c.as_object_mut().unwrap().remove("aud");
    assert!(accepts(&jwt, &rs256(&c)).await.is_some());
}

async fn rejected_with(edit: impl FnOnce(&mut Value)) -> bool {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    // The unedited token is accepted, so a rejection below is down to the edit.
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_some());
    let mut c = claims(&server);
    edit(&mut c);
    accepts(&jwt, &rs256(&c)).await.is_none()
}

#[tokio::test]
async fn expired_token_is_rejected() {
    assert!(rejected_with(|c| c["exp"] = json!(now() - 120)).await);
}

#[tokio::test]
async fn expiry_within_leeway_is_accepted() {
    assert!(!rejected_with(|c| c["exp"] = json!(now() - 10)).await);
}

#[tokio::test]
async fn missing_exp_is_rejected() {
    assert!(rejected_with(|c| drop(c.as_object_mut().unwrap().remove("exp"))).await);
}

#[tokio::test]
async fn not_yet_valid_token_is_rejected() {
    assert!(rejected_with(|c| c["nbf"] = json!(now() + 600)).await);
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    assert!(rejected_with(|c| c["aud"] = json!("urn:other")).await);
}

#[tokio::test]
async fn missing_audience_is_rejected() {
    assert!(rejected_with(|c| drop(c.as_object_mut().unwrap().remove("aud"))).await);
}

#[tokio::test]
async fn wrong_issuer_is_rejected() {
    assert!(rejected_with(|c| c["iss"] = json!("http://evil.example")).await);
}

#[tokio::test]
async fn missing_issuer_is_rejected() {
    assert!(rejected_with(|c| drop(c.as_object_mut().unwrap().remove("iss"))).await);
}
