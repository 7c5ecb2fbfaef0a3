//! Unit tests: tokens signed here with freshly generated RSA and P-256 keys, verified against
//! a tiny JWKS server on 127.0.0.1 that counts its requests.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
        RsaKeyPair, RsaPublicKeyComponents,
    },
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::*;

const AUD: &str = "urn:mlflow";

// ---------- keys and tokens ----------

enum TestKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

fn rsa_a() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        TestKey::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    })
}

fn rsa_b() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        TestKey::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    })
}

fn ec_a() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        TestKey::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    })
}

impl TestKey {
    /// The public JWK, with `kid` and optionally `alg`.
    fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let mut jwk = match self {
            Self::Rsa(kp) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                json!({"kty": "RSA", "n": B64.encode(&c.n), "e": B64.encode(&c.e)})
            }
            Self::Ec(kp) => {
                let point = kp.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
            }
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                let padding = if alg == "PS256" {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                kp.sign(padding, &rng, message, &mut sig).unwrap();
                sig
            }
            Self::Ec(kp) => kp.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn encode_unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    )
}

fn token_with_header(key: &TestKey, header: &Value, claims: &Value) -> String {
    let alg = header["alg"].as_str().unwrap().to_owned();
    let message = encode_unsigned(header, claims);
    let sig = key.sign(&alg, message.as_bytes());
    format!("{message}.{}", B64.encode(sig))
}

fn token(key: &TestKey, alg: &str, kid: &str, claims: &Value) -> String {
    token_with_header(key, &json!({"alg": alg, "typ": "JWT", "kid": kid}), claims)
}

fn claims(server: &JwksServer) -> Value {
    json!({
        "iss": server.issuer(),
        "aud": AUD,
        "sub": "alice",
        "exp": now() + 300,
        "iat": now(),
        "groups": ["users", "mlflow-admins"],
        "email": "alice@example.com",
    })
}

fn bearer(token: &str) -> Credentials {
    Credentials::Bearer {
        token: SecretString::from(token),
    }
}

// ---------- a counting JWKS / discovery server ----------

#[derive(Clone)]
struct JwksServer {
    addr: SocketAddr,
    jwks: Arc<Mutex<Value>>,
    /// When set, every request is answered with this status and an empty body.
    fail_with: Arc<Mutex<Option<u16>>>,
    discovery_issuer: Arc<Mutex<Option<String>>>,
    jwks_hits: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(keys: Vec<Value>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            jwks: Arc::new(Mutex::new(json!({ "keys": Value::Array(keys) }))),
            fail_with: Arc::default(),
            discovery_issuer: Arc::default(),
            jwks_hits: Arc::default(),
        };
        let state = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = state.clone();
                std::thread::spawn(move || state.answer(stream));
            }
        });
        server
    }

    fn answer(&self, mut stream: std::net::TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
        let (status, body) = if let Some(status) = *self.fail_with.lock().unwrap() {
            if path == "/jwks" {
                self.jwks_hits.fetch_add(1, Ordering::SeqCst);
            }
            (status, String::new())
        } else if path == "/jwks" {
            self.jwks_hits.fetch_add(1, Ordering::SeqCst);
            (200, self.jwks.lock().unwrap().to_string())
        } else if path == "/.well-known/openid-configuration" {
            let issuer = self
                .discovery_issuer
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| self.issuer());
            let doc = json!({"issuer": issuer, "jwks_uri": format!("{}/jwks", self.issuer())});
            (200, doc.to_string())
        } else {
            (404, String::new())
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes());
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.jwks.lock().unwrap() = json!({ "keys": Value::Array(keys) });
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// A builder for this server's issuer, audience and JWKS URL.
    fn builder(&self) -> JwtBuilder {
        Jwt::builder()
            .issuer(self.issuer())
            .audience(AUD)
            .jwks_uri(self.jwks_url())
    }
}

fn rsa_server() -> JwksServer {
    JwksServer::start(vec![rsa_a().jwk("a", Some("RS256"))])
}

async fn accepts(jwt: &Jwt, token: &str) -> Option<Authorization> {
    jwt.authenticate(bearer(token)).await.unwrap()
}

// ---------- accepted tokens and the principal ----------

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
    let who = accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
        .await
        .unwrap();
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
    let who = accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
        .await
        .unwrap();
    assert!(!who.is_admin());

    let mut c = claims(&server);
    c["role"] = json!("admin");
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .unwrap()
            .is_admin()
    );
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
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .unwrap()
            .is_admin()
    );
    let mut c = claims(&server);
    c["scope"] = json!("read mlflow:administrator");
    assert!(
        !accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .unwrap()
            .is_admin()
    );
    let mut c = claims(&server);
    c["realm_access"] = json!({"roles": ["boss"]});
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .unwrap()
            .is_admin()
    );
}

#[tokio::test]
async fn subject_claim_is_configurable_and_required() {
    let server = rsa_server();
    let jwt = server.builder().subject_claim("client_id").build().unwrap();
    let mut c = claims(&server);
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .is_none()
    );
    c["client_id"] = json!("ci-bot");
    let who = accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
        .await
        .unwrap();
    assert_eq!(who.subject(), "ci-bot");
    c["client_id"] = json!("");
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .is_none()
    );
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
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn any_audience_accepts_tokens_with_and_without_aud() {
    let server = rsa_server();
    let jwt = Jwt::builder()
        .issuer(server.issuer())
        .any_audience()
        .jwks_uri(server.jwks_url())
        .build()
        .unwrap();
    let mut c = claims(&server);
    c["aud"] = json!("someone-else");
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .is_some()
    );
    c.as_object_mut().unwrap().remove("aud");
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
            .await
            .is_some()
    );
}

