//! Per-request overhead of `AuthLayer` against the bare inner service.
//!
//! `cargo bench -p tower-mlflow-benches --bench auth_layer`

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_mlflow_auth::{AuthLayer, Authorization, Credentials, Exemptions, Scheme};

type Body = Full<Bytes>;

async fn hello(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Full::from("hello")))
}

async fn static_bearer(credentials: Credentials) -> Result<Option<Authorization>, Infallible> {
    Ok(match credentials {
        Credentials::Bearer { token }
            if bool::from(token.expose_secret().as_bytes().ct_eq(b"t0ken-t0ken-t0ken")) =>
        {
            Some(Authorization::new("ci", Scheme::Bearer))
        }
        _ => None,
    })
}

fn request(path: &str, authorization: Option<&'static str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    builder.body(Body::default()).unwrap_or_default()
}

/// One request through a clone of `service`, as a server does per connection task.
async fn drive<S>(service: S, request: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let response = service.oneshot(request).await;
    std::hint::black_box(response.unwrap_or_else(|e| match e {}));
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let layer = AuthLayer::new(static_bearer).with_exemptions(Exemptions::mlflow_defaults());
    let mut group = c.benchmark_group("auth_layer");

    let bare = service_fn(hello);
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| drive(bare, request("/api/2.0/mlflow/runs/get", None)));
    });

    let authed = ServiceBuilder::new().layer(layer).service_fn(hello);
    group.bench_function("exempt_path", |b| {
        b.to_async(&runtime)
            .iter(|| drive(authed.clone(), request("/health", None)));
    });
    group.bench_function("static_bearer", |b| {
        b.to_async(&runtime).iter(|| {
            drive(
                authed.clone(),
                request("/api/2.0/mlflow/runs/get", Some("Bearer t0ken-t0ken-t0ken")),
            )
        });
    });
    group.bench_function("rejected_missing", |b| {
        b.to_async(&runtime)
            .iter(|| drive(authed.clone(), request("/api/2.0/mlflow/runs/get", None)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
