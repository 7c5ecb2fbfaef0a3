//! Unit tests of the provider against a tiny in-process issuer on 127.0.0.1 (discovery,
//! JWKS, a token endpoint that records what it was sent), with ID tokens signed here (ES256).
//! The real oidc-provider is exercised by the gateway's peer tests.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use oauth2::url::{Url, form_urlencoded};
use serde_json::{Value, json};
use tower_mlflow_auth::{authenticators::IdTokenError, session::ReturnPath};

use super::*;

/// The client id the test issuer knows; `:` and space test RFC 6749 §2.3.1's encoding.
pub(crate) const CLIENT_ID: &str = "gate way:1";
const CLIENT_SECRET: &str = "s3cr%t +/:x";
const REDIRECT_URL: &str = "http://127.0.0.1:5000/_gateway/callback";
/// The nonce of [`id_token_claims`].
const NONCE: &str = "the-login-nonce";

/// What the test issuer answers and what it saw.
pub(crate) struct IssuerState {
    pub discovery_status: StatusCode,
    /// Replaces the `issuer` of the discovery document.
    pub discovery_issuer: Option<String>,
    /// Replaces the `token_endpoint` of the discovery document.
    pub token_endpoint: Option<String>,
    pub end_session: bool,
    pub discovery_fetches: usize,
    pub token_requests: Vec<TokenRequest>,
    pub token_answer: (StatusCode, Value),
}

/// A request to the token endpoint.
pub(crate) struct TokenRequest {
    pub authorization: Option<String>,
    pub form: Vec<(String, String)>,
}

impl TokenRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// An issuer on 127.0.0.1 with one ES256 key.
pub(crate) struct TestIssuer {
    addr: SocketAddr,
    key: Arc<EcdsaKeyPair>,
    state: Arc<Mutex<IssuerState>>,
}

impl TestIssuer {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let key = Arc::new(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap());
        let state = Arc::new(Mutex::new(IssuerState {
            discovery_status: StatusCode::OK,
            discovery_issuer: None,
            token_endpoint: None,
            end_session: true,
            discovery_fetches: 0,
            token_requests: Vec::new(),
            token_answer: (
                StatusCode::OK,
                json!({"access_token": "at", "token_type": "Bearer"}),
            ),
        }));
        let (served_key, served_state) = (Arc::clone(&key), Arc::clone(&state));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (key, state) = (Arc::clone(&served_key), Arc::clone(&served_state));
                let service = service_fn(move |request| {
                    let (key, state) = (Arc::clone(&key), Arc::clone(&state));
                    async move { Ok::<_, Infallible>(answer(addr, &key, &state, request).await) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self { addr, key, state }
    }

    pub(crate) fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, IssuerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An ID token for [`CLIENT_ID`] from this issuer, `sub` `user-1`, valid 300 s, with
    /// `nonce`; `extra` adds claims (a `null` removes one).
    pub(crate) fn id_token(&self, nonce: &str, extra: &Value) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.issuer(), "aud": CLIENT_ID, "sub": "user-1",
            "iat": now, "exp": now + 300, "nonce": nonce,
        });
        for (name, value) in extra.as_object().into_iter().flatten() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn provider(&self, scopes: &[&str]) -> Provider {
        Provider::new(ProviderSettings {
            issuer: self.issuer(),
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            redirect_url: REDIRECT_URL.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ca_pem: None,
        })
        .unwrap()
    }

    fn answer_tokens(&self, status: StatusCode, body: Value) {
        self.state().token_answer = (status, body);
    }
}

