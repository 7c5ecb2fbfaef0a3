use http::StatusCode;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
};

use super::*;

/// Answers every connection with `reply` (raw HTTP/1.1 text) after reading the request
/// head, optionally over TLS. Returns the port.
async fn serve(reply: String, tls: Option<tokio_rustls::TlsAcceptor>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, &reply).await;
                        }
                    }
                    None => answer(stream, &reply).await,
                }
            });
        }
    });
    port
}

async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin, reply: &str) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.flush().await;
}

fn ok_reply(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(url: &str) -> Request<Bytes> {
    Request::get(url).body(Bytes::new()).unwrap()
}

/// A TLS acceptor for `localhost` (aws-lc-rs) and the PEM of the CA that signed it.
#[cfg(feature = "http-client-tls")]
fn localhost_tls() -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

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
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        ca_cert.pem(),
    )
}

#[tokio::test]
async fn reads_status_headers_and_body() {
    let port = serve(ok_reply("hello"), None).await;
    let client = HttpClient::builder().build().unwrap();
    let response = client
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.body().as_ref(), b"hello");
}

#[tokio::test]
async fn failure_status_is_a_response() {
    let reply = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_owned();
    let port = serve(reply, None).await;
    let client = HttpClient::builder().build().unwrap();
    let response = client
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn declared_length_over_the_limit_is_too_large() {
    let port = serve(ok_reply("0123456789"), None).await;
    let client = HttpClient::builder().max_body_len(4).build().unwrap();
    let err = client
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::TooLarge { limit: 4 }), "{err:?}");
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_too_large() {
    let reply = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                 5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"
        .to_owned();
    let port = serve(reply, None).await;
    let client = HttpClient::builder().max_body_len(8).build().unwrap();
    let err = client
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::TooLarge { limit: 8 }), "{err:?}");
}

#[tokio::test]
async fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = HttpClient::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = client
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Timeout { timeout } if timeout == Duration::from_millis(200)),
        "{err:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn refused_connection_is_a_request_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = HttpClient::builder().build().unwrap();
    let err = client
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Request(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}

#[cfg(feature = "http-client-tls")]
#[tokio::test]
async fn https_with_an_extra_ca() {
    let (acceptor, ca_pem) = localhost_tls();
    let port = serve(ok_reply("over tls"), Some(acceptor)).await;
    let url = format!("https://localhost:{port}/");
    let client = HttpClient::builder()
        .ca_pem(ca_pem.clone())
        .build()
        .unwrap();
    let response = client.send(get(&url)).await.unwrap();
    assert_eq!(response.body().as_ref(), b"over tls");
    let only_ca = HttpClient::builder()
        .public_roots(false)
        .ca_pem(ca_pem)
        .build()
        .unwrap();
    assert_eq!(
        only_ca.send(get(&url)).await.unwrap().status(),
        StatusCode::OK
    );
}

#[cfg(feature = "http-client-tls")]
#[tokio::test]
async fn https_to_an_unknown_ca_fails() {
    let (acceptor, _) = localhost_tls();
    let port = serve(ok_reply("over tls"), Some(acceptor)).await;
    let client = HttpClient::builder().build().unwrap();
    let err = client
        .send(get(&format!("https://localhost:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Request(_)), "{err:?}");
}

#[cfg(feature = "http-client-tls")]
#[test]
fn debug_hides_the_client_key() {
    let builder = HttpClient::builder().client_auth_pem("CERT", "PRIVATE KEY BYTES");
    let text = format!("{builder:?}");
    assert!(!text.contains("PRIVATE"), "{text}");
    assert_eq!(
        builder.build().err(),
        Some(HttpClientBuildError::InvalidClientCert)
    );
}

#[test]
fn builds_outside_a_runtime() {
    let client = HttpClient::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(client.timeout(), Duration::from_secs(3));
    assert!(format!("{client:?}").contains("max_body_len"));
}

#[cfg(not(feature = "http-client-tls"))]
#[tokio::test]
async fn https_needs_the_tls_feature() {
    let client = HttpClient::builder().build().unwrap();
    let err = client.send(get("https://127.0.0.1:9/")).await.unwrap_err();
    assert!(matches!(err, HttpError::Request(_)), "{err:?}");
}
