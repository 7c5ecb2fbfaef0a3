//! The tonic server behind `AuthLayer`, called through a `SecretHeaderLayer`-wrapped channel.

use tokio::net::TcpListener;
use tower_mlflow_auth::{Authorization, Scheme, authenticators::StaticTokens};

async fn start() -> std::net::SocketAddr {
    let tokens = StaticTokens::bearer()
        .token(
            "right-token-123",
            Authorization::new("trainer", Scheme::Bearer),
        )
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(grpc::serve(listener, tokens));
    addr
}

#[tokio::test]
async fn right_token_reaches_the_handler_with_its_principal() {
    let addr = start().await;
    assert_eq!(
        grpc::check_as(addr, "right-token-123").await.unwrap(),
        "trainer"
    );
}

#[tokio::test]
async fn wrong_token_is_unauthenticated_with_a_readable_message() {
    let addr = start().await;
    let status = grpc::check_as(addr, "wrong-token").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "invalid credentials");
}

#[test]
fn the_demo_binary_succeeds() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_grpc"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("Unauthenticated: invalid credentials"),
        "{stdout}"
    );
    assert!(!stdout.contains("grpc-demo-token"), "{stdout}");
}
