//! Revocation that follows the store (issue 13, item 5): behind one `Cached` over
//! `first_of(htpasswd, mlflow_users)`, a credential its store stops vouching for is refused
//! right after the store reloads, whatever the cache's time to live, and an htpasswd file
//! that cannot be read fails closed (503) until it is back.

use std::{
    convert::Infallible,
    fs,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

mod counting;

use base64::Engine as _;
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use tower::{ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService};
use tower_mlflow_auth::{
    AuthLayer, Authenticator,
    authenticators::{Cached, Htpasswd, MlflowUsers, UserRecord, UserStore, UserStoreError},
    first_of,
};

use crate::counting::Counted;

/// `alice` and `carol`, both with password `mlflow-pass`.
const ALICE: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/";
const CAROL: &str = "carol:{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=";
/// werkzeug `pbkdf2:sha256:1000`, password `mlflow-pass` (reference test vector).
const WERKZEUG: &str = "pbkdf2:sha256:1000$saltsaltsaltsalt$c039c2c345ba54524fdcd18a32558e28e43c097f846c682324d0aa5a2106b4ba";
/// The same hash with another digest: the password is no longer `mlflow-pass`.
const WERKZEUG_CHANGED: &str = "pbkdf2:sha256:1000$saltsaltsaltsalt$c039c2c345ba54524fdcd18a32558e28e43c097f846c682324d0aa5a2106b4bb";
/// A cache time to live far longer than any test: only revocation can drop an entry.
const LONG_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Only a guard against a hung test; nothing is asserted about durations.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// MLflow's users, editable by the test.
#[derive(Debug, Clone, Default)]
struct Users(Arc<Mutex<Vec<UserRecord>>>);

impl UserStore for Users {
    fn load(&self) -> Result<Vec<UserRecord>, UserStoreError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// A temporary htpasswd file, replaced atomically; removed on drop.
struct File(PathBuf);

impl File {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-mlflow-revocation-{name}-{}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        let file = Self(dir.join("htpasswd"));
        file.write(text);
        file
    }

    fn write(&self, text: &str) {
        let temp = self.0.with_extension("tmp");
        fs::write(&temp, text).unwrap();
        fs::rename(&temp, &self.0).unwrap();
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.0.parent().unwrap());
    }
}

type Service = BoxCloneSyncService<Request<String>, Response<String>, Infallible>;

fn serve<A: Authenticator>(authenticator: A) -> Service {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(AuthLayer::new(authenticator))
            .service(service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            })),
    )
}

async fn status(service: &Service, username: &str, password: &str) -> StatusCode {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let request = Request::get("/api/2.0/mlflow/experiments/search")
        .header(AUTHORIZATION, format!("Basic {encoded}"))
        .body(String::new())
        .unwrap();
    service.clone().oneshot(request).await.unwrap().status()
}

