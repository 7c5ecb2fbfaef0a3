//! `AwsSecretsManager` against a real `moto_server` (moto 5.2.5) started on loopback: create a
//! secret, fetch it, rotate it with `PutSecretValue` and see the new value after the cache
//! TTL, a binary secret, a missing secret (a clear, permanent error, fetched once).

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use secrecy::ExposeSecret;
use tower_mlflow_secrets::{
    CachedSecret,
    source::{
        Fetched, SecretSource, SourceError,
        aws::{AwsSecretsManager, aws_config, sdk},
    },
};
use tower_mlflow_tests::{ChildGuard, free_port, venv_bin, wait_for_port};

struct Moto {
    _child: ChildGuard,
    endpoint: String,
}

fn start_moto() -> Moto {
    let port = free_port();
    let child = ChildGuard::spawn(
        Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for_port(addr, Duration::from_secs(30));
    Moto {
        _child: child,
        endpoint: format!("http://{addr}"),
    }
}

/// SDK configuration with dummy static credentials (moto does not check signatures unless
/// its auth mode is on) and the moto endpoint.
async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(sdk::config::Credentials::new(
            "AKIAMOTOTEST",
            "moto-secret-key",
            None,
            None,
            "tests",
        ))
        .endpoint_url(&moto.endpoint)
        .load()
        .await
}

/// Counts fetches, to show what `CachedSecret` retries.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    calls: Arc<AtomicU32>,
}

impl<S: SecretSource + Clone> SecretSource for Counting<S> {
    fn fetch(&self) -> impl Future<Output = Result<Fetched, SourceError>> + Send {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.clone();
        async move { inner.fetch().await }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto_server; run scripts/test"]
async fn secrets_manager_against_moto() {
    let moto = start_moto();
    let config = sdk_config(&moto).await;
    let admin = sdk::Client::new(&config);

    // 1. A string secret, fetched through the cache.
    admin
        .create_secret()
        .name("mlflow/auth")
        .secret_string(r#"{"token":"first"}"#)
        .send()
        .await
        .unwrap();
    let source = AwsSecretsManager::builder("mlflow/auth")
        .sdk_config(config.clone())
        .endpoint_url(&moto.endpoint)
        .build()
        .await
        .unwrap();
    let secret = CachedSecret::builder(source.clone())
        .ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(
        secret.get().await.unwrap().secret().expose_secret(),
        r#"{"token":"first"}"#
    );

    // 2. Rotation: PutSecretValue, then the new value once the TTL has passed.
    admin
        .put_secret_value()
        .secret_id("mlflow/auth")
        .secret_string(r#"{"token":"second"}"#)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut value = String::new();
    for _ in 0..50 {
        value = secret
            .get()
            .await
            .unwrap()
            .secret()
            .expose_secret()
            .to_owned();
        if value.contains("second") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(value, r#"{"token":"second"}"#);

    // The previous version is still reachable by its stage.
    let previous = AwsSecretsManager::builder("mlflow/auth")
        .sdk_config(config.clone())
        .version_stage("AWSPREVIOUS")
        .build()
        .await
        .unwrap();
    assert_eq!(
        previous.fetch().await.unwrap().secret().expose_secret(),
        r#"{"token":"first"}"#
    );

    // 3. A binary secret: the stored bytes come back as is, decoded once.
    admin
        .create_secret()
        .name("mlflow/binary")
        .secret_binary(sdk::primitives::Blob::new(
            br#"{"token":"bin-tok"}"#.to_vec(),
        ))
        .send()
        .await
        .unwrap();
    let binary = AwsSecretsManager::builder("mlflow/binary")
        .sdk_config(config.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(
        binary.fetch().await.unwrap().secret().expose_secret(),
        r#"{"token":"bin-tok"}"#
    );

    // 4. A missing secret: a clear, permanent error, and the cache does not retry it.
    let missing = AwsSecretsManager::builder("mlflow/missing")
        .sdk_config(config.clone())
        .build()
        .await
        .unwrap();
    let err = missing.fetch().await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ResourceNotFoundException") && text.contains("mlflow/missing"),
        "{text}"
    );
    let calls = Arc::new(AtomicU32::new(0));
    let counted = CachedSecret::builder(Counting {
        inner: missing,
        calls: calls.clone(),
    })
    .max_attempts(5)
    .build()
    .unwrap();
    assert!(counted.get().await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto_server; run scripts/test"]
async fn plain_http_endpoints_only_on_loopback() {
    let moto = start_moto();
    let config = sdk_config(&moto).await;
    sdk::Client::new(&config)
        .create_secret()
        .name("mlflow/loopback")
        .secret_string("tok")
        .send()
        .await
        .unwrap();
    // Plain http to a loopback name reaches moto.
    let by_name = moto.endpoint.replace("127.0.0.1", "localhost");
    let source = AwsSecretsManager::builder("mlflow/loopback")
        .sdk_config(config.clone())
        .endpoint_url(&by_name)
        .build()
        .await
        .unwrap();
    assert_eq!(
        source.fetch().await.unwrap().secret().expose_secret(),
        "tok"
    );
    // The same server under a name that is not loopback is refused before any request.
    let elsewhere = moto.endpoint.replace("127.0.0.1", "moto.internal");
    let err = AwsSecretsManager::builder("mlflow/loopback")
        .sdk_config(config)
        .endpoint_url(&elsewhere)
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the endpoint_url setting must be an https URL"),
        "{err}"
    );
}
