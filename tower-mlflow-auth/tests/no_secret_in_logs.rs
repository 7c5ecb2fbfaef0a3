//! Credentials never appear in any log line at any level.

use std::{
    convert::Infallible,
    io,
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use secrecy::ExposeSecret;
use tower::{ServiceBuilder, ServiceExt};
use tower_mlflow_auth::{AuthLayer, Authorization, Credentials, Scheme};
use tracing_subscriber::fmt::{MakeWriter, format::FmtSpan};

const PASSWORD: &str = "correct-horse-battery-staple";
const TOKEN: &str = "tok_4f9a8b7c6d5e";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

#[derive(Debug)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("user store unreachable")
    }
}
impl std::error::Error for Down {}

#[tokio::test]
async fn trace_output_never_contains_credentials() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(buffer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let authenticator = |credentials: Credentials| async move {
        // Authenticators may log what they receive; `Credentials`' Debug must redact.
        tracing::trace!(?credentials, "verifying");
        match credentials {
            Credentials::Basic { username, password } if password.expose_secret() == PASSWORD => {
                Ok(Some(Authorization::new(username, Scheme::Basic)))
            }
            Credentials::Bearer { token } if token.expose_secret() == TOKEN => Err(Down),
            _ => Ok(None),
        }
    };
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(authenticator))
        .service_fn(|request: Request<Full<Bytes>>| async move {
            // An inner service that logs the whole request, headers included.
            tracing::trace!(?request, "inner service");
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        });

    let basic = |password: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
        format!("Basic {encoded}")
    };
    let cases = [
        (basic(PASSWORD), StatusCode::OK),
        (
            basic(&format!("{PASSWORD}-wrong")),
            StatusCode::UNAUTHORIZED,
        ),
        (format!("Bearer {TOKEN}"), StatusCode::SERVICE_UNAVAILABLE),
        (format!("Bearer {TOKEN} extra"), StatusCode::UNAUTHORIZED),
    ];
    for (authorization, expected) in cases {
        let request = Request::get("/api/2.0/mlflow/runs/get")
            .header(header::AUTHORIZATION, authorization)
            .body(Full::default())
            .unwrap();
        assert_eq!(
            service.clone().oneshot(request).await.unwrap().status(),
            expected
        );
    }

    let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // The capture works: the principal, the inner request and the backend failure are there.
    assert!(
        output.contains("principal=\"alice\"") || output.contains("principal=alice"),
        "{output}"
    );
    // Recorded once a request, whichever way it was accepted.
    assert!(
        !output.contains("principal=\"alice\" principal="),
        "{output}"
    );
    assert!(!output.contains("principal=alice principal="), "{output}");
    assert!(output.contains("inner service"), "{output}");
    assert!(output.contains("user store unreachable"), "{output}");
    assert!(output.contains("Sensitive"), "{output}");
    // The secrets are not.
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    for secret in [PASSWORD, TOKEN, encoded.as_str(), "horse-battery"] {
        assert!(
            !output.contains(secret),
            "{secret:?} leaked into:\n{output}"
        );
    }
}
