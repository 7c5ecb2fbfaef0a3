//! Demonstrates gRPC authentication end to end on 127.0.0.1: a right token is served, a
//! wrong one is refused with `Unauthenticated`.
//!
//! ```text
//! cargo run -p grpc
//! ```

use std::process::ExitCode;

use tokio::net::TcpListener;
use tower_mlflow_auth::{Authorization, Scheme, authenticators::StaticTokens};

const TOKEN: &str = "grpc-demo-token-7f3a";

#[tokio::main]
async fn main() -> ExitCode {
    let tokens = match StaticTokens::bearer()
        .token(TOKEN, Authorization::new("demo-client", Scheme::Bearer))
        .build()
    {
        Ok(tokens) => tokens,
        Err(error) => {
            eprintln!("grpc: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("grpc: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(addr) = listener.local_addr() else {
        return ExitCode::FAILURE;
    };
    println!("grpc: health service behind AuthLayer on {addr}");
    tokio::spawn(grpc::serve(listener, tokens));

    let right = grpc::check_as(addr, TOKEN).await;
    match &right {
        Ok(who) => println!("  Check with the right token -> SERVING, principal {who:?}"),
        Err(status) => println!(
            "  Check with the right token -> {:?}: {}",
            status.code(),
            status.message()
        ),
    }
    let wrong = grpc::check_as(addr, "not-the-token").await;
    match &wrong {
        Ok(who) => println!("  Check with a wrong token -> served as {who:?} (unexpected)"),
        Err(status) => println!(
            "  Check with a wrong token -> {:?}: {}",
            status.code(),
            status.message()
        ),
    }
    let as_expected =
        right.is_ok() && wrong.is_err_and(|status| status.code() == tonic::Code::Unauthenticated);
    if as_expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
