//! Per-request overhead of `AuthLayer` against the bare inner service, for each way a
//! request can be let through, and one uncached bcrypt check for contrast.
//!
//! ```text
//! cargo bench -p tower-mlflow-benches --bench auth_layer
//! ```
//!
//! Every case sends one request through a clone of the service (`oneshot`), as a server does
//! per connection task; the bare service is the same handler without the layer. The
//! difference between a case and `bare` is the layer's per-request cost. Figures and the
//! machine they were taken on are in BENCHMARKS.md.

use std::{
    convert::Infallible,
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeySize,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
        RsaPublicKeyComponents,
    },
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_mlflow_auth::{
    AuthLayer, Authenticator, Authorization, Credentials, CredentialsRef, Exemptions, Scheme,
    authenticators::{Cached, Htpasswd, Jwt, StaticTokens},
};

type Body = Full<Bytes>;

const PATH: &str = "/api/2.0/mlflow/runs/get";
const TOKEN: &str = "t0ken-t0ken-t0ken";
const AUDIENCE: &str = "urn:mlflow";

async fn hello(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Full::from("hello")))
}

async fn static_bearer(credentials: Credentials) -> Result<Option<Authorization>, Infallible> {
    Ok(match credentials {
        Credentials::Bearer { token }
            if bool::from(token.expose_secret().as_bytes().ct_eq(TOKEN.as_bytes())) =>
        {
            Some(Authorization::new("ci", Scheme::Bearer))
        }
        _ => None,
    })
}

fn request(path: &str, authorization: Option<&HeaderValue>) -> Request<Body> {
    let mut request = Request::new(Body::default());
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, value.clone());
    }
    request
}

/// One request through a clone of `service`; panics if it was not let through, so that a
/// broken setup cannot pass for a fast one.
async fn drive<S>(service: S, request: Request<Body>, expect_ok: bool)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let response = service
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(
        response.status().is_success(),
        expect_ok,
        "unexpected status"
    );
    std::hint::black_box(response);
}

fn basic(user: &str, password: &str) -> HeaderValue {
    let encoded = STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or_else(|e| panic!("{e}"))
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or_else(|e| panic!("{e}"))
}

// ---------- JWT: keys generated here, JWKS served on 127.0.0.1 ----------

enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl SigningKey {
    fn jwk(&self, kid: &str) -> serde_json::Value {
        match self {
            Self::Rsa(pair) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)})
            }
            Self::Ec(pair) => {
                // Uncompressed point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
            }
        }
    }

    fn token(&self, kid: &str, issuer: &str) -> String {
        let alg = match self {
            Self::Rsa(_) => "RS256",
            Self::Ec(_) => "ES256",
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let claims = json!({"iss": issuer, "aud": AUDIENCE, "sub": "alice",
                            "iat": now, "exp": now + 3600});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match self {
            Self::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut signature)
                    .unwrap_or_else(|e| panic!("{e}"));
                signature
            }
            Self::Ec(pair) => pair
                .sign(&rng, message.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"))
                .as_ref()
                .to_vec(),
        };
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// Serves `jwks` at any path on a loopback port from a background thread; returns the URL.
fn serve_jwks(jwks: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let jwks = Arc::new(jwks);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(read_half) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(read_half);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
        }
    });
    format!("http://{address}/jwks")
}

