//! The verified-token cache: hits skip the signature check, expiry by `exp` and by the time
//! to live, failures never kept, the bound, and tokens dropped with their key.

use crate::authenticator::{RevocationListener, Revoked};

use super::*;

fn signature_checks(jwt: &Jwt) -> usize {
    jwt.checks.signature_checks.load(Ordering::SeqCst)
}

fn cached_tokens(jwt: &Jwt) -> u64 {
    jwt.keys.tokens().map_or(0, |tokens| tokens.len())
}

fn subject_now(jwt: &Jwt, token: &str) -> Option<String> {
    jwt.try_accept_now(&bearer(token).borrowed())
        .map(|who| who.subject().to_owned())
}

/// Claims for `subject`, expiring `exp_in` seconds from now.
fn claims_for(server: &JwksServer, subject: &str, exp_in: u64) -> Value {
    let mut c = claims(server);
    c["sub"] = json!(subject);
    c["exp"] = json!(now() + exp_in);
    c
}

/// Builds, fetches the keys on the real clock (on a paused one the fetch's timeout would
/// fire at once), then pauses tokio's clock, which the cache's time to live counts on.
async fn paused(builder: JwtBuilder) -> Jwt {
    let jwt = builder.build().unwrap();
    jwt.refresh().await.unwrap();
    tokio::time::pause();
    jwt
}

#[tokio::test]
async fn a_repeated_token_is_answered_without_a_signature_check() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .admin_if_claim("groups", "mlflow-admins")
        .copy_claim("email")
        .build()
        .unwrap();
    let t = rs256(&claims(&server));
    assert_eq!(
        jwt.try_accept_now(&bearer(&t).borrowed()),
        None,
        "nothing cached yet"
    );
    let first = accepts(&jwt, &t).await.unwrap();
    assert_eq!(signature_checks(&jwt), 1);

    let now = jwt.try_accept_now(&bearer(&t).borrowed()).unwrap();
    let again = accepts(&jwt, &t).await.unwrap();
    assert_eq!(
        now, first,
        "the same principal: subject, admin flag, attributes"
    );
    assert_eq!(again, first);
    assert!(now.is_admin() && now.attribute("email") == Some("alice@example.com"));
    assert_eq!(signature_checks(&jwt), 1, "hits check no signature");
    assert_eq!(server.hits(), 1);
    assert_eq!(cached_tokens(&jwt), 1);
}

#[tokio::test]
async fn different_tokens_are_different_entries() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let alice = rs256(&claims_for(&server, "alice", 300));
    let bob = rs256(&claims_for(&server, "bob", 300));
    assert!(accepts(&jwt, &alice).await.is_some());
    assert!(accepts(&jwt, &bob).await.is_some());
    assert_eq!(cached_tokens(&jwt), 2);
    assert_eq!(subject_now(&jwt, &alice).as_deref(), Some("alice"));
    assert_eq!(subject_now(&jwt, &bob).as_deref(), Some("bob"));
    // Not a JWT at all, and another scheme: no entry, no answer.
    assert_eq!(subject_now(&jwt, "not-a-jwt"), None);
    let basic = Credentials::Basic {
        username: "alice".into(),
        password: alice.clone().into(),
    };
    assert_eq!(jwt.try_accept_now(&basic.borrowed()), None);
    assert!(!jwt.accepts(&basic.borrowed()) && jwt.accepts(&bearer(&alice).borrowed()));
    assert_eq!(signature_checks(&jwt), 2);
}

#[tokio::test]
async fn an_exp_sooner_than_the_ttl_ends_the_entry() {
    let server = rsa_server();
    let jwt = paused(
        server
            .builder()
            .leeway(Duration::ZERO)
            .cache_ttl(Duration::from_secs(60)),
    )
    .await;
    let t = rs256(&claims_for(&server, "alice", 5));
    assert!(accepts(&jwt, &t).await.is_some());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(jwt.try_accept_now(&bearer(&t).borrowed()).is_some());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(
        jwt.try_accept_now(&bearer(&t).borrowed()),
        None,
        "past exp on the cache's clock"
    );
    assert_eq!(signature_checks(&jwt), 1);
}

