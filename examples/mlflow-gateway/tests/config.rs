//! Configuration three ways (issue 18, items 1, 5 and 6) against the real binary: flags,
//! `MLFLOW_GATEWAY_*` variables and a `--config` TOML file mean the same; flag > environment >
//! file; `--check` lists every problem and no secret; `--tokens-file` with `hash-token`;
//! SIGHUP; and the README's table lists every option.

mod support;

use std::{
    fs,
    io::Write as _,
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use support::binary::{Binary, basic, holds_within, request, status};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower_mlflow_tests::TempDir;

/// `alice` with password `mlflow-pass` (an APR1 reference vector).
const ALICE: &str = "alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/\n";
const PASSWORD: &str = "mlflow-pass";
const PATH: &str = "/api/2.0/mlflow/experiments/search";
const BIN: &str = env!("CARGO_BIN_EXE_mlflow-gateway");
/// The bound for a changed tokens file (polled every second).
const TOKENS_BOUND: Duration = Duration::from_secs(5);

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs the binary to completion with `args` and `env`, stdin from `input`.
fn run(args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The response head of an unauthenticated `GET path`.
async fn head(gateway: &Binary, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr())
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = text(&answer);
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What the three gateways must agree on: the exemption, the htpasswd user, the realm.
async fn behaviour(gateway: &Binary) -> (u16, u16, bool) {
    let exempt = request(gateway.addr(), "GET", "/health", None, None)
        .await
        .0;
    let alice = status(gateway.addr(), PATH, &basic("alice", PASSWORD)).await;
    let challenge = head(gateway, PATH).await.contains(r#"realm="three-ways""#);
    (exempt, alice, challenge)
}

#[tokio::test]
async fn flags_environment_and_file_mean_the_same() {
    let dir = TempDir::new("config-three-ways");
    let fixture = support::gateway::Fixture::echo(&dir, ALICE).await;
    let (upstream, htpasswd) = (&fixture.upstream, &fixture.htpasswd);

    let from_flags = fixture.binary(&["--exempt", "/health", "--realm", "three-ways"]);
    let from_env = Binary::start_with_env(
        &[],
        &[
            ("MLFLOW_GATEWAY_UPSTREAM", upstream),
            ("MLFLOW_GATEWAY_HTPASSWD", htpasswd),
            ("MLFLOW_GATEWAY_EXEMPT", "/health"),
            ("MLFLOW_GATEWAY_REALM", "three-ways"),
        ],
    );
    let file = write(
        &dir,
        "gateway.toml",
        &format!(
            "upstream = {upstream:?}\nhtpasswd = {htpasswd:?}\nexempt = [\"/health\"]\n\
             realm = \"three-ways\"\n"
        ),
    );
    let from_file = Binary::start(&["--config", &file]);

    let expected = (201, 201, true);
    assert_eq!(
        behaviour(&from_flags).await,
        expected,
        "{}",
        from_flags.log()
    );
    assert_eq!(behaviour(&from_env).await, expected, "{}", from_env.log());
    assert_eq!(behaviour(&from_file).await, expected, "{}", from_file.log());
}

/// The `realm = …` line that `--check` prints.
fn checked_realm(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = run(args, env, "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let line = stdout.lines().find(|line| line.starts_with("realm = "));
    line.unwrap_or_else(|| panic!("no realm in {stdout}"))
        .to_owned()
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file() {
    let dir = TempDir::new("config-precedence");
    let htpasswd = write(&dir, "htpasswd", ALICE);
    let file = write(
        &dir,
        "gateway.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:5000\"\n\
             htpasswd = {htpasswd:?}\nrealm = \"file\"\n"
        ),
    );
    let config = ["--check", "--config", file.as_str()];
    let env = [("MLFLOW_GATEWAY_REALM", "env")];
    let with_flag = [&config[..], &["--realm", "flag"]].concat();
    assert_eq!(checked_realm(&with_flag, &env), r#"realm = "flag""#);
    assert_eq!(checked_realm(&config, &env), r#"realm = "env""#);
    assert_eq!(checked_realm(&config, &[]), r#"realm = "file""#);
    // The file named by the environment, and the default without any.
    let by_env = [("MLFLOW_GATEWAY_CONFIG", file.as_str())];
    assert_eq!(checked_realm(&["--check"], &by_env), r#"realm = "file""#);
    let bare = [
        "--check",
        "--listen=127.0.0.1:0",
        "--upstream=http://127.0.0.1:5000",
        "--htpasswd",
        htpasswd.as_str(),
    ];
    assert_eq!(checked_realm(&bare, &[]), r#"realm = "mlflow""#);
}

#[test]
fn check_passes_a_good_configuration_and_shows_no_secret() {
    let dir = TempDir::new("config-check-good");
    let htpasswd = write(&dir, "htpasswd", ALICE);
    let secret = "assertion-secret-0123456789-abcdefghij";
    let secret_file = write(&dir, "assertion", secret);
    let token_line = run(&["hash-token", "ci"], &[], "tok-ci-123\n");
    let tokens = write(&dir, "tokens", &text(&token_line.stdout));
    let output = run(
        &[
            "--check",
            "--listen=127.0.0.1:0",
            "--upstream=http://127.0.0.1:5000",
            "--htpasswd",
            &htpasswd,
            "--tokens-file",
            &tokens,
            "--mlflow-assertion-secret-file",
            &secret_file,
        ],
        &[],
        "",
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("htpasswd = {htpasswd:?}")),
        "{stdout}"
    );
    assert!(stdout.contains("cache-ttl = 60"), "{stdout}");
    let hash = text(&token_line.stdout);
    let hash = hash.trim().split_once(':').unwrap().1;
    for shown in [&stdout, &stderr] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(hash), "{shown}");
        assert!(!shown.contains("tok-ci-123"), "{shown}");
    }
}

#[test]
fn check_lists_every_problem_at_once() {
    let dir = TempDir::new("config-check-bad");
    let htpasswd = write(&dir, "htpasswd", "alice-without-a-hash\n");
    let ca = support::pki::TestCa::new();
    let cert = write(&dir, "cert.pem", &ca.leaf().cert_pem);
    let missing_key = dir.path().join("missing-key.pem");
    let file = write(
        &dir,
        "gateway.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:5000\"\n\
             htpasswd = {htpasswd:?}\ntls-cert = {cert:?}\ntls-key = {:?}\n\
             no-such-option = 1\ncache-ttl = \"sixty\"\n",
            missing_key.to_str().unwrap()
        ),
    );
    let output = run(&["--check", "--config", &file], &[], "");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for problem in [
        format!("{file}: unknown key \"no-such-option\""),
        format!("{file}: key \"cache-ttl\" must be an integer"),
        format!("cannot read {}", missing_key.display()),
        "line 1".to_owned(),
    ] {
        assert!(stderr.contains(&problem), "{problem:?} not in:\n{stderr}");
    }
    assert!(stderr.contains(&htpasswd), "{stderr}");

    // Serving refuses the unknown key too.
    let serving = run(&["--config", &file], &[], "");
    assert_eq!(serving.status.code(), Some(2));
    assert!(text(&serving.stderr).contains("no-such-option"));
}

/// The `--tokens-file` line for `token`, made by `hash-token`.
fn hash_token(user: &str, token: &str) -> String {
    let output = run(&["hash-token", user], &[], &format!("{token}\n"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// Replaces `path` atomically (what editors and config management do).
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, path).unwrap();
}

/// The binary with `--tokens-file tokens` and `extra` in front of an echo upstream.
async fn tokens_gateway(tokens: &Path, extra: &[&str]) -> Binary {
    let upstream = format!("http://{}", support::echo_upstream(None).await);
    let tokens = tokens.to_str().unwrap();
    let args = [
        &["--upstream", &upstream, "--tokens-file", tokens][..],
        extra,
    ]
    .concat();
    Binary::start(&args)
}

#[tokio::test]
async fn tokens_from_hash_token_are_accepted_and_a_removed_one_refused_within_5_s() {
    let dir = TempDir::new("config-tokens");
    let tokens = dir.path().join("tokens");
    let ci = hash_token("ci", "tok-ci-123");
    let ops = hash_token("ops", "tok-ops-456");
    assert!(
        ci.starts_with("ci:") && ci.trim_end().len() == "ci:".len() + 64,
        "{ci}"
    );
    replace(&tokens, &format!("# scripts\n{ci}{ops}"));
    let gateway = tokens_gateway(&tokens, &[]).await;
    let addr = gateway.addr();
    assert_eq!(status(addr, PATH, "Bearer tok-ci-123").await, 201);
    assert_eq!(status(addr, PATH, "Bearer tok-ops-456").await, 201);
    assert_eq!(status(addr, PATH, "Bearer tok-unknown").await, 401);

    replace(&tokens, &ops);
    let refused = holds_within(TOKENS_BOUND, || async {
        status(addr, PATH, "Bearer tok-ci-123").await == 401
    })
    .await;
    assert!(refused, "removed token still accepted:\n{}", gateway.log());
    assert_eq!(status(addr, PATH, "Bearer tok-ops-456").await, 201);

    // A broken file keeps the old tokens and the log names the line, not its content.
    replace(&tokens, &format!("{ops}ci:not-a-hash\n"));
    let logged = holds_within(TOKENS_BOUND, || async { gateway.log().contains("line 2") }).await;
    assert!(logged, "{}", gateway.log());
    assert!(!gateway.log().contains("not-a-hash"), "{}", gateway.log());
    assert_eq!(status(addr, PATH, "Bearer tok-ops-456").await, 201);
}

/// SIGHUP re-reads at once what the poll cannot see: the tokens file is replaced by one of
/// the same length with its old modification time put back, so its stamp (mtime, length)
/// is unchanged and only the signal can load it.
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_what_the_poll_does_not_see() {
    let dir = TempDir::new("config-sighup");
    let tokens = dir.path().join("tokens");
    let htpasswd = write(&dir, "htpasswd", ALICE);
    replace(&tokens, &hash_token("ci", "tok-aaaaaa"));
    let mtime = fs::metadata(&tokens).unwrap().modified().unwrap();
    let gateway = tokens_gateway(&tokens, &["--htpasswd", &htpasswd]).await;
    let addr = gateway.addr();
    assert_eq!(status(addr, PATH, "Bearer tok-aaaaaa").await, 201);

    let file = fs::OpenOptions::new().write(true).open(&tokens).unwrap();
    file.set_len(0).unwrap();
    (&file)
        .write_all(hash_token("ci", "tok-bbbbbb").as_bytes())
        .unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    // Several polls pass without a reload.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(addr, PATH, "Bearer tok-bbbbbb").await, 401);

    let killed = Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let reloaded = holds_within(TOKENS_BOUND, || async {
        status(addr, PATH, "Bearer tok-bbbbbb").await == 201
    })
    .await;
    assert!(reloaded, "{}", gateway.log());
    assert_eq!(status(addr, PATH, "Bearer tok-aaaaaa").await, 401);
    let log = gateway.log();
    let line = log.lines().find(|line| line.contains("SIGHUP"));
    let line = line.unwrap_or_else(|| panic!("no SIGHUP line in:\n{log}"));
    assert!(
        line.contains("htpasswd") && line.contains("tokens"),
        "{line}"
    );
}

#[test]
fn the_readme_table_lists_every_option() {
    let readme =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let command = mlflow_gateway::Flags::command_with_env();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let row = if matches!(long, "check") {
            format!("| `--{long}` | — | — |")
        } else if long == "config" {
            format!("| `--{long}` | `MLFLOW_GATEWAY_CONFIG` | — |")
        } else {
            format!(
                "| `--{long}` | `{}` | `{long}` |",
                mlflow_gateway::env_var(long)
            )
        };
        assert!(readme.contains(&row), "README lacks the row {row}");
    }
}