fn bench_auth_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("auth_layer");

    let bare = service_fn(hello);
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| drive(bare, request(PATH, None), true));
    });

    // A closure authenticator: the layer's own cost with a trivial check.
    let closure = ServiceBuilder::new()
        .layer(AuthLayer::new(static_bearer).with_exemptions(Exemptions::mlflow_defaults()))
        .service_fn(hello);
    group.bench_function("exempt_path", |b| {
        b.to_async(&runtime)
            .iter(|| drive(closure.clone(), request("/health", None), true));
    });
    let token_header = bearer(TOKEN);
    group.bench_function("static_bearer_closure", |b| {
        b.to_async(&runtime)
            .iter(|| drive(closure.clone(), request(PATH, Some(&token_header)), true));
    });
    group.bench_function("rejected_missing", |b| {
        b.to_async(&runtime)
            .iter(|| drive(closure.clone(), request(PATH, None), false));
    });

    // StaticTokens: SHA-256 of the token and a map lookup.
    let tokens = StaticTokens::bearer()
        .token(TOKEN, Authorization::new("ci", Scheme::Bearer))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let static_tokens = ServiceBuilder::new()
        .layer(AuthLayer::new(tokens))
        .service_fn(hello);
    group.bench_function("static_tokens", |b| {
        b.to_async(&runtime).iter(|| {
            drive(
                static_tokens.clone(),
                request(PATH, Some(&token_header)),
                true,
            )
        });
    });

    // Basic with a cache hit over a bcrypt cost-10 htpasswd entry: HMAC-SHA256 + lookup.
    let hash = bcrypt::hash("alice-password", 10).unwrap_or_else(|e| panic!("{e}"));
    let htpasswd = Htpasswd::parse(&format!("alice:{hash}\n")).unwrap_or_else(|e| panic!("{e}"));
    let cached = Cached::builder(htpasswd.clone())
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let basic_cached = ServiceBuilder::new()
        .layer(AuthLayer::new(cached.clone()))
        .service_fn(hello);
    let alice = basic("alice", "alice-password");
    // The first request pays for bcrypt and fills the cache.
    runtime.block_on(drive(
        basic_cached.clone(),
        request(PATH, Some(&alice)),
        true,
    ));
    group.bench_function("basic_cached_hit", |b| {
        b.to_async(&runtime)
            .iter(|| drive(basic_cached.clone(), request(PATH, Some(&alice)), true));
    });

    // JWT RS256 and ES256, keys fetched once before measuring; the token cache is off, so
    // that every request checks its signature.
    let rsa =
        SigningKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap_or_else(|e| panic!("{e}")));
    let ec = SigningKey::Ec(
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap_or_else(|e| panic!("{e}")),
    );
    let jwks = json!({"keys": [rsa.jwk("rsa-1"), ec.jwk("ec-1")]}).to_string();
    let jwks_uri = serve_jwks(jwks);
    let issuer = "https://issuer.example";
    let jwt_with_cache = |max_cached_tokens| {
        let jwt = Jwt::builder()
            .jwks_uri(&jwks_uri)
            .issuer(issuer)
            .audience(AUDIENCE)
            .max_cached_tokens(max_cached_tokens)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime
            .block_on(jwt.refresh())
            .unwrap_or_else(|e| panic!("{e}"));
        jwt
    };
    let jwt_service = ServiceBuilder::new()
        .layer(AuthLayer::new(jwt_with_cache(0)))
        .service_fn(hello);
    // The same token again and again, as a client sends it: a cache hit after the first.
    let jwt = jwt_with_cache(Jwt::DEFAULT_MAX_CACHED_TOKENS);
    let jwt_cached = ServiceBuilder::new()
        .layer(AuthLayer::new(jwt.clone()))
        .service_fn(hello);
    let rs256_header = bearer(&rsa.token("rsa-1", issuer));
    let es256_header = bearer(&ec.token("ec-1", issuer));
    for (name, service, header) in [
        ("jwt_rs256", &jwt_service, &rs256_header),
        ("jwt_es256", &jwt_service, &es256_header),
        ("jwt_rs256_cached", &jwt_cached, &rs256_header),
    ] {
        runtime.block_on(drive(service.clone(), request(PATH, Some(header)), true));
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| drive(service.clone(), request(PATH, Some(header)), true));
        });
    }
    group.finish();

    // Where a cached JWT's time goes: reading the header (the token is copied into a
    // `SecretString`), and the cache hit (the token's AES-256-GCM-SIV key, lookup, one clock
    // read for the entry's deadline and the keys' age). The key alone, against the
    // HMAC-SHA256 it replaced, is in `breakdown/cache_key_token_531b_*`.
    let mut breakdown = c.benchmark_group("jwt_cached_breakdown");
    let mut rs256_headers = http::HeaderMap::new();
    rs256_headers.insert(header::AUTHORIZATION, rs256_header.clone());
    breakdown.bench_function("parse_authorization_header", |b| {
        b.iter(|| {
            let credentials = CredentialsRef::from_authorization_header(&rs256_headers);
            assert!(credentials.is_ok_and(|found| found.scheme() == Scheme::Bearer));
        });
    });
    let rs256_credentials =
        Credentials::from_authorization_header(&rs256_headers).unwrap_or_else(|e| panic!("{e}"));
    breakdown.bench_function("try_accept_now", |b| {
        b.iter(|| assert!(jwt.try_accept_now(&rs256_credentials.borrowed()).is_some()));
    });
    breakdown.finish();

    // Where a cached-Basic hit's time goes, piece by piece, without the layer around it.
    let mut breakdown = c.benchmark_group("basic_cached_hit_breakdown");
    let mut alice_headers = http::HeaderMap::new();
    alice_headers.insert(header::AUTHORIZATION, alice.clone());
    breakdown.bench_function("parse_authorization_header", |b| {
        b.iter(|| {
            let credentials = CredentialsRef::from_authorization_header(&alice_headers);
            assert!(credentials.is_ok_and(|found| found.scheme() == Scheme::Basic));
        });
    });
    breakdown.bench_function("cached_authenticate_hit", |b| {
        b.to_async(&runtime).iter(|| async {
            let credentials = Credentials::Basic {
                username: "alice".into(),
                password: "alice-password".into(),
            };
            let principal = cached.authenticate(credentials).await;
            assert!(matches!(principal, Ok(Some(_))));
        });
    });
    breakdown.finish();

    // The layer's per-request work for a cached credential, piece by piece (issue 16 item 3):
    // parsing the header, the cache key (HMAC-SHA256 as `Cached` computes it; a JWT's
    // AES-256-GCM-SIV key as `Jwt` does), a clock read, the lookup (`try_accept_now`, key
    // included), the span, the extensions insert; the future and response overhead is
    // `auth_layer/exempt_path` against `auth_layer/bare`.
    let mut breakdown = c.benchmark_group("breakdown");
    let mut token_headers = http::HeaderMap::new();
    token_headers.insert(header::AUTHORIZATION, token_header.clone());
    for (name, headers) in [
        ("parse_basic", &alice_headers),
        ("parse_bearer_static", &token_headers),
        ("parse_bearer_jwt_531b", &rs256_headers),
    ] {
        breakdown.bench_function(name, |b| {
            b.iter(|| {
                // What the layer does: borrowed, no copy of the secret.
                let credentials = CredentialsRef::from_authorization_header(headers);
                assert!(credentials.is_ok());
            });
        });
    }
    // What parsing a JWT costs beyond the checks: the copy into a `SecretString`, and its
    // zeroization (a volatile write per byte) when the credentials are dropped.
    let jwt_text =
        rs256_header.to_str().unwrap_or_else(|e| panic!("{e}"))["Bearer ".len()..].to_owned();
    breakdown.bench_function("secret_string_531b_new_drop", |b| {
        b.iter(|| {
            drop(std::hint::black_box(secrecy::SecretString::from(
                jwt_text.as_str(),
            )))
        });
    });
    // What `Cached` computed until session 13: HMAC-SHA256 from a precomputed key state.
    let mac = <Hmac<Sha256> as KeyInit>::new(&[7_u8; 64].into());
    breakdown.bench_function("cache_key_hmac_basic", |b| {
        b.iter(|| {
            let mut mac = mac.clone();
            mac.update(&[1]);
            mac.update(&5_u64.to_be_bytes());
            mac.update(b"alice");
            mac.update(&[0]);
            mac.update(std::hint::black_box(b"alice-password"));
            std::hint::black_box(mac.finalize().into_bytes())
        });
    });
    // What `Cached` computes now over the same bytes: SipHash-2-4 with its 128-bit output.
    let sip = siphasher::sip128::SipHasher24::new_with_key(&[7_u8; 16]);
    breakdown.bench_function("cache_key_siphash24_128_basic", |b| {
        b.iter(|| {
            use siphasher::sip128::Hasher128 as _;
            use std::hash::Hasher as _;
            let mut sip = sip;
            let mut head = [1; 9];
            head[1..].copy_from_slice(&5_u64.to_be_bytes());
            sip.write(&head);
            sip.write(b"alice");
            sip.write(std::hint::black_box(b"alice-password"));
            std::hint::black_box(sip.finish128().as_bytes())
        });
    });
    let alice_credentials =
        Credentials::from_authorization_header(&alice_headers).unwrap_or_else(|e| panic!("{e}"));
    // The bearer-token key of `Jwt`'s cache over the 531-byte RS256 token: AES-256-GCM-SIV's
    // tag (what the cache computes) against HMAC-SHA256 (what it computed before; SHA-NI).
    let gcm_siv = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM_SIV, &[7_u8; 32])
            .unwrap_or_else(|e| panic!("{e}")),
    );
    breakdown.bench_function("cache_key_token_531b_aes256_gcm_siv", |b| {
        b.iter(|| {
            let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key([0; 12]);
            let aad = aws_lc_rs::aead::Aad::from(std::hint::black_box(jwt_text.as_bytes()));
            let tag = gcm_siv.seal_in_place_separate_tag(nonce, aad, &mut []);
            std::hint::black_box(tag.unwrap_or_else(|e| panic!("{e}")))
        });
    });
    breakdown.bench_function("cache_key_token_531b_hmac_sha256", |b| {
        b.iter(|| {
            let mut mac = mac.clone();
            mac.update(std::hint::black_box(jwt_text.as_bytes()));
            std::hint::black_box(mac.finalize().into_bytes())
        });
    });
    // The one clock read a cache hit makes (a JWT hit made three before); tokio's `Instant`
    // is this one without its `test-util` feature.
    breakdown.bench_function("clock_read", |b| {
        b.iter(|| std::hint::black_box(std::time::Instant::now()));
    });
    breakdown.bench_function("cached_basic_try_accept_now", |b| {
        b.iter(|| {
            assert!(
                cached
                    .try_accept_now(&alice_credentials.borrowed())
                    .is_some()
            )
        });
    });
    let tokens = StaticTokens::bearer()
        .token(TOKEN, Authorization::new("ci", Scheme::Bearer))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let token_credentials =
        Credentials::from_authorization_header(&token_headers).unwrap_or_else(|e| panic!("{e}"));
    breakdown.bench_function("static_tokens_try_accept_now", |b| {
        b.iter(|| {
            assert!(
                tokens
                    .try_accept_now(&token_credentials.borrowed())
                    .is_some()
            )
        });
    });
    // No subscriber, as in hello-server; then a WARN-level fmt subscriber, as the gateway runs.
    breakdown.bench_function("span_no_subscriber", |b| {
        b.iter(|| {
            std::hint::black_box(tracing::info_span!(
                "auth",
                principal = tracing::field::Empty
            ))
        });
    });
    let warn_subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(warn_subscriber, || {
        breakdown.bench_function("span_warn_subscriber", |b| {
            b.iter(|| {
                std::hint::black_box(tracing::info_span!(
                    "auth",
                    principal = tracing::field::Empty
                ))
            });
        });
    });
    let principal = Authorization::new("alice", Scheme::Basic);
    breakdown.bench_function("extensions_insert", |b| {
        b.iter_batched(
            || (http::Extensions::new(), principal.clone()),
            |(mut extensions, principal)| {
                extensions.insert(principal);
                extensions
            },
            BatchSize::SmallInput,
        );
    });
    breakdown.bench_function("request_new_and_drop", |b| {
        b.iter(|| std::hint::black_box(request(PATH, Some(&alice))));
    });
    breakdown.finish();

    // For contrast: what every request costs without the cache (nginx's model).
    let mut group = c.benchmark_group("password_hash");
    group.sample_size(10);
    let uncached = ServiceBuilder::new()
        .layer(AuthLayer::new(htpasswd.clone()))
        .service_fn(hello);
    group.bench_function("basic_bcrypt10_uncached", |b| {
        b.to_async(&runtime)
            .iter(|| drive(uncached.clone(), request(PATH, Some(&alice)), true));
    });
    // The bare hash, without the layer or the blocking pool.
    let credentials = || Credentials::Basic {
        username: "alice".into(),
        password: "alice-password".into(),
    };
    group.bench_function("htpasswd_authenticate_bcrypt10", |b| {
        b.to_async(&runtime).iter(|| async {
            let principal = htpasswd.authenticate(credentials()).await;
            assert!(matches!(principal, Ok(Some(_))));
        });
    });
    group.finish();
}

criterion_group!(benches, bench_auth_layer);
criterion_main!(benches);
