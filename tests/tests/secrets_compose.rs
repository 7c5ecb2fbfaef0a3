//! `SecretHeaderLayer` composed with real clients on loopback: hyper-util's legacy `Client`
//! under tower-http's `FollowRedirectLayer` (a redirect to another origin never carries the
//! credential), and tonic's `Channel` (the credential arrives as gRPC metadata).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::FollowRedirectLayer;
use tower_mlflow_secrets::{
    CachedSecret, DisallowedHost, HostAllowlist, SecretHeaderError, SecretHeaderLayer,
    format::HeaderTemplate,
    source::{SecretSource, Static},
};

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A loopback HTTP/1 server that records each request's path and headers. Requests to
/// `/redirect?to=<url>` get a 302 to `<url>`; everything else gets 200 "ok".
async fn recording_server() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    log.lock()
                        .unwrap()
                        .push((req.uri().path().to_owned(), req.headers().clone()));
                    let target = req
                        .uri()
                        .query()
                        .and_then(|q| q.strip_prefix("to="))
                        .map(str::to_owned);
                    async move {
                        let response = match target {
                            Some(to) if req.uri().path() == "/redirect" => Response::builder()
                                .status(StatusCode::FOUND)
                                .header("location", to)
                                .body(Full::new(Bytes::new())),
                            _ => Response::builder().body(Full::new(Bytes::from_static(b"ok"))),
                        };
                        Ok::<_, Infallible>(response.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn allow_only(addr: SocketAddr) -> HostAllowlist {
    HostAllowlist::builder()
        .host(format!("127.0.0.1:{}", addr.port()))
        .build()
        .unwrap()
}

/// Client = FollowRedirect (outer) + SecretHeader (inner) + hyper-util legacy Client.
async fn get_following_redirects(
    layer: SecretHeaderLayer,
    uri: String,
) -> Result<Response<Incoming>, tower::BoxError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(layer)
        .service(client);
    let request = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    service.oneshot(request).await.map_err(Into::into)
}

async fn redirect_does_not_leak(template: HeaderTemplate, header: HeaderName, expected: &str) {
    let (first, first_seen) = recording_server().await;
    let (second, second_seen) = recording_server().await;
    let layer = SecretHeaderLayer::builder(CachedSecret::new(Static::new("s3cr3t-token")))
        .template(template)
        .allowlist(allow_only(first))
        .build()
        .unwrap();

    // Same origin: the credential is sent on both hops.
    let same = format!("http://{first}/redirect?to=http://{first}/landing");
    let response = get_following_redirects(layer.clone(), same).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    {
        let seen = first_seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for (path, headers) in seen.iter() {
            assert_eq!(headers[&header], expected, "{path}");
        }
    }

    // Another origin (another port): the second server never sees the credential.
    let cross = format!("http://{first}/redirect?to=http://{second}/landing");
    let response = get_following_redirects(layer, cross).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );
    assert_eq!(first_seen.lock().unwrap().len(), 3);
    assert_eq!(first_seen.lock().unwrap()[2].1[&header], expected);
    let seen = second_seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "the redirect was followed");
    assert_eq!(seen[0].0, "/landing");
    assert!(
        !seen[0].1.contains_key(&header),
        "credential leaked: {:?}",
        seen[0].1
    );
    for value in seen[0].1.values() {
        assert!(!value.as_bytes().windows(6).any(|w| w == b"s3cr3t"));
    }
}

#[tokio::test]
async fn redirect_to_another_origin_never_gets_authorization() {
    redirect_does_not_leak(
        HeaderTemplate::bearer(),
        AUTHORIZATION,
        "Bearer s3cr3t-token",
    )
    .await;
}

#[tokio::test]
async fn redirect_to_another_origin_never_gets_a_custom_header() {
    let name = HeaderName::from_static("x-api-key");
    redirect_does_not_leak(HeaderTemplate::raw(name.clone()), name, "s3cr3t-token").await;
}

