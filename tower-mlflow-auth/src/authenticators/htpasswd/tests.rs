use std::{
    fs::File,
    io::{self, Write as _},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use secrecy::SecretString;

use super::{watch::FileState, *};
use crate::authenticator::Revoked;
use crate::authenticators::htpasswd::hash::WorkClass;

const ALICE_APR1: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/";
const BOB_SHA1: &str = "bob:{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=";
const CAROL_BCRYPT: &str = "carol:$2y$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi";
const PASSWORD: &str = "mlflow-pass";

fn basic(username: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: username.into(),
        password: SecretString::from(password),
    }
}

async fn accepts(users: &Htpasswd, username: &str, password: &str) -> bool {
    match users.authenticate(basic(username, password)).await.unwrap() {
        Some(principal) => {
            assert_eq!(principal.subject(), username);
            assert_eq!(principal.scheme(), Scheme::Basic);
            true
        }
        None => false,
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-mlflow-htpasswd-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("htpasswd")
    }

    /// Replaces the file atomically, as the docs recommend.
    fn write(&self, text: &str) -> PathBuf {
        let temp = self.0.join(".htpasswd.tmp");
        let mut file = File::create(&temp).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file.sync_all().unwrap();
        std::fs::rename(&temp, self.file()).unwrap();
        self.file()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn accepts_each_format_and_rejects_wrong_passwords() {
    let users = Htpasswd::parse(&format!("{ALICE_APR1}\n{BOB_SHA1}\n{CAROL_BCRYPT}\n")).unwrap();
    for user in ["alice", "bob", "carol"] {
        assert!(accepts(&users, user, PASSWORD).await, "{user}");
        assert!(!accepts(&users, user, "mlflow-pas").await, "{user}");
    }
}

#[tokio::test]
async fn unknown_user_is_rejected() {
    let users = Htpasswd::parse(ALICE_APR1).unwrap();
    assert!(!accepts(&users, "mallory", PASSWORD).await);
    // Another user's password does not help either.
    assert!(!accepts(&users, "alicE", PASSWORD).await);
}

#[tokio::test]
async fn empty_table_rejects_everyone() {
    let users = Htpasswd::parse("# nobody yet\n").unwrap();
    assert!(users.is_empty());
    assert!(!accepts(&users, "alice", PASSWORD).await);
}

#[tokio::test]
async fn other_schemes_are_passed_on() {
    let users = Htpasswd::parse(ALICE_APR1).unwrap();
    let bearer = Credentials::Bearer {
        token: SecretString::from("alice"),
    };
    assert!(users.authenticate(bearer).await.unwrap().is_none());
    assert_eq!(users.challenges(), &[Challenge::BASIC]);
}

#[test]
fn verification_works_outside_a_tokio_runtime() {
    let users = Htpasswd::parse(CAROL_BCRYPT).unwrap();
    let outcome = std::thread::spawn(move || {
        // A minimal executor: the future never waits on anything but the (inline) check.
        let future = std::pin::pin!(users.authenticate(basic("carol", PASSWORD)));
        let waker = std::task::Waker::noop();
        match future.poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(result) => result.unwrap().is_some(),
            std::task::Poll::Pending => false,
        }
    })
    .join()
    .unwrap();
    assert!(outcome);
}

#[test]
fn unknown_users_are_checked_against_a_decoy_of_the_common_format() {
    let users = Htpasswd::parse(&format!(
        "{ALICE_APR1}\n{CAROL_BCRYPT}\ndave:$2y$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi\n"
    ))
    .unwrap();
    let decoy = users
        .with_table(|table| table.decoy.clone())
        .flatten()
        .unwrap();
    assert_eq!(decoy.work_class(), WorkClass::Bcrypt(5));
}

#[test]
fn bad_lines_are_reported_with_their_number() {
    let cases = [
        ("bob:hunter2", HtpasswdLineError::PlainText),
        ("bob:UkEFylJv.NouA", HtpasswdLineError::DesCrypt),
        (
            "bob:$2x$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi",
            HtpasswdLineError::UnsupportedFormat,
        ),
        (
            "bob:$apr1$garbage",
            HtpasswdLineError::Malformed(HtpasswdHashFormat::Apr1),
        ),
        ("bob hunter2", HtpasswdLineError::MissingColon),
    ];
    for (bad, expected) in cases {
        let text = format!("# users\n{ALICE_APR1}\n\n{bad}\n{BOB_SHA1}\n");
        let error = Htpasswd::parse(&text).unwrap_err();
        assert!(
            matches!(error, HtpasswdBuildError::InvalidLine { line: 4, error, path: None } if error == expected),
            "{bad}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.starts_with("line 4: "), "{message}");
        assert!(
            !message.contains("hunter2")
                && !message.contains("garbage")
                && !message.contains("UkEF")
        );
    }
}

#[test]
fn duplicate_users_are_refused() {
    let error = Htpasswd::parse(&format!("{ALICE_APR1}\n{BOB_SHA1}\n{ALICE_APR1}\n")).unwrap_err();
    assert!(
        matches!(
            error,
            HtpasswdBuildError::DuplicateUser {
                line: 3,
                first_line: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "line 3: user already defined on line 1");
}

#[test]
fn file_errors_name_the_file_and_line() {
    let dir = TempDir::new();
    let path = dir.write(&format!("{ALICE_APR1}\nbob:hunter2\n"));
    let error = Htpasswd::from_file(&path).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: line 2: {}",
            path.display(),
            HtpasswdLineError::PlainText
        )
    );
}

#[test]
fn non_utf8_lines_are_reported_with_their_number() {
    let dir = TempDir::new();
    std::fs::write(dir.file(), b"alice:{SHA}x\n# \xff\n").unwrap();
    let error = Htpasswd::from_file(dir.file()).unwrap_err();
    assert!(
        matches!(
            error,
            HtpasswdBuildError::InvalidLine {
                line: 2,
                error: HtpasswdLineError::NotUtf8,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = TempDir::new();
    let error = Htpasswd::from_file(dir.0.join("absent")).unwrap_err();
    assert!(matches!(error, HtpasswdBuildError::Io { .. }), "{error:?}");
}

#[test]
fn debug_shows_no_hash() {
    let dir = TempDir::new();
    let users = Htpasswd::from_file(dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n"))).unwrap();
    let debug = format!("{users:?}");
    assert!(debug.contains("users: 2"), "{debug}");
    for secret in ["aDPo2xmb", "abcdefgh", "Vm5wFmc"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[tokio::test]
async fn reload_swaps_the_table() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(ALICE_APR1))
        .poll(false)
        .build()
        .unwrap();
    assert!(!accepts(&users, "bob", PASSWORD).await);

    dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n"));
    users.refresh().await.unwrap();
    assert!(accepts(&users, "bob", PASSWORD).await);
    assert_eq!(users.len(), 2);
}

#[tokio::test]
async fn broken_file_keeps_the_previous_table() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(ALICE_APR1))
        .poll(false)
        .build()
        .unwrap();

    dir.write(&format!("{ALICE_APR1}\nbob:hunter2\n"));
    let error = users.refresh().await.unwrap_err();
    assert!(
        matches!(
            error,
            HtpasswdError::Reload(HtpasswdBuildError::InvalidLine { line: 2, .. })
        ),
        "{error:?}"
    );
    assert!(accepts(&users, "alice", PASSWORD).await);

    std::fs::remove_file(dir.file()).unwrap();
    assert!(matches!(
        users.refresh().await.unwrap_err(),
        HtpasswdError::Reload(HtpasswdBuildError::Io { .. })
    ));
    // Issue 13: a file that cannot be read fails closed instead of keeping the old table.
    assert!(matches!(
        users.authenticate(basic("alice", PASSWORD)).await,
        Err(HtpasswdError::Unavailable(_))
    ));
}

/// Every notice a listener got.
fn listen(users: &Htpasswd) -> Arc<std::sync::Mutex<Vec<Revoked>>> {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    users.subscribe_revocations(RevocationListener::new(move |revoked: &Revoked| {
        sink.lock().unwrap().push(revoked.clone());
    }));
    seen
}

#[tokio::test]
async fn an_unreadable_file_fails_closed_until_it_is_back() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(ALICE_APR1))
        .poll(false)
        .build()
        .unwrap();
    let revoked = listen(&users);
    std::fs::remove_file(dir.file()).unwrap();
    assert!(users.refresh().await.is_err());
    let error = users
        .authenticate(basic("alice", PASSWORD))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&dir.file().display().to_string())
            && message.ends_with("its users are refused until it can be read"),
        "{message}"
    );
    assert!(std::error::Error::source(&error).is_some());
    assert!(users.is_empty());
    // A broken file does not bring the old table back either.
    dir.write("alice:hunter2\n");
    assert!(users.refresh().await.is_err());
    assert!(users.authenticate(basic("alice", PASSWORD)).await.is_err());

    dir.write(ALICE_APR1);
    users.refresh().await.unwrap();
    assert!(accepts(&users, "alice", PASSWORD).await);
    assert_eq!(*revoked.lock().unwrap(), [Revoked::All]);
}

