//! One cache over the whole chain (issue 13, item 4), against the real binary with a bcrypt
//! htpasswd file and an MLflow auth DB: while 32 clients send wrong passwords for an
//! htpasswd user (a bcrypt check each), the cached users of both stores are served, and
//! overtake flood requests sent before them. Asserted by outcome, not timing. The
//! library-level version is tests/tests/chain_cache.rs.

mod support;

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use support::binary::{Binary, basic, holds_within, status};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tower_mlflow_tests::{TempDir, venv_bin};

/// bcrypt cost 10 (`htpasswd -nbB -C 10`): `alice-bcrypt-pass` and `victim-bcrypt-pass`.
const HTPASSWD: &str = "alice:$2y$10$8CpndL1oa3jRQX5JHEPJWOtgkNse8XQ4FZz1/q8azgrfmI1IaYAUO\n\
                        victim:$2y$10$cwDFXRgR.zZ8PCFDHgmxHOtJ3xQecFJ3tB/H2j1NwjSyosc2aMkw.\n";
/// werkzeug `pbkdf2:sha256:1000`, password `mlflow-pass` (reference test vector).
const WERKZEUG: &str = "pbkdf2:sha256:1000$saltsaltsaltsalt$c039c2c345ba54524fdcd18a32558e28e43c097f846c682324d0aa5a2106b4ba";
const FLOOD_CLIENTS: usize = 32;
const CACHED_REQUESTS: usize = 20;
const PATH: &str = "/api/2.0/mlflow/experiments/search";

/// An MLflow auth DB with `bob`, in the schema `mlflow server --app-name basic-auth` creates.
fn mlflow_auth_db(path: &Path) {
    const SCRIPT: &str = "import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute('CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(255) UNIQUE, '
           'password_hash VARCHAR(255), is_admin BOOLEAN)')
db.execute('INSERT INTO users (username, password_hash, is_admin) VALUES (?, ?, 0)',
           (sys.argv[2], sys.argv[3]))
db.commit()
";
    let made = Command::new(venv_bin("python"))
        .args(["-c", SCRIPT, path.to_str().unwrap(), "bob", WERKZEUG])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
}

/// The flood's shared state: a sequence number for every request sent (flood or cached), and
/// per flood client the number of its request in flight (`u64::MAX` when none).
struct Flood {
    sequence: AtomicU64,
    pending: Vec<AtomicU64>,
    answered: AtomicUsize,
    not_401: AtomicUsize,
    stop: AtomicBool,
}

impl Flood {
    fn oldest_pending(&self) -> u64 {
        self.pending
            .iter()
            .map(|p| p.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// One flood client: wrong passwords for `victim`, a new one each time (identical wrong
/// credentials would share one check), each on a fresh connection, until told to stop.
async fn flood_client(gateway: std::net::SocketAddr, flood: Arc<Flood>, client: usize) {
    let mut n = 0;
    while !flood.stop.load(Ordering::SeqCst) {
        n += 1;
        let authorization = basic("victim", &format!("wrong-{client}-{n}"));
        let Ok(mut stream) = TcpStream::connect(gateway).await else {
            continue;
        };
        let request = format!(
            "GET {PATH} HTTP/1.1\r\nHost: gateway\r\nAuthorization: {authorization}\r\n\
             Connection: close\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        // Sent: from now on, a request numbered after this one that is answered first has
        // overtaken it.
        let sequence = flood.sequence.fetch_add(1, Ordering::SeqCst);
        flood.pending[client].store(sequence, Ordering::SeqCst);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        flood.pending[client].store(u64::MAX, Ordering::SeqCst);
        flood.answered.fetch_add(1, Ordering::SeqCst);
        if !answer.starts_with(b"HTTP/1.1 401") {
            flood.not_401.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the MLflow venv's Python (for the auth DB); run scripts/test"]
async fn a_wrong_password_flood_does_not_hold_up_cached_users_of_either_store() {
    let dir = TempDir::new("chain-flood");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, HTPASSWD).unwrap();
    let db = dir.path().join("basic_auth.db");
    mlflow_auth_db(&db);
    let upstream = format!("http://{}", support::echo_upstream(None).await);
    let gateway = Binary::start(&[
        "--upstream",
        &upstream,
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--mlflow-auth-db",
        db.to_str().unwrap(),
        "--cache-ttl",
        "60",
        // Off, so that every wrong password costs a bcrypt check instead of a 429: this test
        // is about the cache, not the throttle in front of it.
        "--failed-login-limit",
        "0",
    ]);
    let addr = gateway.addr();
    let alice = basic("alice", "alice-bcrypt-pass");
    let bob = basic("bob", "mlflow-pass");
    assert_eq!(status(addr, PATH, &alice).await, 201, "htpasswd user");
    assert_eq!(status(addr, PATH, &bob).await, 201, "database user");

    let flood = Arc::new(Flood {
        sequence: AtomicU64::new(0),
        pending: (0..FLOOD_CLIENTS)
            .map(|_| AtomicU64::new(u64::MAX))
            .collect(),
        answered: AtomicUsize::new(0),
        not_401: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..FLOOD_CLIENTS)
        .map(|client| tokio::spawn(flood_client(addr, flood.clone(), client)))
        .collect();
    // The gateway is busy with the flood once its first answers come back.
    let busy = holds_within(Duration::from_secs(60), || async {
        flood.answered.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert!(busy, "the flood got no answers:\n{}", gateway.log());

    let mut overtook = [0, 0];
    for i in 0..CACHED_REQUESTS {
        let (store, authorization) = if i % 2 == 0 { (0, &alice) } else { (1, &bob) };
        let sequence = flood.sequence.fetch_add(1, Ordering::SeqCst);
        let code = status(addr, PATH, authorization).await;
        assert_eq!(code, 201, "cached request {i} during the flood");
        if flood.oldest_pending() < sequence {
            overtook[store] += 1;
        }
    }
    let answered_by_then = flood.answered.load(Ordering::SeqCst);
    flood.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    assert_eq!(flood.not_401.load(Ordering::SeqCst), 0, "flood answers");
    // Had the flood held them up, every cached request would have waited for the wrong
    // passwords sent before it.
    let at_least = CACHED_REQUESTS / 4;
    assert!(
        overtook[0] >= at_least && overtook[1] >= at_least,
        "cached requests answered while an earlier flood request was pending: \
         htpasswd {}, database {} of {} each (flood answers by then: {answered_by_then})",
        overtook[0],
        overtook[1],
        CACHED_REQUESTS / 2
    );
}
