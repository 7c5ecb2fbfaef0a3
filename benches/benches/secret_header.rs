//! Per-request overhead of `SecretHeaderLayer` on its cached path against the bare client
//! service.
//!
//! ```text
//! cargo bench -p tower-mlflow-benches --bench secret_header
//! ```
//!
//! The "client" is a `service_fn` that answers at once, so the figure is the layer's own
//! cost: reading the cached secret, checking the request's origin against the allowlist and
//! inserting the (pre-rendered) header.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_mlflow_secrets::{
    CachedSecret, HostAllowlist, SecretHeaderLayer, format::HeaderTemplate, source::Static,
};

type Body = Full<Bytes>;

const URL: &str = "https://mlflow.example.com/api/2.0/mlflow/runs/get";

/// The bare client: answers 200 when an `Authorization` header is present, 400 otherwise.
async fn client(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Body::default());
    if !request.headers().contains_key(header::AUTHORIZATION) {
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

fn request(url: &str, authorization: bool) -> Request<Body> {
    let mut request = Request::new(Body::default());
    if let Ok(uri) = url.parse() {
        *request.uri_mut() = uri;
    }
    if authorization {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer already-there"),
        );
    }
    request
}

async fn drive<S>(service: S, request: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let response = service
        .oneshot(request)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(response.status().is_success(), "no credential was sent");
    std::hint::black_box(response);
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("secret_header");

    let bare = service_fn(client);
    group.bench_function("bare_client", |b| {
        b.to_async(&runtime)
            .iter(|| drive(bare, request(URL, true)));
    });

    let secret = CachedSecret::builder(Static::new("mlflow-token-5d1f0c7e"))
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let layer = SecretHeaderLayer::builder(secret)
        .template(HeaderTemplate::bearer())
        .allowlist(
            HostAllowlist::builder()
                .host("mlflow.example.com")
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let with_secret = ServiceBuilder::new().layer(layer).service_fn(client);
    // The first request fetches the secret; everything measured after it is a cache hit.
    runtime.block_on(drive(with_secret.clone(), request(URL, false)));
    group.bench_function("cached_secret", |b| {
        b.to_async(&runtime)
            .iter(|| drive(with_secret.clone(), request(URL, false)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