/// Polls until `service` answers `expected` for the user; fails after the hang guard.
async fn until(service: &Service, username: &str, expected: StatusCode) {
    let deadline = Instant::now() + HANG_GUARD;
    while status(service, username, "mlflow-pass").await != expected {
        assert!(Instant::now() < deadline, "{username} never got {expected}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Chain {
    service: Service,
    htpasswd: Counted<Htpasswd>,
    users: Counted<MlflowUsers>,
    records: Users,
}

/// `Cached::new(first_of(htpasswd, mlflow_users))` with a one-day time to live: alice and
/// carol in the file, bob in the database.
async fn chain(file: &File, interval: Option<Duration>) -> Chain {
    let builder = Htpasswd::builder(&file.0);
    let builder = match interval {
        Some(interval) => builder.refresh_interval(interval),
        None => builder.poll(false),
    };
    let htpasswd = Counted::new(builder.build().unwrap());
    let records = Users::default();
    records
        .0
        .lock()
        .unwrap()
        .push(UserRecord::new("bob", WERKZEUG));
    let users = MlflowUsers::builder()
        .refresh_interval(interval.unwrap_or(Duration::from_secs(3600)))
        .store(records.clone())
        .build()
        .unwrap();
    users.refresh().await.unwrap();
    let users = Counted::new(users);
    let cache = Cached::builder(first_of(htpasswd.clone(), users.clone()))
        .ttl(LONG_TTL)
        .build()
        .unwrap();
    let service = serve(cache);
    for user in ["alice", "carol", "bob"] {
        assert_eq!(status(&service, user, "mlflow-pass").await, StatusCode::OK);
    }
    Chain {
        service,
        htpasswd,
        users,
        records,
    }
}

#[tokio::test]
async fn a_user_removed_from_the_file_is_refused_right_after_the_reload() {
    let file = File::new("removed", &format!("{ALICE}\n{CAROL}\n"));
    let chain = chain(&file, None).await;
    let checks = chain.htpasswd.calls();
    assert_eq!(
        status(&chain.service, "alice", "mlflow-pass").await,
        StatusCode::OK
    );
    assert_eq!(chain.htpasswd.calls(), checks, "alice is cached");

    file.write(&format!("{CAROL}\n"));
    chain.htpasswd.inner.refresh().await.unwrap();
    assert_eq!(
        status(&chain.service, "alice", "mlflow-pass").await,
        StatusCode::UNAUTHORIZED
    );
    // Only alice was revoked: carol and bob are still answered from the cache.
    let (files, databases) = (chain.htpasswd.calls(), chain.users.calls());
    assert_eq!(
        status(&chain.service, "carol", "mlflow-pass").await,
        StatusCode::OK
    );
    assert_eq!(
        status(&chain.service, "bob", "mlflow-pass").await,
        StatusCode::OK
    );
    assert_eq!(chain.htpasswd.calls(), files);
    assert_eq!(chain.users.calls(), databases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_is_noticed_by_polling_while_every_request_is_a_cache_hit() {
    let file = File::new("polled", &format!("{ALICE}\n{CAROL}\n"));
    let chain = chain(&file, Some(Duration::from_millis(50))).await;
    let checks = chain.htpasswd.calls();
    file.write(&format!("{CAROL}\n"));
    until(&chain.service, "alice", StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        chain.htpasswd.calls(),
        checks + 1,
        "only the refused login reached the store: the file was watched in the background"
    );
}

#[tokio::test]
async fn a_password_changed_in_the_database_is_refused_after_the_refresh() {
    let file = File::new("database", &format!("{ALICE}\n{CAROL}\n"));
    let chain = chain(&file, None).await;
    *chain.records.0.lock().unwrap() = vec![UserRecord::new("bob", WERKZEUG_CHANGED)];
    assert_eq!(
        status(&chain.service, "bob", "mlflow-pass").await,
        StatusCode::OK,
        "cached until the store reloads"
    );
    chain.users.inner.refresh().await.unwrap();
    assert_eq!(
        status(&chain.service, "bob", "mlflow-pass").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&chain.service, "alice", "mlflow-pass").await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_user_is_refused_after_a_background_refresh() {
    let file = File::new("deleted-user", &format!("{ALICE}\n{CAROL}\n"));
    let chain = chain(&file, Some(Duration::from_millis(50))).await;
    chain.records.0.lock().unwrap().clear();
    until(&chain.service, "bob", StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_fails_closed_for_cached_users_and_service_resumes_when_it_is_back() {
    let file = File::new("deleted", &format!("{ALICE}\n{CAROL}\n"));
    let chain = chain(&file, Some(Duration::from_millis(50))).await;
    fs::remove_file(&file.0).unwrap();
    until(&chain.service, "alice", StatusCode::SERVICE_UNAVAILABLE).await;
    // The database still vouches for its own users.
    assert_eq!(
        status(&chain.service, "bob", "mlflow-pass").await,
        StatusCode::OK
    );

    file.write(&format!("{ALICE}\n"));
    until(&chain.service, "alice", StatusCode::OK).await;
}

#[tokio::test]
async fn a_syntax_error_keeps_the_last_good_table() {
    let file = File::new("syntax", &format!("{ALICE}\n{CAROL}\n"));
    let chain = chain(&file, None).await;
    file.write(&format!("{ALICE}\nbob:hunter2\n"));
    assert!(chain.htpasswd.inner.refresh().await.is_err());
    assert_eq!(
        status(&chain.service, "alice", "mlflow-pass").await,
        StatusCode::OK
    );
    assert!(chain.htpasswd.inner.contains_user("alice"));
}