#[tokio::test]
async fn the_ttl_ends_the_entry() {
    let server = rsa_server();
    let jwt = paused(server.builder().cache_ttl(Duration::from_secs(30))).await;
    let t = rs256(&claims_for(&server, "alice", 3600));
    assert!(accepts(&jwt, &t).await.is_some());
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(jwt.try_accept_now(&bearer(&t).borrowed()).is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(jwt.try_accept_now(&bearer(&t).borrowed()), None);
    // The token itself is still valid: checked again, and cached again.
    assert!(accepts(&jwt, &t).await.is_some());
    assert_eq!(signature_checks(&jwt), 2);
    assert!(jwt.try_accept_now(&bearer(&t).borrowed()).is_some());
}

#[tokio::test]
async fn an_expired_token_is_refused_even_when_cached() {
    let server = rsa_server();
    let jwt = server.builder().leeway(Duration::ZERO).build().unwrap();
    let exp = now() + 1;
    let mut c = claims(&server);
    c["exp"] = json!(exp);
    let t = rs256(&c);
    assert!(accepts(&jwt, &t).await.is_some());
    assert!(
        jwt.try_accept_now(&bearer(&t).borrowed()).is_some(),
        "cached"
    );
    // Real time, far within the cache's time to live (60 s): only `exp` can end the entry.
    while now() <= exp {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cached_tokens(&jwt), 1, "still cached");
    assert_eq!(jwt.try_accept_now(&bearer(&t).borrowed()), None);
    assert!(accepts(&jwt, &t).await.is_none());
    assert_eq!(
        signature_checks(&jwt),
        2,
        "refused by a full check, not kept"
    );
}

#[tokio::test]
async fn the_entry_ends_at_exp_plus_the_leeway_on_the_cache_clock() {
    let server = rsa_server();
    let jwt = paused(server.builder().leeway(Duration::from_secs(10))).await;
    // Already past `exp`, but within the leeway: admitted for the rest of it, at most 5 s.
    let mut c = claims(&server);
    c["exp"] = json!(now() - 5);
    let t = rs256(&c);
    assert!(accepts(&jwt, &t).await.is_some());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(jwt.try_accept_now(&bearer(&t).borrowed()).is_some());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(
        jwt.try_accept_now(&bearer(&t).borrowed()),
        None,
        "exp + leeway passed"
    );
    assert_eq!(signature_checks(&jwt), 1);
}

#[tokio::test]
async fn a_token_within_the_nbf_leeway_is_cached_and_answered() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .leeway(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut c = claims(&server);
    c["nbf"] = json!(now() + 30);
    let t = rs256(&c);
    assert!(accepts(&jwt, &t).await.is_some());
    assert!(jwt.try_accept_now(&bearer(&t).borrowed()).is_some());
    assert_eq!(signature_checks(&jwt), 1);
    // Beyond the leeway: refused, and so never cached.
    c["nbf"] = json!(now() + 600);
    let early = rs256(&c);
    assert!(accepts(&jwt, &early).await.is_none());
    assert_eq!(jwt.try_accept_now(&bearer(&early).borrowed()), None);
    assert_eq!(cached_tokens(&jwt), 1);
}

#[tokio::test]
async fn failures_are_never_cached() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let other_key = token(rsa_b(), "RS256", "a", &claims(&server));
    let mut wrong_aud = claims(&server);
    wrong_aud["aud"] = json!("urn:other");
    let mut wrong_iss = claims(&server);
    wrong_iss["iss"] = json!("http://127.0.0.1:1");
    let mut expired = claims(&server);
    expired["exp"] = json!(now() - 3600);
    let rejected = [
        other_key,
        rs256(&wrong_aud),
        rs256(&wrong_iss),
        rs256(&expired),
    ];
    for (i, t) in rejected.iter().enumerate() {
        for round in 1..=2 {
            assert!(accepts(&jwt, t).await.is_none(), "token {i}");
            assert_eq!(jwt.try_accept_now(&bearer(t).borrowed()), None, "token {i}");
            assert_eq!(
                signature_checks(&jwt),
                2 * i + round,
                "token {i}: checked again"
            );
        }
    }
    assert_eq!(cached_tokens(&jwt), 0);
}

#[tokio::test]
async fn the_bound_is_kept_dropping_expired_tokens_first() {
    let server = rsa_server();
    let jwt = paused(
        server
            .builder()
            .leeway(Duration::ZERO)
            .cache_ttl(Duration::from_secs(3600))
            .max_cached_tokens(3),
    )
    .await;
    let short = ["a", "b"].map(|sub| rs256(&claims_for(&server, sub, 10)));
    let long = rs256(&claims_for(&server, "long", 1000));
    for t in short.iter().chain([&long]) {
        assert!(accepts(&jwt, t).await.is_some());
    }
    assert_eq!(cached_tokens(&jwt), 3);
    tokio::time::advance(Duration::from_secs(11)).await;
    let next = rs256(&claims_for(&server, "next", 1000));
    assert!(accepts(&jwt, &next).await.is_some());
    assert_eq!(
        cached_tokens(&jwt),
        2,
        "both expired tokens went, no live one"
    );
    assert_eq!(subject_now(&jwt, &long).as_deref(), Some("long"));
    assert_eq!(subject_now(&jwt, &next).as_deref(), Some("next"));
}

#[tokio::test]
async fn a_cache_full_of_live_tokens_frees_an_eighth_at_once() {
    let server = rsa_server();
    let jwt = server.builder().max_cached_tokens(16).build().unwrap();
    let tokens: Vec<String> = (0..17)
        .map(|i| rs256(&claims_for(&server, &format!("user-{i}"), 300)))
        .collect();
    for t in &tokens[..16] {
        assert!(accepts(&jwt, t).await.is_some());
    }
    assert_eq!(cached_tokens(&jwt), 16);
    assert!(accepts(&jwt, &tokens[16]).await.is_some());
    assert_eq!(cached_tokens(&jwt), 15, "two evicted, the new one kept");
    assert_eq!(subject_now(&jwt, &tokens[16]).as_deref(), Some("user-16"));
    let answered = tokens
        .iter()
        .filter(|t| subject_now(&jwt, t).is_some())
        .count();
    assert_eq!(answered, 15);
}