/// Verified claims: `extra` on top of a valid ID token (see [`TestIssuer::id_token`]).
pub(crate) async fn id_token_claims(extra: Value) -> IdTokenClaims {
    let issuer = TestIssuer::start().await;
    let jwt = Jwt::builder()
        .issuer(issuer.issuer())
        .audience(CLIENT_ID)
        .build()
        .unwrap();
    jwt.verify_id_token(&issuer.id_token(NONCE, &extra), NONCE)
        .await
        .unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn answer(
    addr: SocketAddr,
    key: &EcdsaKeyPair,
    state: &Mutex<IssuerState>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let issuer = format!("http://{addr}");
    let (status, json) = match parts.uri.path() {
        "/.well-known/openid-configuration" => {
            state.discovery_fetches += 1;
            let mut document = json!({
                "issuer": state.discovery_issuer.clone().unwrap_or_else(|| issuer.clone()),
                "authorization_endpoint": format!("{issuer}/auth?tenant=ml"),
                "token_endpoint": state.token_endpoint.clone().unwrap_or_else(|| format!("{issuer}/token")),
                "jwks_uri": format!("{issuer}/jwks"),
            });
            if state.end_session {
                document["end_session_endpoint"] = json!(format!("{issuer}/session/end?ui=1"));
            }
            (state.discovery_status, document)
        }
        "/jwks" => {
            let point = key.public_key().as_ref();
            let jwk = json!({
                "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            });
            (StatusCode::OK, json!({"keys": [jwk]}))
        }
        "/token" => {
            state.token_requests.push(TokenRequest {
                authorization: parts
                    .headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                form: form_urlencoded::parse(&body).into_owned().collect(),
            });
            state.token_answer.clone()
        }
        _ => (StatusCode::NOT_FOUND, json!({"error": "not_found"})),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap()
}

fn subject_and_refresh_token(tokens: &Tokens) -> (Option<&str>, Option<&str>) {
    (
        tokens.claims.as_ref().map(IdTokenClaims::subject),
        tokens
            .refresh_token
            .as_ref()
            .map(ExposeSecret::expose_secret),
    )
}

fn transaction() -> Transaction {
    Transaction::begin(&ReturnPath::default()).unwrap()
}

fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    assert!(values.next().is_none(), "{name} appears twice");
    first
}

#[tokio::test]
async fn authorization_url_has_every_parameter_encoded() {
    let issuer = TestIssuer::start().await;
    let provider = issuer.provider(&["openid", "email", "profile"]);
    let tx = transaction();
    let url = provider.authorization_url(&tx).await.unwrap();
    assert!(
        url.starts_with(&format!("{}/auth?tenant=ml&", issuer.issuer())),
        "{url}"
    );
    let pairs = query(&url);
    assert_eq!(param(&pairs, "tenant"), Some("ml"));
    assert_eq!(param(&pairs, "response_type"), Some("code"));
    assert_eq!(param(&pairs, "client_id"), Some(CLIENT_ID));
    assert_eq!(param(&pairs, "redirect_uri"), Some(REDIRECT_URL));
    assert_eq!(param(&pairs, "scope"), Some("openid email profile"));
    assert_eq!(param(&pairs, "state"), Some(tx.state.as_str()));
    assert_eq!(param(&pairs, "nonce"), Some(tx.nonce.as_str()));
    assert_eq!(
        param(&pairs, "code_challenge"),
        Some(tx.pkce_challenge().as_str())
    );
    assert_eq!(param(&pairs, "code_challenge_method"), Some("S256"));
    assert_eq!(param(&pairs, "prompt"), None);
    // The client id's space and colon are encoded, not raw.
    assert!(!url.contains("gate way") && !url.contains("way:1"), "{url}");
}

#[tokio::test]
async fn offline_access_asks_for_consent() {
    let issuer = TestIssuer::start().await;
    let provider = issuer.provider(&["openid", "offline_access"]);
    let url = provider.authorization_url(&transaction()).await.unwrap();
    let pairs = query(&url);
    assert_eq!(param(&pairs, "prompt"), Some("consent"));
    assert_eq!(param(&pairs, "scope"), Some("openid offline_access"));
}

#[tokio::test]
async fn discovery_is_lazy_cached_and_retried_after_a_failure() {
    let issuer = TestIssuer::start().await;
    issuer.state().discovery_status = StatusCode::SERVICE_UNAVAILABLE;
    let provider = issuer.provider(&["openid"]);
    assert_eq!(issuer.state().discovery_fetches, 0, "new() fetched");

    let error = provider
        .authorization_url(&transaction())
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("503"), "{error}");
    assert_eq!(provider.end_session_url("http://x/").await, None);

    issuer.state().discovery_status = StatusCode::OK;
    provider.authorization_url(&transaction()).await.unwrap();
    provider
        .clone()
        .authorization_url(&transaction())
        .await
        .unwrap();
    assert!(provider.end_session_url("http://x/").await.is_some());
    assert_eq!(
        issuer.state().discovery_fetches,
        3,
        "two failures, then one success cached"
    );
}

/// The discovery error of an issuer changed by `edit` (given its URL), whose text contains `named`.
async fn discovery_error(edit: impl FnOnce(&mut IssuerState, String), named: &str) {
    let issuer = TestIssuer::start().await;
    edit(&mut issuer.state(), issuer.issuer());
    let error = issuer
        .provider(&["openid"])
        .authorization_url(&transaction())
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Discovery(_)), "{error:?}");
    assert!(error.to_string().contains(named), "{error}");
}