// ---------- rejected tokens ----------

async fn rejected_with(edit: impl FnOnce(&mut Value)) -> bool {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    // The unedited token is accepted, so a rejection below is down to the edit.
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_some()
    );
    let mut c = claims(&server);
    edit(&mut c);
    accepts(&jwt, &token(rsa_a(), "RS256", "a", &c))
        .await
        .is_none()
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

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    let good = token(rsa_a(), "RS256", "a", &claims(&server));
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
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_some()
    );
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

// ---------- key fetching ----------

#[tokio::test]
async fn unknown_kid_triggers_a_refetch_that_picks_up_rotation() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_some()
    );
    assert_eq!(server.hits(), 1);

    server.set_keys(vec![rsa_b().jwk("b", Some("RS256"))]);
    assert!(
        accepts(&jwt, &token(rsa_b(), "RS256", "b", &claims(&server)))
            .await
            .is_some()
    );
    assert_eq!(server.hits(), 2);
    // The retired key is gone with the old set.
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn unknown_kid_refetches_are_rate_limited() {
    let server = rsa_server();
    let jwt = server
        .builder()
        .refetch_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_some()
    );
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
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_some()
    );
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
    let t = token(rsa_a(), "RS256", "a", &claims(&server));
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

#[tokio::test]
async fn unreachable_jwks_without_keys_is_an_error() {
    let server = rsa_server();
    *server.fail_with.lock().unwrap() = Some(500);
    let jwt = server.builder().build().unwrap();
    let err = jwt
        .authenticate(bearer(&token(rsa_a(), "RS256", "a", &claims(&server))))
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
    assert!(matches!(err.kind(), JwtErrorKind::Request(_)), "{err}");
}

#[tokio::test]
async fn failed_refetch_keeps_the_old_keys() {
    let server = rsa_server();
    let jwt = server.builder().build().unwrap();
    jwt.refresh().await.unwrap();
    *server.fail_with.lock().unwrap() = Some(503);
    assert!(jwt.refresh().await.is_err());
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_some()
    );
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
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_some()
    );
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
        .http_timeout(Duration::from_millis(200))
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
    let jwt = server
        .builder()
        .refresh_interval(Duration::ZERO)
        .retry_interval(Duration::ZERO)
        .build()
        .unwrap();
    let t = token(rsa_a(), "RS256", "a", &claims(&server));
    assert!(accepts(&jwt, &t).await.is_some());
    assert!(accepts(&jwt, &t).await.is_some());
    // Wait (bounded) for the spawned refresh to land.
    for _ in 0..100 {
        if server.hits() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.hits() >= 2);
}

#[tokio::test]
async fn discovery_finds_the_jwks() {
    let server = rsa_server();
    let jwt = Jwt::builder()
        .issuer(server.issuer())
        .audience(AUD)
        .build()
        .unwrap();
    assert!(
        accepts(&jwt, &token(rsa_a(), "RS256", "a", &claims(&server)))
            .await
            .is_some()
    );
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

// ---------- configuration ----------

fn config_error(builder: JwtBuilder) -> JwtConfigError {
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
        JwtConfigError::MissingIssuer
    );
    assert_eq!(
        config_error(Jwt::builder().issuer("http://127.0.0.1:9")),
        JwtConfigError::MissingAudience
    );
    assert_eq!(
        config_error(base().any_audience()),
        JwtConfigError::ConflictingAudience
    );
    assert_eq!(
        config_error(Jwt::builder().any_issuer().audience(AUD)),
        JwtConfigError::MissingKeySource
    );
    assert_eq!(
        config_error(base().algorithms([JwtAlgorithm::RS256, JwtAlgorithm::HS256])),
        JwtConfigError::SymmetricAlgorithm(JwtAlgorithm::HS256)
    );
    assert_eq!(
        config_error(base().algorithms([])),
        JwtConfigError::NoAlgorithms
    );
    assert_eq!(
        config_error(base().http_timeout(Duration::ZERO)),
        JwtConfigError::ZeroTimeout
    );
    assert_eq!(
        config_error(base().jwks_uri("http://idp.example.com/jwks")),
        JwtConfigError::Url {
            setting: "jwks_uri",
            problem: JwtErrorKind::InsecureUrl
        }
    );
    assert_eq!(
        config_error(base().jwks_uri("ftp://127.0.0.1/jwks")),
        JwtConfigError::Url {
            setting: "jwks_uri",
            problem: JwtErrorKind::InvalidUrl
        }
    );
    assert_eq!(
        config_error(base().jwks_uri("http://user:pw@127.0.0.1/jwks")),
        JwtConfigError::Url {
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
        JwtConfigError::Url {
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

/// Not a test of speed: prints what one verification costs, for the record.
/// `cargo test --release -p tower-mlflow-auth --features jwt -- --ignored --nocapture verify_cost`
#[tokio::test]
#[ignore = "prints timings; run by hand"]
async fn verify_cost() {
    let server = JwksServer::start(vec![rsa_a().jwk("a", None), ec_a().jwk("e", None)]);
    let jwt = server.builder().build().unwrap();
    for (name, t) in [
        ("RS256", token(rsa_a(), "RS256", "a", &claims(&server))),
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
