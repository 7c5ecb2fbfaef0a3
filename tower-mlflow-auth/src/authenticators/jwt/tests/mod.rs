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
use http::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{ClaimPath, Jwt, JwtAlgorithm, JwtBuildError, JwtBuilder, JwtErrorKind};
use crate::{Authenticator, Authorization, Challenge, Credentials, Scheme};

mod builder;
mod cache;
mod claims;
mod discovery;
mod id_token;
mod refresh;
mod signatures;

const AUD: &str = "urn:mlflow";

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

/// The most common token here: RS256 with [`rsa_a`] as `kid` `a`.
fn rs256(claims: &Value) -> String {
    token(rsa_a(), "RS256", "a", claims)
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

    /// Answers every request with `status` from now on.
    fn fail_with(&self, status: u16) {
        *self.fail_with.lock().unwrap() = Some(status);
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// Waits (up to 5 s) for the JWKS to have been fetched `n` times by background tasks;
    /// whether it was.
    async fn await_hits(&self, n: usize) -> bool {
        for _ in 0..100 {
            if self.hits() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.hits() >= n
    }

    /// An authenticator whose keys are always due for a refresh, retried at once.
    fn always_due(&self) -> Jwt {
        self.builder()
            .refresh_interval(Duration::ZERO)
            .retry_interval(Duration::ZERO)
            .build()
            .unwrap()
    }

    /// An authenticator for this server's issuer and JWKS URL that accepts any audience.
    fn any_audience(&self) -> Jwt {
        Jwt::builder()
            .issuer(self.issuer())
            .any_audience()
            .jwks_uri(self.jwks_url())
            .build()
            .unwrap()
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