#[tokio::test]
async fn a_reload_tells_listeners_which_users_changed() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n")))
        .poll(false)
        .build()
        .unwrap();
    let revoked = listen(&users);
    users.refresh().await.unwrap();
    assert!(revoked.lock().unwrap().is_empty(), "nothing changed");
    dir.write(BOB_SHA1);
    users.refresh().await.unwrap();
    assert_eq!(
        *revoked.lock().unwrap(),
        [Revoked::Users(vec!["alice".into()])]
    );
    // A parsed table never changes: subscribing does nothing.
    let fixed = Htpasswd::parse(ALICE_APR1).unwrap();
    let _ = listen(&fixed);
}

#[tokio::test]
async fn with_a_listener_the_file_is_watched_without_requests() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n")))
        .refresh_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let unwatched = Htpasswd::builder(dir.file())
        .refresh_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let revoked = listen(&users);
    assert!(users.file.as_ref().unwrap().listeners.is_watching());
    dir.write(BOB_SHA1);
    // No authentication runs: only the background watcher can notice.
    eventually(async || !users.contains_user("alice")).await;
    eventually(async || !revoked.lock().unwrap().is_empty()).await;
    assert_eq!(
        revoked.lock().unwrap()[0],
        Revoked::Users(vec!["alice".into()])
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        unwatched.contains_user("alice"),
        "nobody listens: no watcher"
    );
}