#[tokio::test]
async fn unusable_discovery_documents_are_refused() {
    // Another issuer, even one that differs by a trailing slash.
    discovery_error(
        |state, issuer| state.discovery_issuer = Some(format!("{issuer}/")),
        "names the issuer",
    )
    .await;
    discovery_error(
        |state, _| state.token_endpoint = Some("http://idp.example.com/token".into()),
        "token_endpoint",
    )
    .await;
    discovery_error(
        |state, _| state.discovery_status = StatusCode::NOT_FOUND,
        "404",
    )
    .await;
}

#[tokio::test]
async fn unreachable_issuer_is_unavailable() {
    // Bound and dropped: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let provider = Provider::new(ProviderSettings {
        issuer: format!("http://{addr}"),
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from(CLIENT_SECRET),
        redirect_url: REDIRECT_URL.into(),
        scopes: vec!["openid".into()],
        ca_pem: None,
    })
    .unwrap();
    let tx = transaction();
    let error = provider.redeem("code", &tx).await.unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    let chain = tower_mlflow_core::http::error_chain(&error);
    let expected = format!(
        "the identity provider is unavailable: no answer from http://{addr}/.well-known/openid-configuration: the request failed: "
    );
    assert!(chain.starts_with(&expected), "{chain}");
}

#[test]
fn unsafe_settings_are_refused() {
    let settings = |issuer: &str, redirect: &str, client_id: &str| ProviderSettings {
        issuer: issuer.into(),
        client_id: client_id.into(),
        client_secret: SecretString::from(CLIENT_SECRET),
        redirect_url: redirect.into(),
        scopes: vec!["openid".into()],
        ca_pem: None,
    };
    for (issuer, redirect, client_id, named) in [
        ("http://idp.example.com", REDIRECT_URL, CLIENT_ID, "issuer"),
        ("idp.example.com", REDIRECT_URL, CLIENT_ID, "issuer"),
        (
            "https://idp.example.com",
            "http://mlflow.example.com/_gateway/callback",
            CLIENT_ID,
            "redirect URL",
        ),
        ("https://idp.example.com", REDIRECT_URL, "", "client id"),
    ] {
        let error = Provider::new(settings(issuer, redirect, client_id)).unwrap_err();
        assert!(matches!(error, ProviderError::Settings(_)), "{error:?}");
        assert!(error.to_string().contains(named), "{error}");
    }
    let bad_ca = ProviderSettings {
        ca_pem: Some(b"not a certificate".to_vec()),
        ..settings("https://idp.example.com", REDIRECT_URL, CLIENT_ID)
    };
    assert!(matches!(
        Provider::new(bad_ca),
        Err(ProviderError::Settings(_))
    ));
}

#[tokio::test]
async fn redeem_sends_client_secret_basic_and_the_pkce_verifier() {
    let issuer = TestIssuer::start().await;
    let provider = issuer.provider(&["openid"]);
    let tx = transaction();
    issuer.answer_tokens(
        StatusCode::OK,
        json!({
            "access_token": "at", "token_type": "Bearer", "expires_in": 60,
            "refresh_token": "rt-1", "id_token": issuer.id_token(&tx.nonce, &json!({})),
        }),
    );
    let tokens = provider.redeem("the code", &tx).await.unwrap();
    assert_eq!(
        subject_and_refresh_token(&tokens),
        (Some("user-1"), Some("rt-1"))
    );
    // expires_in (60 s) comes before the ID token's exp (300 s).
    let expires_at = tokens.expires_at.unwrap();
    let now = SystemTime::now();
    assert!(
        expires_at <= now + Duration::from_secs(60) && expires_at > now + Duration::from_secs(30)
    );

    let state = issuer.state();
    let [request] = &state.token_requests[..] else {
        panic!("one token request")
    };
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    let expected = STANDARD.encode("gate+way%3A1:s3cr%25t+%2B%2F%3Ax");
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Basic {expected}").as_str())
    );
    assert_eq!(request.param("grant_type"), Some("authorization_code"));
    assert_eq!(request.param("code"), Some("the code"));
    assert_eq!(
        request.param("code_verifier"),
        Some(tx.pkce_verifier.expose_secret())
    );
    assert_eq!(request.param("redirect_uri"), Some(REDIRECT_URL));
    assert_eq!(
        request.param("client_secret"),
        None,
        "the secret goes in the header only"
    );
}

#[tokio::test]
async fn redeem_without_an_id_token_fails() {
    let issuer = TestIssuer::start().await;
    let error = issuer
        .provider(&["openid"])
        .redeem("c", &transaction())
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::NoIdToken), "{error:?}");
}

