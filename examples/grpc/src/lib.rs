//! gRPC on both sides: a tonic server behind `AuthLayer` and a tonic client whose `Channel`
//! is wrapped in `SecretHeaderLayer`.
//!
//! The service is the standard gRPC health service (`grpc.health.v1.Health`, from
//! `tonic-health`, so no protobuf compiler is needed). Its `Check` answers `SERVING` and
//! names the authenticated principal in the `x-principal` response metadata, read from the
//! request extensions where `AuthLayer` put it.

use std::{net::SocketAddr, pin::Pin};

use secrecy::SecretString;
use tokio::net::TcpListener;
use tonic::{Status, metadata::MetadataValue, transport::Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_client::HealthClient,
    health_server::{Health, HealthServer},
};
use tower::ServiceBuilder;
use tower_mlflow_auth::{AuthLayer, Authorization, authenticators::StaticTokens};
use tower_mlflow_secrets::{
    CachedSecret, HostAllowlist, SecretHeaderLayer, format::HeaderTemplate, source::Static,
};

/// The health service, reporting who asked.
#[derive(Debug, Default)]
pub struct WhoAmIHealth;

#[tonic::async_trait]
impl Health for WhoAmIHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, Status> {
        let who = request
            .extensions()
            .get::<Authorization>()
            .map(|a| a.subject().to_owned())
            .ok_or_else(|| Status::internal("no principal: is AuthLayer installed?"))?;
        let mut response = tonic::Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        });
        let who =
            MetadataValue::try_from(who).map_err(|_| Status::internal("unprintable principal"))?;
        response.metadata_mut().insert("x-principal", who);
        Ok(response)
    }

    type WatchStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch is not part of this example"))
    }
}

/// Serves the health service behind `AuthLayer` on `listener`, accepting `tokens`.
///
/// # Errors
///
/// When the server fails.
pub async fn serve(
    listener: TcpListener,
    tokens: StaticTokens,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .layer(AuthLayer::new(tokens))
        .add_service(HealthServer::new(WhoAmIHealth))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
}

/// Calls `Check` on the server at `addr` with `token` as the bearer credential, injected by
/// `SecretHeaderLayer` around the `Channel`. Returns the principal the server saw.
///
/// # Errors
///
/// The server's status: `Unauthenticated` for a wrong token.
pub async fn check_as(addr: SocketAddr, token: &str) -> Result<String, Status> {
    let origin: http::Uri = format!("http://{addr}")
        .parse()
        .map_err(|_| Status::invalid_argument("bad address"))?;
    let channel = Endpoint::from(origin.clone())
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let allowlist = HostAllowlist::builder()
        .host(format!("http://{addr}"))
        .build()
        .map_err(|e| Status::internal(e.to_string()))?;
    let layer =
        SecretHeaderLayer::builder(CachedSecret::new(Static::new(SecretString::from(token))))
            .template(HeaderTemplate::bearer())
            .allowlist(allowlist)
            // tonic's Channel fills in the origin below this layer.
            .default_origin(origin)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
    let mut client = HealthClient::new(ServiceBuilder::new().layer(layer).service(channel));
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    response
        .metadata()
        .get("x-principal")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| Status::internal("no x-principal in the response"))
}
