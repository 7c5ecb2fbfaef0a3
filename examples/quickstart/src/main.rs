//! Quickstart: an axum service on 127.0.0.1 protected by `AuthLayer`.
//!
//! It creates one in-memory user with a random password, shows an anonymous request being
//! refused, an authenticated one served, one rule of a policy (only admins may write, and
//! alice is not one: her DELETE is a 403) and the exempt `/health` open, then keeps serving
//! until Ctrl-C. `--once` exits after the demonstration (exit status 1 if anything was not
//! as expected). `--listen ADDR` picks the address (default `127.0.0.1:5050`, or a free port
//! if that one is taken).
//!
//! ```text
//! cargo run -p quickstart
//! ```

use std::{convert::Infallible, error::Error, net::SocketAddr, process::ExitCode};

use axum::{
    Router,
    routing::{delete, get},
};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tower_mlflow_auth::{
    AuthLayer, Authorization, Credentials, Exemptions, MlflowRejectionResponse, Scheme,
    policy::{allow_methods, any_of, require_admin},
};

const USER: &str = "alice";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("quickstart: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<SocketAddr>())
        .transpose()?;

    let password = SecretString::from(random_password()?);
    let app = app(password.clone());

    let listener = match listen {
        Some(addr) => TcpListener::bind(addr).await?,
        None => match TcpListener::bind("127.0.0.1:5050").await {
            Ok(listener) => listener,
            Err(_) => TcpListener::bind("127.0.0.1:0").await?,
        },
    };
    let addr = listener.local_addr()?;
    println!("quickstart: serving http://{addr} with AuthLayer (user {USER:?}, a random password)");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let ok = demonstrate(addr, &password).await?;
    if once {
        server.abort();
        return Ok(ok);
    }
    println!();
    println!("Try it yourself (Ctrl-C to stop):");
    println!("  curl -i http://{addr}/api/2.0/mlflow/experiments/search");
    println!(
        "  curl -i -u {USER}:{} http://{addr}/api/2.0/mlflow/experiments/search",
        password.expose_secret()
    );
    println!(
        "  curl -i -u {USER}:{} -X DELETE http://{addr}/api/2.0/mlflow/registered-models/delete",
        password.expose_secret()
    );
    println!("  curl -i http://{addr}/health");
    tokio::select! {
        result = server => { result??; }
        _ = tokio::signal::ctrl_c() => println!("quickstart: stopping"),
    }
    Ok(ok)
}

/// The service: MLflow-like search and delete endpoints behind `AuthLayer`, with `/health`
/// exempt and one rule: only admins may write.
fn app(password: SecretString) -> Router {
    // An in-memory user, compared in constant time.
    let authenticator = move |credentials: Credentials| {
        let password = password.clone();
        async move {
            Ok::<_, Infallible>(match credentials {
                Credentials::Basic {
                    username,
                    password: given,
                } => {
                    let user_ok: bool = username.as_bytes().ct_eq(USER.as_bytes()).into();
                    let pass_ok: bool = given
                        .expose_secret()
                        .as_bytes()
                        .ct_eq(password.expose_secret().as_bytes())
                        .into();
                    (user_ok & pass_ok).then(|| Authorization::new(username, Scheme::Basic))
                }
                _ => None,
            })
        }
    };
    // Admins may do anything; everyone else may only read. A denial is MLflow's own 403,
    // `Permission denied`.
    let only_admins_write = any_of(require_admin(), allow_methods([Method::GET, Method::HEAD]));
    let layer = AuthLayer::new(authenticator)
        .with_exemptions(Exemptions::mlflow_defaults())
        .with_policy(only_admins_write)
        .with_rejection_response(MlflowRejectionResponse);
    Router::new()
        .route(
            "/api/2.0/mlflow/experiments/search",
            get(|who: Authorization| async move { search_response(who.subject()) }),
        )
        .route(
            "/api/2.0/mlflow/registered-models/delete",
            delete(|| async { "{}" }),
        )
        .route("/health", get(|| async { "OK" }))
        .layer(layer)
}

/// What MLflow answers to an empty search, plus who asked.
fn search_response(user: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"experiments":[],"requested_by":"{user}"}}"#),
    )
        .into_response()
}

/// Sends the four demonstration requests and prints what happened.
async fn demonstrate(addr: SocketAddr, password: &SecretString) -> Result<bool, Box<dyn Error>> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let search = "/api/2.0/mlflow/experiments/search";
    let delete_model = "/api/2.0/mlflow/registered-models/delete";
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{USER}:{}", password.expose_secret()));
    let alice = Some(format!("Basic {basic}"));
    let cases = [
        (
            Method::GET,
            "anonymous",
            search,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "as alice",
            search,
            alice.clone(),
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "as alice",
            delete_model,
            alice,
            StatusCode::FORBIDDEN,
        ),
        (Method::GET, "anonymous", "/health", None, StatusCode::OK),
    ];
    let mut all_ok = true;
    for (method, who, path, authorization, expected) in cases {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}{path}"));
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let response = client.request(request.body(Full::default())?).await?;
        let status = response.status();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| format!(" (WWW-Authenticate: {})", v.to_str().unwrap_or("?")))
            .unwrap_or_default();
        let body = response.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body);
        let verdict = if status == expected {
            "ok"
        } else {
            "UNEXPECTED"
        };
        all_ok &= status == expected;
        println!("  {method} {path} {who:<9} -> {status}{challenge} [{verdict}]");
        println!("      {}", body.chars().take(100).collect::<String>());
    }
    Ok(all_ok)
}

/// 20 random alphanumeric characters from the OS generator.
fn random_password() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}