/// Polls until `check` holds; gives up (and fails) after a generous deadline.
async fn eventually(mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn changed_file_is_picked_up_by_polling() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(ALICE_APR1))
        .refresh_interval(Duration::ZERO)
        .build()
        .unwrap();

    dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n"));
    eventually(async || accepts(&users, "bob", PASSWORD).await).await;

    // A broken version is skipped: the last good table stays, for old and new users.
    let path = dir.write("alice:hunter2\n");
    let broken = FileState::of(std::fs::metadata(&path));
    let seen = |users: &Htpasswd| users.file.as_ref().unwrap().seen_state() == broken;
    eventually(async || {
        assert!(accepts(&users, "alice", PASSWORD).await);
        assert!(accepts(&users, "bob", PASSWORD).await);
        seen(&users)
    })
    .await;
    assert!(accepts(&users, "alice", PASSWORD).await);
    assert!(accepts(&users, "bob", PASSWORD).await);

    // A fixed file is picked up again.
    dir.write(BOB_SHA1);
    eventually(async || !accepts(&users, "alice", PASSWORD).await).await;
    assert!(accepts(&users, "bob", PASSWORD).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_reloads_all_succeed() {
    let dir = TempDir::new();
    let first = format!("{ALICE_APR1}\n{BOB_SHA1}\n");
    let second = format!("{BOB_SHA1}\n{ALICE_APR1}\ndave:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n");
    let users = Htpasswd::builder(dir.write(&first))
        .refresh_interval(Duration::ZERO)
        .build()
        .unwrap();

    let clients: Vec<_> = (0..4)
        .map(|_| {
            let users = users.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    assert!(accepts(&users, "alice", PASSWORD).await);
                    assert!(accepts(&users, "bob", PASSWORD).await);
                }
            })
        })
        .collect();
    let reloader = {
        let users = users.clone();
        tokio::spawn(async move {
            for round in 0..100 {
                dir.write(if round % 2 == 0 { &second } else { &first });
                users.refresh().await.unwrap();
            }
        })
    };
    for client in clients {
        client.await.unwrap();
    }
    reloader.await.unwrap();
}

#[test]
fn reload_errors_are_logged_without_the_hash() {
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let dir = TempDir::new();
    let users = Htpasswd::from_file(dir.write(ALICE_APR1)).unwrap();
    dir.write("alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn\nbob:hunter2\n");

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || users.file.as_ref().unwrap().check());

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("line 1") && log.contains("not reloaded"),
        "{log}"
    );
    assert!(
        !log.contains("aDPo2xmb") && !log.contains("abcdefgh"),
        "{log}"
    );
}

