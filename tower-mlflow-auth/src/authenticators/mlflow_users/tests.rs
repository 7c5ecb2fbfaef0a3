use std::{
    convert::Infallible,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use rusqlite::Connection;
use tower::{ServiceBuilder, ServiceExt};

use secrecy::SecretString;

use super::{table::LEGACY_ADMIN_PASSWORD, *};
use crate::{AuthLayer, credentials::Scheme};

/// A werkzeug PBKDF2-SHA256 hash with 2 iterations: the real format, cheap in debug builds.
fn cheap_hash(password: &str, salt: &str) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), 2, &mut out);
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    format!("pbkdf2:sha256:2${salt}${hex}")
}

fn basic(username: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: username.into(),
        password: SecretString::from(password),
    }
}

async fn check(users: &MlflowUsers, username: &str, password: &str) -> Option<Authorization> {
    users.authenticate(basic(username, password)).await.unwrap()
}

fn fixed() -> MlflowUsers {
    MlflowUsers::from_users([
        UserRecord::new("alice", cheap_hash("alice-password-123", "saltA")),
        UserRecord::new("root", cheap_hash("root-password-123", "saltR")).with_admin(true),
        UserRecord::new("legacy-admin", cheap_hash(LEGACY_ADMIN_PASSWORD, "saltL"))
            .with_admin(true),
        UserRecord::new("legacy-user", cheap_hash(LEGACY_ADMIN_PASSWORD, "saltU")),
    ])
    .unwrap()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tower-mlflow-users-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("basic_auth.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// MLflow's `users` table, as its initial migration creates it.
const USERS_TABLE: &str = "CREATE TABLE users (
    id INTEGER NOT NULL,
    username VARCHAR(255),
    password_hash VARCHAR(255),
    is_admin BOOLEAN,
    PRIMARY KEY (id),
    UNIQUE (username)
)";

fn create_db(path: &Path, rows: &[(&str, &str, bool)]) -> Connection {
    let db = Connection::open(path).unwrap();
    db.execute_batch(USERS_TABLE).unwrap();
    for (username, hash, is_admin) in rows {
        db.execute(
            "INSERT INTO users (username, password_hash, is_admin) VALUES (?1, ?2, ?3)",
            (username, hash, is_admin),
        )
        .unwrap();
    }
    db
}

fn set_password(db: &Connection, username: &str, hash: &str) {
    let changed = db
        .execute(
            "UPDATE users SET password_hash = ?1 WHERE username = ?2",
            (hash, username),
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn accepts_the_right_password() {
    let who = check(&fixed(), "alice", "alice-password-123")
        .await
        .unwrap();
    assert_eq!(who.subject(), "alice");
    assert_eq!(who.scheme(), Scheme::Basic);
    assert!(!who.is_admin());
}

#[tokio::test]
async fn rejects_a_wrong_password() {
    assert!(
        check(&fixed(), "alice", "alice-password-124")
            .await
            .is_none()
    );
    assert!(check(&fixed(), "alice", "").await.is_none());
}

#[tokio::test]
async fn usernames_match_exactly() {
    assert!(
        check(&fixed(), "Alice", "alice-password-123")
            .await
            .is_none()
    );
    assert!(
        check(&fixed(), "alice ", "alice-password-123")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn unknown_user_is_rejected() {
    assert!(
        check(&fixed(), "mallory", "alice-password-123")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn other_schemes_are_left_to_other_authenticators() {
    let bearer = Credentials::Bearer {
        token: SecretString::from("alice-password-123"),
    };
    assert!(fixed().authenticate(bearer).await.unwrap().is_none());
}

#[tokio::test]
async fn is_admin_becomes_the_admin_flag() {
    assert!(
        check(&fixed(), "root", "root-password-123")
            .await
            .unwrap()
            .is_admin()
    );
}

#[tokio::test]
async fn legacy_default_password_is_refused_for_admins_only() {
    let users = fixed();
    assert!(
        check(&users, "legacy-admin", LEGACY_ADMIN_PASSWORD)
            .await
            .is_none()
    );
    assert!(
        check(&users, "legacy-user", LEGACY_ADMIN_PASSWORD)
            .await
            .is_some()
    );
}

#[test]
fn malformed_in_memory_hash_names_the_user_not_the_hash() {
    let err = MlflowUsers::from_users([
        UserRecord::new("alice", cheap_hash("pw", "s")),
        UserRecord::new("bob", "pbkdf2:sha256:1000$bob-salt$deadbeef"),
    ])
    .unwrap_err();
    assert!(matches!(
        &err,
        MlflowUsersBuildError::InvalidRecord { username, reason: InvalidUserRecord::Hash(WerkzeugHashError::InvalidDigest) }
            if &**username == "bob"
    ));
    let shown = err.to_string();
    assert!(shown.contains("\"bob\""), "{shown}");
    assert!(
        !shown.contains("bob-salt") && !shown.contains("deadbeef"),
        "{shown}"
    );
}

#[test]
fn in_memory_hash_over_the_limits_is_refused() {
    let digest = "0".repeat(64);
    let err = MlflowUsers::builder()
        .limits(WerkzeugLimits::default().max_pbkdf2_iterations(10))
        .users([UserRecord::new(
            "carol",
            format!("pbkdf2:sha256:11$s${digest}"),
        )])
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        MlflowUsersBuildError::InvalidRecord {
            reason: InvalidUserRecord::Hash(WerkzeugHashError::Pbkdf2IterationsOutOfRange { .. }),
            ..
        }
    ));
}

#[test]
fn duplicate_and_empty_usernames_are_refused() {
    let err = MlflowUsers::from_users([
        UserRecord::new("dup", cheap_hash("a", "s")),
        UserRecord::new("dup", cheap_hash("b", "s")),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        MlflowUsersBuildError::InvalidRecord {
            username: "dup".into(),
            reason: InvalidUserRecord::Duplicate
        }
    );
    let err = MlflowUsers::from_users([UserRecord::new("", cheap_hash("a", "s"))]).unwrap_err();
    assert_eq!(err, MlflowUsersBuildError::EmptyUsername);
}

#[test]
fn debug_never_shows_hashes() {
    let hash = cheap_hash("alice-password-123", "saltA");
    let users = MlflowUsers::from_users([UserRecord::new("alice", hash.clone())]).unwrap();
    let record = UserRecord::new("alice", hash.clone());
    let salt_and_digest = &hash["pbkdf2:sha256:2$".len()..];
    for shown in [format!("{users:?}"), format!("{record:?}")] {
        assert!(!shown.contains("saltA"), "{shown}");
        assert!(!shown.contains(&salt_and_digest[6..20]), "{shown}");
    }
    let sqlite = MlflowUsers::sqlite("/nonexistent/basic_auth.db");
    assert!(format!("{sqlite:?}").contains("basic_auth.db"));
}

#[tokio::test]
async fn sqlite_accepts_and_rejects() {
    let dir = TempDir::new();
    let _db = create_db(
        &dir.db(),
        &[
            ("alice", &cheap_hash("alice-password-123", "s1"), false),
            ("admin", &cheap_hash("admin-password-123", "s2"), true),
        ],
    );
    let users = MlflowUsers::sqlite(dir.db());
    let alice = check(&users, "alice", "alice-password-123").await.unwrap();
    assert!(!alice.is_admin());
    assert!(check(&users, "alice", "wrong-password").await.is_none());
    assert!(
        check(&users, "nobody", "alice-password-123")
            .await
            .is_none()
    );
    assert!(
        check(&users, "admin", "admin-password-123")
            .await
            .unwrap()
            .is_admin()
    );
}

#[tokio::test]
async fn sqlite_missing_file_is_a_store_error_and_not_created() {
    let dir = TempDir::new();
    let users = MlflowUsers::sqlite(dir.db());
    let err = users.authenticate(basic("alice", "pw")).await.unwrap_err();
    assert!(matches!(err, MlflowUsersError::Store(_)), "{err:?}");
    assert!(err.to_string().contains("basic_auth.db"), "{err}");
    assert!(!dir.db().exists());
    assert!(matches!(
        users.refresh().await,
        Err(MlflowUsersError::Store(_))
    ));
}

#[tokio::test]
async fn sqlite_without_users_table_is_a_store_error() {
    let dir = TempDir::new();
    Connection::open(dir.db())
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    let err = MlflowUsers::sqlite(dir.db())
        .authenticate(basic("a", "b"))
        .await
        .unwrap_err();
    assert!(matches!(err, MlflowUsersError::Store(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_corrupt_file_is_a_store_error() {
    let dir = TempDir::new();
    std::fs::write(
        dir.db(),
        b"this is not a database, just some bytes....................",
    )
    .unwrap();
    let err = MlflowUsers::sqlite(dir.db())
        .authenticate(basic("a", "b"))
        .await
        .unwrap_err();
    assert!(matches!(err, MlflowUsersError::Store(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_is_opened_read_only() {
    let dir = TempDir::new();
    drop(create_db(
        &dir.db(),
        &[("alice", &cheap_hash("pw-123", "s"), false)],
    ));
    let mut permissions = std::fs::metadata(dir.db()).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(dir.db(), permissions).unwrap();
    // Works on a file the process may not write (when not running as root, this is a real
    // check; as root it still shows nothing needs a write).
    let users = MlflowUsers::sqlite(dir.db());
    assert!(check(&users, "alice", "pw-123").await.is_some());
    // No journal or WAL file was created next to it.
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["basic_auth.db"]);
}

#[tokio::test]
async fn sqlite_bad_row_fails_only_that_user() {
    let dir = TempDir::new();
    let _db = create_db(
        &dir.db(),
        &[
            ("alice", &cheap_hash("alice-password-123", "s1"), false),
            ("bob", "md5$bob-salt$0123456789abcdef", false),
        ],
    );
    let users = MlflowUsers::sqlite(dir.db());
    let err = users
        .authenticate(basic("bob", "whatever"))
        .await
        .unwrap_err();
    assert!(matches!(
        &err,
        MlflowUsersError::InvalidRecord { username, reason: InvalidUserRecord::Hash(WerkzeugHashError::UnsupportedMethod) }
            if &**username == "bob"
    ));
    let shown = err.to_string();
    assert!(
        shown.contains("\"bob\"") && !shown.contains("bob-salt") && !shown.contains("0123456789"),
        "{shown}"
    );
    assert!(check(&users, "alice", "alice-password-123").await.is_some());
}

#[tokio::test]
async fn sqlite_hostile_hash_cost_is_refused_per_user() {
    let dir = TempDir::new();
    let d128 = "0".repeat(128);
    let _db = create_db(
        &dir.db(),
        &[("eve", &format!("scrypt:1073741824:8:1$s${d128}"), false)],
    );
    let err = MlflowUsers::sqlite(dir.db())
        .authenticate(basic("eve", "pw"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        MlflowUsersError::InvalidRecord {
            reason: InvalidUserRecord::Hash(WerkzeugHashError::ScryptOverLimit { .. }),
            ..
        }
    ));
}

#[tokio::test]
async fn sqlite_null_and_odd_columns() {
    let dir = TempDir::new();
    let db = create_db(&dir.db(), &[]);
    let hash = cheap_hash("pw-123", "s");
    db.execute(
        "INSERT INTO users (username, password_hash, is_admin) VALUES ('nulladmin', ?1, NULL), \
         ('nohash', NULL, 0), (NULL, ?1, 1), ('textadmin', ?1, 'yes')",
        [&hash],
    )
    .unwrap();
    let users = MlflowUsers::sqlite(dir.db());
    assert!(
        !check(&users, "nulladmin", "pw-123")
            .await
            .unwrap()
            .is_admin()
    );
    assert!(
        !check(&users, "textadmin", "pw-123")
            .await
            .unwrap()
            .is_admin()
    );
    let err = users
        .authenticate(basic("nohash", "pw-123"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        MlflowUsersError::InvalidRecord {
            reason: InvalidUserRecord::Hash(WerkzeugHashError::NotAWerkzeugHash),
            ..
        }
    ));
}

#[tokio::test]
async fn sqlite_duplicate_username_fails_that_user() {
    let dir = TempDir::new();
    let db = Connection::open(dir.db()).unwrap();
    db.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT, password_hash TEXT, is_admin BOOLEAN)")
        .unwrap();
    let hash = cheap_hash("pw-123", "s");
    db.execute(
        "INSERT INTO users (username, password_hash, is_admin) VALUES ('twin', ?1, 0), ('twin', ?1, 1)",
        [&hash],
    )
    .unwrap();
    let err = MlflowUsers::sqlite(dir.db())
        .authenticate(basic("twin", "pw-123"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        MlflowUsersError::InvalidRecord {
            reason: InvalidUserRecord::Duplicate,
            ..
        }
    ));
}

#[tokio::test]
async fn change_is_not_seen_before_the_interval_without_invalidate() {
    let dir = TempDir::new();
    let db = create_db(
        &dir.db(),
        &[("alice", &cheap_hash("old-password-1", "s"), false)],
    );
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(3600))
        .sqlite(dir.db())
        .build()
        .unwrap();
    assert!(check(&users, "alice", "old-password-1").await.is_some());
    set_password(&db, "alice", &cheap_hash("new-password-2", "t"));
    // Within the interval the loaded table stays in force.
    assert!(check(&users, "alice", "old-password-1").await.is_some());
    assert!(check(&users, "alice", "new-password-2").await.is_none());
}

#[tokio::test]
async fn invalidate_reloads_at_once() {
    let dir = TempDir::new();
    let db = create_db(
        &dir.db(),
        &[("alice", &cheap_hash("old-password-1", "s"), false)],
    );
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(3600))
        .sqlite(dir.db())
        .build()
        .unwrap();
    assert!(check(&users, "alice", "old-password-1").await.is_some());
    set_password(&db, "alice", &cheap_hash("new-password-2", "t"));
    users.clone().invalidate(); // clones share the table
    assert!(check(&users, "alice", "new-password-2").await.is_some());
    assert!(check(&users, "alice", "old-password-1").await.is_none());
}

#[tokio::test]
async fn refresh_reloads_now() {
    let dir = TempDir::new();
    let db = create_db(
        &dir.db(),
        &[("alice", &cheap_hash("old-password-1", "s"), false)],
    );
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(3600))
        .sqlite(dir.db())
        .build()
        .unwrap();
    users.refresh().await.unwrap();
    db.execute("UPDATE users SET is_admin = 1 WHERE username = 'alice'", [])
        .unwrap();
    assert!(
        !check(&users, "alice", "old-password-1")
            .await
            .unwrap()
            .is_admin()
    );
    users.refresh().await.unwrap();
    assert!(
        check(&users, "alice", "old-password-1")
            .await
            .unwrap()
            .is_admin()
    );
}

#[tokio::test]
async fn zero_interval_sees_every_change() {
    let dir = TempDir::new();
    let db = create_db(
        &dir.db(),
        &[("alice", &cheap_hash("old-password-1", "s"), false)],
    );
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::ZERO)
        .sqlite(dir.db())
        .build()
        .unwrap();
    assert!(check(&users, "alice", "old-password-1").await.is_some());
    set_password(&db, "alice", &cheap_hash("new-password-2", "t"));
    assert!(check(&users, "alice", "new-password-2").await.is_some());
    assert!(check(&users, "alice", "old-password-1").await.is_none());
    db.execute("DELETE FROM users WHERE username = 'alice'", [])
        .unwrap();
    assert!(check(&users, "alice", "new-password-2").await.is_none());
}

#[tokio::test]
async fn a_vanished_database_is_not_served_from_the_stale_table() {
    let dir = TempDir::new();
    drop(create_db(
        &dir.db(),
        &[("alice", &cheap_hash("pw-123", "s"), false)],
    ));
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::ZERO)
        .sqlite(dir.db())
        .build()
        .unwrap();
    assert!(check(&users, "alice", "pw-123").await.is_some());
    std::fs::remove_file(dir.db()).unwrap();
    assert!(matches!(
        users.authenticate(basic("alice", "pw-123")).await,
        Err(MlflowUsersError::Store(_))
    ));
}

#[derive(Debug)]
struct FailingStore;

impl UserStore for FailingStore {
    fn load(&self) -> Result<Vec<UserRecord>, UserStoreError> {
        Err(UserStoreError::new("database is down"))
    }
}

#[tokio::test]
async fn custom_store_failure_is_an_error_not_a_rejection() {
    let users = MlflowUsers::builder().store(FailingStore).build().unwrap();
    let err = users.authenticate(basic("alice", "pw")).await.unwrap_err();
    assert_eq!(err.to_string(), "MLflow user store: database is down");
}

#[derive(Debug)]
struct CountingStore(Arc<AtomicUsize>, String);

impl UserStore for CountingStore {
    fn load(&self) -> Result<Vec<UserRecord>, UserStoreError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(vec![UserRecord::new("alice", self.1.clone())])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_use_loads_once() {
    let loads = Arc::new(AtomicUsize::new(0));
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(3600))
        .store(CountingStore(Arc::clone(&loads), cheap_hash("pw-123", "s")))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let users = users.clone();
            tokio::spawn(async move { users.authenticate(basic("alice", "pw-123")).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_some());
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[test]
fn works_outside_a_tokio_runtime() {
    // No runtime: the check runs inline (the future is ready at once) instead of panicking
    // in `spawn_blocking`.
    let users = fixed();
    let mut future = std::pin::pin!(users.authenticate(basic("alice", "alice-password-123")));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(Some(who))) => assert_eq!(who.subject(), "alice"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn behind_the_layer_401_200_and_503() {
    let dir = TempDir::new();
    let _db = create_db(
        &dir.db(),
        &[("alice", &cheap_hash("alice-password-123", "s"), false)],
    );
    let service = |users: MlflowUsers| {
        ServiceBuilder::new()
            .layer(AuthLayer::new(users))
            .service_fn(|request: Request<Full<Bytes>>| async move {
                let who = request
                    .extensions()
                    .get::<Authorization>()
                    .map(|a| a.subject().to_owned());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                    who.unwrap_or_default(),
                ))))
            })
    };
    let request = |credentials: &str| {
        let encoded =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials);
        Request::get("/api/2.0/mlflow/experiments/search")
            .header(header::AUTHORIZATION, format!("Basic {encoded}"))
            .body(Full::default())
            .unwrap()
    };
    let ok = service(MlflowUsers::sqlite(dir.db()));
    let response = ok
        .clone()
        .oneshot(request("alice:alice-password-123"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = ok.oneshot(request("alice:nope")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Basic realm="mlflow""#
    );
    let missing = service(MlflowUsers::sqlite(dir.0.join("missing.db")));
    let response = missing
        .oneshot(request("alice:alice-password-123"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn build_without_a_source_is_an_error() {
    let err = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err, MlflowUsersBuildError::NoSource);
    assert!(err.to_string().contains("no user store"), "{err}");
}

/// Alice with a good hash and bob with a bad one, or a failure while `down` is set.
#[derive(Debug)]
struct FlakyStore {
    down: Arc<std::sync::atomic::AtomicBool>,
    hash: String,
}

impl UserStore for FlakyStore {
    fn load(&self) -> Result<Vec<UserRecord>, UserStoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(UserStoreError::new("database is down"));
        }
        Ok(vec![
            UserRecord::new("alice", self.hash.clone()),
            UserRecord::new("bob", "md5$s$00"),
        ])
    }
}

#[tokio::test]
async fn a_failed_load_drops_the_previous_table_and_warns_once() {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The warnings are logged on this (the runtime's only) thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(3600))
        .store(FlakyStore {
            down: Arc::clone(&down),
            hash: cheap_hash("pw-123", "s"),
        })
        .build()
        .unwrap();
    assert!(check(&users, "alice", "pw-123").await.is_some());
    users.refresh().await.unwrap();

    down.store(true, Ordering::SeqCst);
    assert!(matches!(
        users.refresh().await,
        Err(MlflowUsersError::Store(_))
    ));
    // Within the interval, but the table from before the failure is gone.
    assert!(matches!(
        users.authenticate(basic("alice", "pw-123")).await,
        Err(MlflowUsersError::Store(_))
    ));

    down.store(false, Ordering::SeqCst);
    assert!(check(&users, "alice", "pw-123").await.is_some());
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        log.matches("unusable MLflow user record").count(),
        1,
        "{log}"
    );
    assert!(log.contains("bob"), "{log}");
}

/// Users that a test edits while the authenticator reads them; `None` fails the load.
#[derive(Debug, Default)]
struct EditableStore(std::sync::Mutex<Option<Vec<UserRecord>>>);

impl EditableStore {
    fn set(&self, users: Option<Vec<UserRecord>>) {
        *self.0.lock().unwrap() = users;
    }
}

impl UserStore for Arc<EditableStore> {
    fn load(&self) -> Result<Vec<UserRecord>, UserStoreError> {
        self.0
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| UserStoreError::new("store down"))
    }
}

fn listen(users: &MlflowUsers) -> Arc<std::sync::Mutex<Vec<crate::authenticator::Revoked>>> {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    users.subscribe_revocations(crate::authenticator::RevocationListener::new(
        move |revoked: &crate::authenticator::Revoked| sink.lock().unwrap().push(revoked.clone()),
    ));
    seen
}

#[tokio::test]
async fn a_refresh_tells_listeners_what_changed_and_a_failed_load_revokes_all() {
    use crate::authenticator::Revoked;

    let store = Arc::new(EditableStore::default());
    let bob = |salt: &str| UserRecord::new("bob", cheap_hash("bob-password-1", salt));
    store.set(Some(vec![bob("s1")]));
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::from_secs(3600))
        .store(Arc::clone(&store))
        .build()
        .unwrap();
    users.refresh().await.unwrap();
    let revoked = listen(&users);
    users.refresh().await.unwrap();
    assert!(revoked.lock().unwrap().is_empty(), "nothing changed");

    store.set(Some(vec![bob("s2")]));
    users.refresh().await.unwrap();
    store.set(None);
    assert!(users.refresh().await.is_err());
    store.set(Some(vec![bob("s2")]));
    users.refresh().await.unwrap();
    assert_eq!(
        *revoked.lock().unwrap(),
        [Revoked::Users(vec!["bob".into()]), Revoked::All]
    );
    assert!(users.accepts(&basic("bob", "x").borrowed()));
    assert!(
        !users.accepts(
            &Credentials::Bearer {
                token: SecretString::from("bob-password-1")
            }
            .borrowed()
        )
    );
}

#[tokio::test]
async fn with_a_listener_the_store_is_reloaded_without_requests() {
    let loads = Arc::new(AtomicUsize::new(0));
    let store = CountingStore(Arc::clone(&loads), cheap_hash("pw", "s"));
    let users = MlflowUsers::builder()
        .refresh_interval(Duration::from_millis(20))
        .store(store)
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(loads.load(Ordering::SeqCst), 0, "lazy without a listener");
    let _revoked = listen(&users);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while loads.load(Ordering::SeqCst) < 3 {
        assert!(std::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A fixed table never changes: no watcher, nothing to tell.
    let _ = listen(&fixed());
}
