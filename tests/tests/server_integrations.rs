//! `AuthLayer` under real servers on loopback: a plain hyper 1 server, an axum server with a
//! policy, and a tonic server with a tonic client.

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_mlflow_auth::{
    AuthLayer, Authorization, Credentials, Exemptions, MlflowRejectionResponse, Policy, Scheme,
    policy::{AllowAll, allow_methods, any_of, require_admin},
};

#[derive(Debug)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("backend down")
    }
}
impl std::error::Error for Down {}

/// `Bearer t0ken` is `ci`; `Bearer r00t` is `root`, an admin; `Bearer down` is a backend
/// failure; anything else is rejected.
async fn authenticate(credentials: Credentials) -> Result<Option<Authorization>, Down> {
    match credentials {
        Credentials::Bearer { token } if token.expose_secret() == "t0ken" => {
            Ok(Some(Authorization::new("ci", Scheme::Bearer)))
        }
        Credentials::Bearer { token } if token.expose_secret() == "r00t" => Ok(Some(
            Authorization::new("root", Scheme::Bearer).with_admin(true),
        )),
        Credentials::Bearer { token } if token.expose_secret() == "down" => Err(Down),
        _ => Ok(None),
    }
}

// ---- hyper 1 ----

async fn start_hyper_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(authenticate).with_exemptions(Exemptions::mlflow_defaults()))
        .service_fn(|request: Request<Incoming>| async move {
            let who = request
                .extensions()
                .get::<Authorization>()
                .map_or("anonymous".to_owned(), |a| a.subject().to_owned());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who))))
        });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn hyper_get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, http::HeaderMap, String) {
    hyper_send(addr, Method::GET, path, token).await
}

async fn hyper_send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, http::HeaderMap, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn hyper_server_authenticates_over_the_wire() {
    let addr = start_hyper_server().await;

    let (status, headers, _) = hyper_get(addr, "/api/2.0/mlflow/experiments/search", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Basic realm="mlflow""#);

    let (status, _, body) =
        hyper_get(addr, "/api/2.0/mlflow/experiments/search", Some("t0ken")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ci");

    let (status, _, _) = hyper_get(addr, "/api/2.0/mlflow/experiments/search", Some("down")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let (status, _, body) = hyper_get(addr, "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "anonymous");

    // Encoded spellings of an exempt path are authenticated, not exempt.
    let (status, _, _) = hyper_get(addr, "/%68ealth", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---- axum, with a policy ----

/// An axum server where everyone may read and only admins may delete, with MLflow's texts.
async fn start_axum_server() -> SocketAddr {
    use axum::routing::get;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = AuthLayer::new(authenticate)
        .with_policy(any_of(require_admin(), allow_methods([Method::GET])))
        .with_rejection_response(MlflowRejectionResponse);
    let app = axum::Router::new()
        .route(
            "/api/2.0/mlflow/registered-models/delete",
            get(|who: Authorization| async move { format!("read by {}", who.subject()) }).delete(
                |who: Authorization| async move { format!("deleted by {}", who.subject()) },
            ),
        )
        .layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn axum_server_answers_mlflows_403_for_a_denied_request() {
    let addr = start_axum_server().await;
    let path = "/api/2.0/mlflow/registered-models/delete";

    let (status, headers, body) = hyper_send(addr, Method::DELETE, path, Some("t0ken")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, "Permission denied");
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert!(!headers.contains_key(header::WWW_AUTHENTICATE));

    let (status, _, body) = hyper_send(addr, Method::DELETE, path, Some("r00t")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "deleted by root"));
    let (status, _, body) = hyper_send(addr, Method::GET, path, Some("t0ken")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "read by ci"));
    // Authentication still comes first: no credentials is a 401, not a 403.
    let (status, _, _) = hyper_send(addr, Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---- tonic ----

// The example's health service: answers SERVING and names the principal it found in the
// request extensions in the `x-principal` response metadata.
use grpc::WhoAmIHealth;
use tonic::{Code, Status, metadata::MetadataValue};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient, health_server::HealthServer,
};

async fn start_tonic_server<P: Policy>(policy: P) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(AuthLayer::new(authenticate).with_policy(policy))
            .add_service(HealthServer::new(WhoAmIHealth))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    addr
}

async fn tonic_check(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<tonic::Response<HealthCheckResponse>, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
    }
    HealthClient::new(channel).check(request).await
}

#[tokio::test]
async fn tonic_server_reads_the_principal_from_extensions() {
    let addr = start_tonic_server(AllowAll).await;
    let response = tonic_check(addr, Some("t0ken")).await.unwrap();
    assert_eq!(response.metadata().get("x-principal").unwrap(), "ci");
    assert_eq!(response.get_ref().status, i32::from(ServingStatus::Serving));
}

#[tokio::test]
async fn tonic_client_sees_unauthenticated_and_unavailable() {
    let addr = start_tonic_server(AllowAll).await;

    let status = tonic_check(addr, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "missing credentials");

    let status = tonic_check(addr, Some("wrong")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "invalid credentials");

    let status = tonic_check(addr, Some("down")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn tonic_client_sees_permission_denied_from_the_policy() {
    let addr = start_tonic_server(require_admin()).await;

    let status = tonic_check(addr, Some("t0ken")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "permission denied");

    let response = tonic_check(addr, Some("r00t")).await.unwrap();
    assert_eq!(response.metadata().get("x-principal").unwrap(), "root");

    let status = tonic_check(addr, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}