#[test]
fn an_unreadable_file_is_logged_once_and_retried_on_every_check() {
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let dir = TempDir::new();
    let users = Htpasswd::from_file(dir.write(ALICE_APR1)).unwrap();
    let file = users.file.as_ref().unwrap();
    std::fs::remove_file(dir.file()).unwrap();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let (first, second, back) = tracing::subscriber::with_default(subscriber, || {
        let first = file.check();
        let second = file.check();
        dir.write(ALICE_APR1);
        (first, second, file.check())
    });
    assert!(first.unreadable.is_some() && Arc::ptr_eq(&first, &second));
    assert!(back.unreadable.is_none() && back.users.contains_key("alice"));
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("cannot be read").count(), 1, "{log}");
    assert!(log.contains(&dir.file().display().to_string()), "{log}");
    assert!(log.contains("reloaded"), "{log}");
}

#[tokio::test(start_paused = true)]
async fn checks_are_due_once_per_interval() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(ALICE_APR1))
        .refresh_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    let file = users.file.as_ref().unwrap();
    assert!(!file.check_due());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(file.check_due());
    assert!(!file.check_due(), "a second caller in the same interval");
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(!file.check_due());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(file.check_due());

    let manual = Htpasswd::builder(dir.file()).poll(false).build().unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(!manual.file.as_ref().unwrap().check_due());
}

#[test]
fn polling_works_outside_a_tokio_runtime() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(ALICE_APR1))
        .refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    dir.write(&format!("{ALICE_APR1}\n{BOB_SHA1}\n"));
    let accepted = std::thread::spawn(move || {
        // No runtime: the check runs on this thread before the lookup.
        let future = std::pin::pin!(users.authenticate(basic("bob", PASSWORD)));
        let waker = std::task::Waker::noop();
        match future.poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(result) => result.unwrap().is_some(),
            std::task::Poll::Pending => false,
        }
    })
    .join()
    .unwrap();
    assert!(accepted);
}

#[tokio::test]
async fn refresh_errors_name_the_file_and_line() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(ALICE_APR1))
        .poll(false)
        .build()
        .unwrap();
    let path = dir.write(&format!("{ALICE_APR1}\nbob:hunter2\n"));
    let error = users.refresh().await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("{}: line 2", path.display())),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn refresh_of_a_parsed_table_changes_nothing() {
    let users = Htpasswd::parse(ALICE_APR1).unwrap();
    users.refresh().await.unwrap();
    assert!(users.path().is_none());
    assert!(accepts(&users, "alice", PASSWORD).await);
}

#[test]
fn hash_format_and_contains_user_look_at_the_current_table() {
    let users = Htpasswd::parse(&format!("{ALICE_APR1}\n{BOB_SHA1}\n{CAROL_BCRYPT}\n")).unwrap();
    assert_eq!(users.hash_format("alice"), Some(HtpasswdHashFormat::Apr1));
    assert_eq!(users.hash_format("bob"), Some(HtpasswdHashFormat::Sha1));
    assert_eq!(users.hash_format("carol"), Some(HtpasswdHashFormat::Bcrypt));
    assert_eq!(users.hash_format("mallory"), None);
    assert!(users.contains_user("carol") && !users.contains_user("mallory"));
    assert_eq!(users.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_is_never_undone_by_a_concurrent_check() {
    let dir = TempDir::new();
    let users = Htpasswd::builder(dir.write(ALICE_APR1))
        .refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    for round in 0..50 {
        let text = if round % 2 == 0 {
            format!("{ALICE_APR1}\n{BOB_SHA1}\n")
        } else {
            ALICE_APR1.to_owned()
        };
        dir.write(&text);
        // Background checks start on every request while the refresh runs.
        let pollers: Vec<_> = (0..4)
            .map(|_| {
                let users = users.clone();
                tokio::spawn(async move { accepts(&users, "alice", PASSWORD).await })
            })
            .collect();
        users.refresh().await.unwrap();
        for poller in pollers {
            assert!(poller.await.unwrap());
        }
        assert_eq!(users.contains_user("bob"), round % 2 == 0, "round {round}");
    }
}
