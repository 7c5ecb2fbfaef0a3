//! Fetching keys: on first use, on an unknown `kid` (rate-limited, single flight), in the
//! background, and what a failure keeps.

use super::*;

#[tokio::test]
async fn unknown_kid_triggers_a_refetch_that_picks_up_rotation() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_some());
    assert_eq!(server.hits(), 1);

    server.set_keys(vec![rsa_b().jwk("b", Some("RS256"))]);
    assert!(
        accepts(&jwt, &token(rsa_b(), "RS256", "b", &claims(&server)))
            .await
            .is_some()
    );
    assert_eq!(server.hits(), 2);
    // The retired key is gone with the old set.
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_none());
}

#[tokio::test]
async fn unknown_kid_refetches_are_rate_limited() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .refetch_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_some());
    for i in 0..10 {
        let t = token(rsa_a(), "RS256", &format!("made-up-{i}"), &claims(&server));
        assert!(accepts(&jwt, &t).await.is_none());
    }
    // The initial fetch only: the first refetch is still inside the interval.
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn refetch_interval_allows_one_refetch_per_interval() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .refetch_interval(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_some());
    tokio::time::sleep(Duration::from_millis(350)).await;
    for i in 0..5 {
        let t = token(rsa_a(), "RS256", &format!("made-up-{i}"), &claims(&server));
        assert!(accepts(&jwt, &t).await.is_none());
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_fetch() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    let t = rs256(&claims(&server));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (jwt, t) = (jwt.clone(), t.clone());
            tokio::spawn(async move { accepts(&jwt, &t).await.is_some() })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_refetch() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    jwt.refresh().await.unwrap();
    server.set_keys(vec![rsa_b().jwk("b", Some("RS256"))]);
    let t = token(rsa_b(), "RS256", "b", &claims(&server));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (jwt, t) = (jwt.clone(), t.clone());
            tokio::spawn(async move { accepts(&jwt, &t).await.is_some() })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    // Keys that landed while a request waited count as its refetch, even with no interval.
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn failed_fetches_without_keys_wait_for_the_retry_interval() {
    let server = rsa_server();
    server.fail_with(500);
    let jwt = server
        .builder()
        .retry_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let t = rs256(&claims(&server));
    for _ in 0..3 {
        let err = jwt.authenticate(bearer(&t)).await.unwrap_err();
        assert_eq!(
            err.kind(),
            &JwtErrorKind::Status(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }
    assert_eq!(server.hits(), 1);
    // An explicit refresh is not rate-limited.
    assert!(jwt.refresh().await.is_err());
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unreachable_jwks_without_keys_is_an_error() {
    let server = rsa_server();
    server.fail_with(500);
    let jwt = server.builder().build().unwrap();
    let err = jwt
        .authenticate(bearer(&rs256(&claims(&server))))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &JwtErrorKind::Status(StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert_eq!(err.url(), server.jwks_url());

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let jwt = Jwt::builder()
        .issuer("x")
        .audience(AUD)
        .jwks_uri(format!("http://{closed}/jwks"))
        .build()
        .unwrap();
    let err = jwt.refresh().await.unwrap_err();
    assert!(matches!(err.kind(), JwtErrorKind::Request), "{err}");
}

#[tokio::test]
async fn failed_refetch_keeps_the_old_keys() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    jwt.refresh().await.unwrap();
    server.fail_with(503);
    assert!(jwt.refresh().await.is_err());
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_some());
}

#[tokio::test]
async fn jwks_without_usable_keys_is_an_error_and_keeps_old_keys() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    jwt.refresh().await.unwrap();
    server.set_keys(vec![
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
    ]);
    assert_eq!(
        jwt.refresh().await.unwrap_err().kind(),
        &JwtErrorKind::NoUsableKeys
    );
    assert!(accepts(&jwt, &rs256(&claims(&server))).await.is_some());
}

#[tokio::test]
async fn oversized_jwks_is_refused() {
    let server = rsa_server();
    let jwt = server.builder().max_response_size(64).build().unwrap();
    assert_eq!(
        jwt.refresh().await.unwrap_err().kind(),
        &JwtErrorKind::TooLarge(64)
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    // Accepts connections but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let jwt = Jwt::builder()
        .issuer("x")
        .audience(AUD)
        .jwks_uri(format!("http://{addr}/jwks"))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(
        jwt.refresh().await.unwrap_err().kind(),
        &JwtErrorKind::Timeout
    );
    drop(listener);
}

#[tokio::test]
async fn stale_keys_are_refreshed_in_the_background() {
    let server = rsa_server();
    let jwt = server.always_due();
    let t = rs256(&claims(&server));
    assert!(accepts(&jwt, &t).await.is_some());
    assert!(accepts(&jwt, &t).await.is_some());
    assert!(server.await_hits(2).await, "the spawned refresh lands");
}
