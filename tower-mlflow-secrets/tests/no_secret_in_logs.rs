//! A full flow at TRACE never shows the secret in logs or in any `Debug`/`Display` output.
//!
//! Alone in its test binary: `tracing`'s level and interest caches are process-wide, and
//! tests running in parallel without a subscriber can make TRACE events vanish.

use std::{
    convert::Infallible,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::Full;
use secrecy::SecretString;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_mlflow_secrets::{
    CachedSecret, HostAllowlist, SecretHeaderLayer,
    format::HeaderTemplate,
    source::{Fetched, SecretSource, SourceError},
};

/// Returns the secrets in order (the last one repeats).
#[derive(Clone)]
struct Rotating {
    secrets: Arc<Mutex<Vec<String>>>,
    fetches: Arc<AtomicUsize>,
}

impl SecretSource for Rotating {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let mut secrets = self.secrets.lock().unwrap();
        let secret = if secrets.len() > 1 {
            secrets.remove(0)
        } else {
            secrets[0].clone()
        };
        Ok(Fetched::new(SecretString::from(secret)))
    }
}

struct Failing;

impl SecretSource for Failing {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        Err(SourceError::permanent("vault said no"))
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

fn localhost() -> HostAllowlist {
    HostAllowlist::builder()
        .host("localhost:*")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn full_flow_at_trace_never_shows_the_secret() {
    const USER: &str = "mlflow-admin";
    const PASSWORD: &str = "Pa55w0rd-hunter2-zz";
    let pair = format!("{USER}:{PASSWORD}");
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&pair)
    };
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let source = Rotating {
        secrets: Arc::new(Mutex::new(vec![
            "wrong:password-hunter2".to_owned(),
            pair.clone(),
        ])),
        fetches: Arc::default(),
    };
    let secret = CachedSecret::builder(source).build().unwrap();
    let layer = SecretHeaderLayer::builder(secret.clone())
        .template(HeaderTemplate::basic())
        .allowlist(localhost())
        .recover_unauthorized(Duration::from_secs(1))
        .build()
        .unwrap();
    // The server accepts only the right credential, and records what it was sent.
    let expected = format!("Basic {encoded}");
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let inner = service_fn({
        let seen = Arc::clone(&seen);
        move |request: Request<Full<Bytes>>| {
            seen.lock().unwrap().push(request.headers().clone());
            let ok = request
                .headers()
                .get(AUTHORIZATION)
                .is_some_and(|v| v == expected.as_str());
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap(),
                )
            }
        }
    });
    let service = ServiceBuilder::new().layer(layer.clone()).service(inner);

    // 401 -> refresh -> replay -> 200; then a host that is not allowed; then a failing source.
    let response = service
        .clone()
        .oneshot(
            Request::post("http://localhost:1/api")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = service
        .clone()
        .oneshot(
            Request::get("https://elsewhere.test/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let failing = ServiceBuilder::new()
        .layer(
            SecretHeaderLayer::builder(CachedSecret::new(Failing))
                .template(HeaderTemplate::basic())
                .allowlist(localhost())
                .build()
                .unwrap(),
        )
        .service(service_fn(|_request: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let err = failing
        .oneshot(
            Request::get("http://localhost:1/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap_err();
    let snapshot = secret.get().await.unwrap();
    let debug_text = format!(
        "{layer:?} {service:?} {secret:?} {snapshot:?} {err} {err:?} {:?} {:?}",
        HeaderTemplate::basic(),
        seen.lock().unwrap()
    );

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("TRACE"),
        "TRACE events were captured:\n{logs}"
    );
    assert!(logs.contains("replaying"), "the flow ran:\n{logs}");
    for needle in [PASSWORD, "hunter2", &pair, &encoded] {
        assert!(!logs.contains(needle), "log leaks {needle:?}:\n{logs}");
        assert!(
            !debug_text.contains(needle),
            "Debug leaks {needle:?}:\n{debug_text}"
        );
    }
}
