//! The Vault source over https with a custom CA (`VAULT_CACERT`) and a client certificate,
//! against an in-process TLS server (test CA made with rcgen) that answers one KV v1 read
//! the way Vault's documented HTTP API does, and requires a client certificate.
#![cfg(feature = "vault")]

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
};
use secrecy::ExposeSecret;
use tower_mlflow_secrets::source::{
    SecretSource,
    vault::{KvVersion, Vault, VaultAuth, VaultBuildError},
};

struct Pki {
    ca_pem: String,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client_pem: (String, String),
    ca_der: CertificateDer<'static>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["mlflow-client".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        server: (
            server_cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        ),
        client_pem: (client_cert.pem(), client_key.serialize_pem()),
    }
}

/// Serves `GET /v1/kv/app` (KV v1) over TLS with a required client certificate.
async fn start_tls_vault(pki: &Pki) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|req: Request<Incoming>| async move {
                    let ok = req.uri().path() == "/v1/kv/app"
                        && req
                            .headers()
                            .get("x-vault-token")
                            .is_some_and(|t| t == "hvs.tls");
                    let (status, body) = if ok {
                        (200, r#"{"data":{"token":"over-tls"},"lease_duration":0}"#)
                    } else {
                        (403, r#"{"errors":["permission denied"]}"#)
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

fn builder(port: u16) -> tower_mlflow_secrets::source::vault::VaultBuilder {
    Vault::builder(format!("https://localhost:{port}"))
        .auth(VaultAuth::token("hvs.tls"))
        .mount("kv")
        .kv_version(KvVersion::V1)
        .path("app")
        .field("token")
}

#[tokio::test]
async fn custom_ca_and_client_certificate() {
    let pki = pki();
    let port = start_tls_vault(&pki).await;
    let source = builder(port)
        .ca_pem(pki.ca_pem.clone())
        .client_cert_pem(pki.client_pem.0.clone(), pki.client_pem.1.clone())
        .build()
        .unwrap();
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.secret().expose_secret(), "over-tls");
}

#[tokio::test]
async fn ca_from_a_file_like_vault_cacert() {
    let pki = pki();
    let port = start_tls_vault(&pki).await;
    let dir = std::env::temp_dir().join(format!("tower-mlflow-vault-tls-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("client.pem"),
        dir.join("client.key"),
    );
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.client_pem.0).unwrap();
    std::fs::write(&key, &pki.client_pem.1).unwrap();
    let source = builder(port)
        .ca_pem_file(&ca)
        .client_cert_files(&cert, &key)
        .build()
        .unwrap();
    assert_eq!(
        source.fetch().await.unwrap().secret().expose_secret(),
        "over-tls"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unknown_ca_is_refused() {
    let pki = pki();
    let port = start_tls_vault(&pki).await;
    // Public roots only: the test CA is not trusted.
    let source = builder(port)
        .client_cert_pem(pki.client_pem.0.clone(), pki.client_pem.1.clone())
        .build()
        .unwrap();
    assert!(source.fetch().await.is_err());
}

#[tokio::test]
async fn missing_client_certificate_is_refused() {
    let pki = pki();
    let port = start_tls_vault(&pki).await;
    let source = builder(port).ca_pem(pki.ca_pem.clone()).build().unwrap();
    assert!(source.fetch().await.is_err());
}

#[test]
fn invalid_pem_is_a_build_error() {
    let err = builder(1).ca_pem("garbage").build().err();
    assert_eq!(err, Some(VaultBuildError::InvalidCa));
    let err = builder(1)
        .client_cert_pem("garbage", "garbage")
        .build()
        .err();
    assert_eq!(err, Some(VaultBuildError::InvalidClientCert));
    let err = builder(1).ca_pem_file("/nonexistent/ca.pem").build().err();
    assert!(matches!(err, Some(VaultBuildError::UnreadableFile(_))));
}