#[tokio::test]
async fn redirect_to_another_origin_fails_under_the_fail_policy() {
    let (first, _) = recording_server().await;
    let (second, second_seen) = recording_server().await;
    let layer = SecretHeaderLayer::builder(CachedSecret::new(Static::new("s3cr3t-token")))
        .allowlist(allow_only(first))
        .on_disallowed_host(DisallowedHost::Fail)
        .build()
        .unwrap();
    let cross = format!("http://{first}/redirect?to=http://{second}/landing");
    let err = get_following_redirects(layer, cross).await.unwrap_err();
    let err = err.downcast::<SecretHeaderError>().unwrap();
    assert!(err.is_not_allowed(), "{err}");
    assert!(second_seen.lock().unwrap().is_empty());
}

// ---- tonic ----

use tonic::{Status, transport::Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_client::HealthClient,
    health_server::{Health, HealthServer},
};

/// Answers SERVING only when the `authorization` metadata is exactly `Bearer grpc-token`,
/// and counts the calls it sees.
#[derive(Clone, Default)]
struct TokenHealth {
    calls: Arc<Mutex<Vec<Option<String>>>>,
}

#[tonic::async_trait]
impl Health for TokenHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.calls.lock().unwrap().push(auth.clone());
        if auth.as_deref() != Some("Bearer grpc-token") {
            return Err(Status::unauthenticated("no or wrong token"));
        }
        Ok(tonic::Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send>,
    >;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

async fn start_health_server(health: TokenHealth) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(health))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    addr
}

fn grpc_layer(
    source: impl SecretSource,
    addr: SocketAddr,
    default_origin: bool,
) -> SecretHeaderLayer {
    let builder = SecretHeaderLayer::builder(CachedSecret::new(source))
        .template(HeaderTemplate::bearer())
        .allowlist(allow_only(addr));
    let builder = if default_origin {
        builder.default_origin(format!("http://{addr}").parse().unwrap())
    } else {
        builder
    };
    builder.build().unwrap()
}

async fn check(layer: SecretHeaderLayer, addr: SocketAddr) -> Result<i32, Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service(channel);
    let mut client = HealthClient::new(service);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status)
}

#[tokio::test]
async fn tonic_channel_carries_the_token_as_metadata() {
    let health = TokenHealth::default();
    let addr = start_health_server(health.clone()).await;
    let status = check(grpc_layer(Static::new("grpc-token"), addr, true), addr)
        .await
        .unwrap();
    assert_eq!(status, i32::from(ServingStatus::Serving));
    assert_eq!(
        health.calls.lock().unwrap().as_slice(),
        [Some("Bearer grpc-token".to_owned())]
    );
}

#[tokio::test]
async fn tonic_with_origin_is_checked_without_a_default_origin() {
    let health = TokenHealth::default();
    let addr = start_health_server(health.clone()).await;
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(grpc_layer(Static::new("grpc-token"), addr, false))
        .service(channel);
    let origin = format!("http://{addr}").parse().unwrap();
    let response = HealthClient::with_origin(service, origin)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        response.into_inner().status,
        i32::from(ServingStatus::Serving)
    );
}

#[tokio::test]
async fn tonic_relative_requests_without_default_origin_carry_no_token() {
    let health = TokenHealth::default();
    let addr = start_health_server(health.clone()).await;
    let err = check(grpc_layer(Static::new("grpc-token"), addr, false), addr)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(health.calls.lock().unwrap().as_slice(), [None]);
}

#[tokio::test]
async fn tonic_fails_closed_when_the_secret_is_unavailable() {
    let health = TokenHealth::default();
    let addr = start_health_server(health.clone()).await;
    let source = tower_mlflow_secrets::source::Env::new("TOWER_MLFLOW_SECRETS_TEST_UNSET_VAR");
    let err = check(grpc_layer(source, addr, true), addr)
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert!(health.calls.lock().unwrap().is_empty(), "nothing was sent");
}