#[tokio::test]
async fn redeem_checks_the_nonce() {
    let issuer = TestIssuer::start().await;
    let body = json!({"access_token": "at", "token_type": "Bearer", "id_token": issuer.id_token("other", &json!({}))});
    issuer.answer_tokens(StatusCode::OK, body);
    let error = issuer
        .provider(&["openid"])
        .redeem("c", &transaction())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::IdToken(IdTokenError::Nonce)),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_used_code_is_refused_with_the_issuers_error() {
    let issuer = TestIssuer::start().await;
    issuer.answer_tokens(
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_grant", "error_description": "grant request is invalid"}),
    );
    let error = issuer
        .provider(&["openid"])
        .redeem("c", &transaction())
        .await
        .unwrap_err();
    let ProviderError::Refused { error: code } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(code, "invalid_grant");
    assert!(!error.to_string().contains(CLIENT_SECRET));
}

#[tokio::test]
async fn token_endpoint_failures_are_unavailable_or_unusable() {
    let issuer = TestIssuer::start().await;
    let provider = issuer.provider(&["openid"]);
    issuer.answer_tokens(StatusCode::BAD_GATEWAY, json!({}));
    let error = provider.redeem("c", &transaction()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");

    // A value of the wrong type: the error names the field, never its value.
    issuer.answer_tokens(
        StatusCode::OK,
        json!({"access_token": "at", "token_type": "Bearer", "expires_in": "secret-ish"}),
    );
    let error = provider.redeem("c", &transaction()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Response(_)), "{error:?}");
    assert!(
        error.to_string().contains("expires_in") && !error.to_string().contains("secret-ish"),
        "{error}"
    );
}

#[tokio::test]
async fn refresh_keeps_the_old_refresh_token_and_checks_the_subject() {
    let issuer = TestIssuer::start().await;
    let provider = issuer.provider(&["openid", "offline_access"]);
    let old = SecretString::from("rt-old");
    let tokens = provider.refresh(&old, "user-1", "n").await.unwrap();
    assert_eq!(subject_and_refresh_token(&tokens), (None, Some("rt-old")));
    assert_eq!(tokens.expires_at, None);
    {
        let state = issuer.state();
        let [request] = &state.token_requests[..] else {
            panic!("one token request")
        };
        assert_eq!(request.param("grant_type"), Some("refresh_token"));
        assert_eq!(request.param("refresh_token"), Some("rt-old"));
        assert!(
            request
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
        );
    }

    // A refreshed ID token without a nonce is fine; one for another user is not.
    let fresh = issuer.id_token("", &json!({"nonce": null}));
    issuer.answer_tokens(StatusCode::OK, json!({"access_token": "at", "token_type": "Bearer", "refresh_token": "rt-new", "id_token": fresh}));
    let tokens = provider.refresh(&old, "user-1", "n").await.unwrap();
    assert_eq!(
        subject_and_refresh_token(&tokens),
        (Some("user-1"), Some("rt-new"))
    );
    assert!(tokens.expires_at.is_some());
    let error = provider.refresh(&old, "user-2", "n").await.unwrap_err();
    assert!(matches!(error, ProviderError::IdToken(_)), "{error:?}");
}

#[tokio::test]
async fn end_session_url_keeps_its_query_and_adds_the_client() {
    let issuer = TestIssuer::start().await;
    let provider = issuer.provider(&["openid"]);
    let url = provider
        .end_session_url("https://mlflow.example.com/")
        .await
        .unwrap();
    assert!(
        url.starts_with(&format!("{}/session/end?ui=1&", issuer.issuer())),
        "{url}"
    );
    let pairs = query(&url);
    assert_eq!(param(&pairs, "client_id"), Some(CLIENT_ID));
    assert_eq!(
        param(&pairs, "post_logout_redirect_uri"),
        Some("https://mlflow.example.com/")
    );

    let without = TestIssuer::start().await;
    without.state().end_session = false;
    assert_eq!(
        without
            .provider(&["openid"])
            .end_session_url("https://m/")
            .await,
        None
    );
}

#[test]
fn debug_shows_no_secret() {
    let settings = ProviderSettings {
        issuer: "https://idp.example.com".into(),
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from(CLIENT_SECRET),
        redirect_url: REDIRECT_URL.into(),
        scopes: vec!["openid".into()],
        ca_pem: None,
    };
    assert!(!format!("{settings:?}").contains("s3cr"));
    let provider = Provider::new(settings).unwrap();
    let debug = format!("{provider:?}");
    assert!(
        debug.contains("idp.example.com") && !debug.contains("s3cr"),
        "{debug}"
    );
}
