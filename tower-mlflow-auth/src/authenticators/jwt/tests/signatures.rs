//! Signatures, algorithms and headers: forged or unusable tokens are rejected.

use super::*;

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let good = rs256(&claims(&server));
    let mut c = claims(&server);
    c["sub"] = json!("mallory");
    let forged_payload = B64.encode(serde_json::to_vec(&c).unwrap());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert!(accepts(&jwt, &good).await.is_some());
    assert!(accepts(&jwt, &forged).await.is_none());
}

#[tokio::test]
async fn token_signed_by_another_key_with_a_known_kid_is_rejected() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    assert!(
        accepts(&jwt, &token(rsa_b(), "RS256", "a", &claims(&server)))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    for alg in ["none", "None", "NONE"] {
        let unsigned = encode_unsigned(&json!({"alg": alg, "kid": "a"}), &claims(&server));
        assert!(
            accepts(&jwt, &format!("{unsigned}.")).await.is_none(),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_rejected() {
    let server = JwksServer::start(vec![rsa_a().jwk("a", None), ec_a().jwk("e", None)]);
    let jwt = server.builder().build().unwrap();
    // The classic confusion attack: HMAC keyed with the published key material.
    for (kid, secret) in [
        ("a", rsa_a().jwk("a", None)["n"].clone()),
        ("e", ec_a().jwk("e", None)["x"].clone()),
    ] {
        let secret = B64.decode(secret.as_str().unwrap()).unwrap();
        let message = encode_unsigned(&json!({"alg": "HS256", "kid": kid}), &claims(&server));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
        let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
        let forged = format!("{message}.{}", B64.encode(tag.as_ref()));
        assert!(accepts(&jwt, &forged).await.is_none());
    }
}

#[tokio::test]
async fn oct_keys_in_a_jwks_are_ignored() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let server = JwksServer::start(vec![
        json!({"kty": "oct", "kid": "h", "k": B64.encode(secret), "alg": "HS256"}),
        rsa_a().jwk("a", None),
    ]);
    let jwt = server.builder().build().unwrap();
    let message = encode_unsigned(&json!({"alg": "HS256", "kid": "h"}), &claims(&server));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let forged = format!(
        "{message}.{}",
        B64.encode(aws_lc_rs::hmac::sign(&key, message.as_bytes()).as_ref())
    );
    assert!(accepts(&jwt, &forged).await.is_none());
}

#[tokio::test]
async fn jwk_alg_must_match_the_token_alg() {
    let server = rsa_server(); // the JWK says RS256
    let jwt = server.builder().build().unwrap();
    let ps256 = token(rsa_a(), "PS256", "a", &claims(&server));
    assert!(accepts(&jwt, &ps256).await.is_none());
    // Without `alg` on the JWK, the same PS256 token is fine.
    server.set_keys(vec![rsa_a().jwk("a", None)]);
    let jwt = server.builder().build().unwrap();
    assert!(accepts(&jwt, &ps256).await.is_some());
}

#[tokio::test]
async fn algorithm_outside_the_allow_list_is_rejected() {
    let server = JwksServer::start(vec![rsa_a().jwk("a", None)]);
    let jwt = server
        .builder()
        .algorithms([JwtAlgorithm::RS256])
        .build()
        .unwrap();
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_some());
    assert!(
        accepts(&jwt, &token(rsa_a(), "PS256", "a", &claims(&server)))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn crit_header_is_rejected() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let t = token_with_header(
        rsa_a(),
        &json!({"alg": "RS256", "kid": "a", "crit": ["exp"]}),
        &claims(&server),
    );
    assert!(accepts(&jwt, &t).await.is_none());
}

#[tokio::test]
async fn garbage_and_basic_credentials_are_rejected_without_fetching() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    for garbage in ["abc", "a.b.c", "....", "e30.e30.", ""] {
        assert!(accepts(&jwt, garbage).await.is_none(), "{garbage}");
    }
    let basic = Credentials::Basic {
        username: "alice".into(),
        password: SecretString::from("pw"),
    };
    assert!(jwt.authenticate(basic).await.unwrap().is_none());
    assert_eq!(server.hits(), 0);
    // A well-formed header is worth fetching keys for; the empty signature still fails.
    assert!(accepts(&jwt, "eyJhbGciOiJSUzI1NiJ9..").await.is_none());
}

/// Not a test of speed: prints what one verification costs, for the record.
/// `cargo test --release -p tower-mlflow-auth --features jwt -- --ignored --nocapture verify_cost`
#[tokio::test]
#[ignore = "prints timings; run by hand"]
async fn verify_cost() {
    let server = JwksServer::start(vec![rsa_a().jwk("a", None), ec_a().jwk("e", None)]);
    let jwt = server.builder().build().unwrap();
    for (name, t) in [
        ("RS256", rs256(&claims(&server))),
        ("ES256", token(ec_a(), "ES256", "e", &claims(&server))),
    ] {
        assert!(accepts(&jwt, &t).await.is_some());
        let rounds = 2000;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            assert!(accepts(&jwt, &t).await.is_some());
        }
        println!("{name}: {:?} per authenticate", start.elapsed() / rounds);

        // The bare aws-lc-rs signature check on the same token, for comparison.
        let (message, signature) = t.rsplit_once('.').unwrap();
        let signature = B64.decode(signature).unwrap();
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            let ok = match (name, rsa_a(), ec_a()) {
                ("RS256", TestKey::Rsa(kp), _) => {
                    RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key())
                        .verify(
                            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                            message.as_bytes(),
                            &signature,
                        )
                        .is_ok()
                }
                (_, _, TestKey::Ec(kp)) => aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                    kp.public_key().as_ref(),
                )
                .verify(message.as_bytes(), &signature)
                .is_ok(),
                _ => unreachable!(),
            };
            assert!(ok);
        }
        println!(
            "{name}: {:?} per bare aws-lc-rs verify",
            start.elapsed() / rounds
        );
    }
}