#[tokio::test]
async fn max_cached_tokens_zero_turns_the_cache_off() {
    let server = rsa_server();
    let jwt = server.builder().max_cached_tokens(0).build().unwrap();
    let t = rs256(&claims(&server));
    for round in 1..=2 {
        assert!(accepts(&jwt, &t).await.is_some());
        assert_eq!(signature_checks(&jwt), round);
    }
    assert_eq!(jwt.try_accept_now(&bearer(&t).borrowed()), None);
    assert!(jwt.keys.tokens().is_none());
    assert!(format!("{jwt:?}").contains("cached_tokens: None"));
}

#[tokio::test]
async fn a_key_dropped_from_the_jwks_drops_its_tokens_and_revokes_above() {
    let server = JwksServer::start(vec![
        rsa_a().jwk("a", Some("RS256")),
        rsa_b().jwk("b", Some("RS256")),
    ]);
    let jwt = server.builder().build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    jwt.subscribe_revocations(RevocationListener::new({
        let seen = Arc::clone(&seen);
        move |revoked: &Revoked| seen.lock().unwrap().push(revoked.clone())
    }));
    let by_a = rs256(&claims(&server));
    let by_b = token(rsa_b(), "RS256", "b", &claims(&server));
    assert!(accepts(&jwt, &by_a).await.is_some());
    assert!(accepts(&jwt, &by_b).await.is_some());

    // The same keys again: nothing is revoked.
    jwt.refresh().await.unwrap();
    assert_eq!(cached_tokens(&jwt), 2);
    assert!(seen.lock().unwrap().is_empty());

    server.set_keys(vec![rsa_b().jwk("b", Some("RS256"))]);
    jwt.refresh().await.unwrap();
    assert_eq!(cached_tokens(&jwt), 1, "a's token left the cache");
    assert_eq!(jwt.try_accept_now(&bearer(&by_a).borrowed()), None);
    assert!(jwt.try_accept_now(&bearer(&by_b).borrowed()).is_some());
    assert_eq!(*seen.lock().unwrap(), [Revoked::All]);

    // `b` reused for another key: the same `kid`, but not the key that verified the token.
    server.set_keys(vec![rsa_a().jwk("b", Some("RS256"))]);
    jwt.refresh().await.unwrap();
    assert_eq!(jwt.try_accept_now(&bearer(&by_b).borrowed()), None);
    assert_eq!(cached_tokens(&jwt), 0);
    assert_eq!(*seen.lock().unwrap(), [Revoked::All, Revoked::All]);
}

#[tokio::test]
async fn a_token_whose_key_went_is_refused_before_the_cache_is_swept() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let t = rs256(&claims(&server));
    assert!(accepts(&jwt, &t).await.is_some());
    // Keys swapped in without the sweep that follows a fetch: each hit checks its key.
    let keys = jwt.keys.snapshot().unwrap();
    let without_a = super::super::keys::KeySet::from_jwks(
        &json!({"keys": [rsa_b().jwk("b", Some("RS256"))]}),
        &[jsonwebtoken::Algorithm::RS256],
    )
    .unwrap();
    assert!(keys.value().retired_in(&without_a));
    let tokens = jwt.keys.tokens().unwrap();
    let key = tokens.key_for(&t).unwrap();
    let now = tokio::time::Instant::now();
    assert!(tokens.lookup(&key, keys.value(), now).is_some());
    assert_eq!(tokens.lookup(&key, &without_a, now), None);
}

#[tokio::test]
async fn a_listener_gets_the_keys_refreshed_on_time() {
    let server = rsa_server();
    let jwt = server.always_due();
    jwt.refresh().await.unwrap();
    assert!(!jwt.keys.is_watching());
    jwt.subscribe_revocations(RevocationListener::new(|_: &Revoked| {}));
    assert!(jwt.keys.is_watching());
    // No request comes: the watcher alone fetches, after about a second.
    assert!(server.await_hits(2).await);
}

#[test]
fn the_cache_ttl_must_be_positive_and_at_most_a_day() {
    let base = || {
        Jwt::builder()
            .issuer("http://127.0.0.1:9/realm")
            .audience(AUD)
    };
    let error = base().cache_ttl(Duration::ZERO).build().unwrap_err();
    assert_eq!(error, JwtBuildError::ZeroCacheTtl);
    assert!(error.to_string().contains("max_cached_tokens(0)"));
    let too_long = Jwt::MAX_CACHE_TTL + Duration::from_secs(1);
    let error = base().cache_ttl(too_long).build().unwrap_err();
    assert_eq!(error, JwtBuildError::CacheTtlTooLong);
    assert!(error.to_string().contains("86400 s"));
    assert!(base().cache_ttl(Jwt::MAX_CACHE_TTL).build().is_ok());
    let jwt = base().build().unwrap();
    assert!(format!("{jwt:?}").contains("cached_tokens: Some(0)"));
}
