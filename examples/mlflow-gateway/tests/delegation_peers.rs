//! MLflow's own permissions through the gateway, delegated (`--mlflow-assertion-secret-file`
//! and the `mlflow_gateway_auth` package in `examples/mlflow-gateway/python`).
//!
//! Two real `mlflow server --app-name basic-auth` share ONE tracking store, artifact root and
//! auth database: the reference runs MLflow's standard Basic `authorization_function`, the
//! other `mlflow_gateway_auth:authenticate_request` behind the gateway. Every request of the
//! corpus goes to both (Basic straight to the reference, the same user through the gateway),
//! interleaved so both see the same state, and status codes and result counts must agree.

mod support;

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use mlflow_gateway::assertion::{AdminClaim, Asserter};
use serde_json::{Value, json};
use tower_mlflow_tests::{
    MLFLOW_ADMIN, MLFLOW_ADMIN_PASSWORD, TempDir, free_port, venv_bin, workspace_root,
};

const SECRET: &str = "delegation-test-secret-0123456789abcdef";
const PASSWORD: &str = "user-password-for-tests-1";
const ASSERTION: &str = "x-mlflow-gateway-assertion";

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request over a fresh HTTP/1.1 connection; `headers` are sent as given.
fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw.get(split + 4..).unwrap_or_default().to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Answer { status, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

fn basic(user: &str, password: &str) -> (&'static str, String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("Authorization", format!("Basic {encoded}"))
}

fn json_headers(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        basic(user, password),
        ("Content-Type", "application/json".into()),
    ]
}

/// `mlflow server --app-name basic-auth` over the shared stores in `dir`, with `ini`.
struct Mlflow {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Mlflow {
    fn start(dir: &Path, name: &str, ini: &str, env: &[(&str, &str)]) -> Self {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let ini_path = dir.join(format!("{name}.ini"));
        std::fs::write(&ini_path, ini).unwrap();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let python_src = workspace_root().join("examples/mlflow-gateway/python/src");
        let child = Command::new(venv_bin("mlflow"))
            .args(["server", "--app-name", "basic-auth", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .current_dir(dir)
            .env("MLFLOW_AUTH_CONFIG_PATH", &ini_path)
            .env_remove("MLFLOW_TRACKING_URI")
            .env("MLFLOW_AUTH_ADMIN_USERNAME", MLFLOW_ADMIN)
            .env("MLFLOW_AUTH_ADMIN_PASSWORD", MLFLOW_ADMIN_PASSWORD)
            .env(
                "MLFLOW_FLASK_SERVER_SECRET_KEY",
                "tower-mlflow-test-secret-key",
            )
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            // The source tree first: the test runs the package as it is now, installed or not.
            .env("PYTHONPATH", python_src)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mlflow: {e}"));
        let mut server = Self { child, port, log };
        server.wait_healthy();
        server
    }

    fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mlflow exited with {status}:\n{}", self.log());
            }
            if TcpStream::connect(self.addr()).is_ok()
                && send(self.addr(), "GET", "/health", &[], b"").status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow not healthy:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let kill = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        kill("-KILL");
        let _ = self.child.wait();
    }
}

/// MLflow's shipped settings with a shared `basic_auth.db`; the reference also caches
/// verified passwords (MLflow's `auth_cache_ttl_seconds`), or its scrypt per request would
/// dominate the test's run time. Both servers decide permissions with the same code.
fn ini(dir: &Path, function: &str) -> String {
    format!(
        "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\nadmin_username = {MLFLOW_ADMIN}\nauthorization_function = {function}\nauth_cache_ttl_seconds = 600\n",
        dir.join("basic_auth.db").display()
    )
}

/// The users of the parity corpus, with what they hold.
const ADMIN: &str = MLFLOW_ADMIN;
const OWNER: &str = "owner"; // created the owner experiment and model: MANAGE on both
const READER: &str = "reader"; // READ on both
const EDITOR: &str = "editor"; // EDIT on both
const DENIED: &str = "denied"; // DENY on both (3.17: NO_PERMISSIONS is not a grant)
const PLAIN: &str = "plain"; // default_permission only

fn password(user: &str) -> &'static str {
    if user == ADMIN {
        MLFLOW_ADMIN_PASSWORD
    } else {
        PASSWORD
    }
}

/// The shared resources, made through the reference server's REST API.
struct Fixtures {
    /// (experiment id, experiment name, run id, model name) for: the owner's, the admin's
    /// (no grants), and ids that do not exist.
    targets: Vec<(String, String, String, String)>,
}

fn call_ok(addr: SocketAddr, user: &str, method: &str, path: &str, body: &Value) -> Value {
    let answer = send(
        addr,
        method,
        path,
        &json_headers(user, password(user)),
        body.to_string().as_bytes(),
    );
    assert_eq!(
        answer.status,
        200,
        "{method} {path} as {user}: {}",
        answer.text()
    );
    answer.json()
}

fn make_fixtures(reference: SocketAddr) -> Fixtures {
    for user in [OWNER, READER, EDITOR, DENIED, PLAIN] {
        call_ok(
            reference,
            ADMIN,
            "POST",
            "/api/2.0/mlflow/users/create",
            &json!({"username": user, "password": PASSWORD}),
        );
    }
    let mut targets = Vec::new();
    for (user, tag) in [(OWNER, "owner"), (ADMIN, "admin")] {
        let name = format!("{tag}-experiment");
        let experiment = call_ok(
            reference,
            user,
            "POST",
            "/api/2.0/mlflow/experiments/create",
            &json!({"name": name}),
        )["experiment_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let run = call_ok(
            reference,
            user,
            "POST",
            "/api/2.0/mlflow/runs/create",
            &json!({"experiment_id": experiment}),
        )["run"]["info"]["run_id"]
            .as_str()
            .unwrap()
            .to_owned();
        call_ok(
            reference,
            user,
            "POST",
            "/api/2.0/mlflow/runs/log-metric",
            &json!({"run_id": run, "key": "loss", "value": 0.5, "timestamp": 0, "step": 0}),
        );
        let artifact = send(
            reference,
            "PUT",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/notes.txt"),
            &[basic(user, password(user))],
            b"fixture artifact",
        );
        assert_eq!(artifact.status, 200, "artifact upload: {}", artifact.text());
        let model = format!("{tag}-model");
        call_ok(
            reference,
            user,
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            &json!({"name": model}),
        );
        call_ok(
            reference,
            user,
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            &json!({"name": model, "source": format!("runs:/{run}/model"), "run_id": run}),
        );
        targets.push((experiment, name, run, model));
    }
    let (experiment, _, _, model) = targets[0].clone();
    for (user, permission) in [(READER, "READ"), (EDITOR, "EDIT"), (DENIED, "DENY")] {
        for (resource_type, resource_id) in
            [("experiment", &experiment), ("registered_model", &model)]
        {
            call_ok(
                reference,
                ADMIN,
                "POST",
                "/api/3.0/mlflow/users/permissions/grant",
                &json!({"username": user, "resource_type": resource_type,
                       "resource_id": resource_id, "permission": permission}),
            );
        }
    }
    targets.push((
        "999999".into(),
        "no-such-experiment".into(),
        "0123456789abcdef0123456789abcdef".into(),
        "no-such-model".into(),
    ));
    Fixtures { targets }
}

/// One corpus entry: method, target and JSON body (a raw body for PUT), with `{tag}` (the
/// pass: `d` direct, `g` gateway) and `{var}` placeholders; `capture` names a variable set
/// from the answer (`experiment_id`, `run.info.run_id`, `registered_model.name`).
struct Step {
    method: &'static str,
    target: String,
    body: String,
    capture: Option<(&'static str, &'static str)>,
}

fn step(method: &'static str, target: impl Into<String>, body: impl Into<String>) -> Step {
    Step {
        method,
        target: target.into(),
        body: body.into(),
        capture: None,
    }
}

fn graphql(query: &str) -> String {
    json!({ "query": query }).to_string()
}

/// At least 100 requests for `user`: reads and writes on each target through `/api` and
/// `/ajax-api`, artifacts through the artifact proxy, searches, GraphQL, the user's own
/// experiment, model and run, admin-only and unknown routes.
fn corpus(user: &str, fixtures: &Fixtures) -> Vec<Step> {
    let mut steps = Vec::new();
    for (t, (e, name, r, m)) in fixtures.targets.iter().enumerate() {
        for prefix in ["/api", "/ajax-api"] {
            let p = |path: &str| format!("{prefix}/2.0/mlflow/{path}");
            steps.extend([
                step("GET", p(&format!("experiments/get?experiment_id={e}")), ""),
                step(
                    "GET",
                    p(&format!("experiments/get-by-name?experiment_name={name}")),
                    "",
                ),
                step(
                    "POST",
                    p("runs/search"),
                    json!({"experiment_ids": [e]}).to_string(),
                ),
                step("GET", p(&format!("runs/get?run_id={r}")), ""),
                step(
                    "GET",
                    p(&format!("metrics/get-history?run_id={r}&metric_key=loss")),
                    "",
                ),
                step("GET", p(&format!("artifacts/list?run_id={r}")), ""),
                step("GET", p(&format!("registered-models/get?name={m}")), ""),
                step(
                    "GET",
                    p(&format!("model-versions/get?name={m}&version=1")),
                    "",
                ),
                step(
                    "GET",
                    p(&format!("model-versions/search?filter=name%3D%27{m}%27")),
                    "",
                ),
                step(
                    "POST",
                    p("registered-models/get-latest-versions"),
                    json!({"name": m}).to_string(),
                ),
                step(
                    "GET",
                    format!("{prefix}/2.0/mlflow-artifacts/artifacts/{e}/{r}/artifacts/notes.txt"),
                    "",
                ),
                step(
                    "GET",
                    format!("{prefix}/2.0/mlflow-artifacts/artifacts?path={e}/{r}/artifacts"),
                    "",
                ),
            ]);
        }
        let p = |path: &str| format!("/api/2.0/mlflow/{path}");
        let run_var = format!("run{t}");
        steps.extend([
            step(
                "POST",
                p("experiments/set-experiment-tag"),
                json!({"experiment_id": e, "key": "k-{tag}", "value": "v"}).to_string(),
            ),
            Step {
                capture: Some((leak(run_var.clone()), "run.info.run_id")),
                ..step("POST", p("runs/create"), json!({"experiment_id": e}).to_string())
            },
            step(
                "POST",
                p("runs/log-metric"),
                json!({"run_id": r, "key": "m-{tag}", "value": 1.0, "timestamp": 0, "step": 0})
                    .to_string(),
            ),
            step(
                "POST",
                p("runs/log-parameter"),
                json!({"run_id": r, "key": "p-{tag}", "value": "1"}).to_string(),
            ),
            step("POST", p("runs/set-tag"), json!({"run_id": r, "key": "t-{tag}", "value": "v"}).to_string()),
            step(
                "PUT",
                format!("/api/2.0/mlflow-artifacts/artifacts/{e}/{r}/artifacts/up-{{tag}}.txt"),
                "uploaded",
            ),
            step(
                "POST",
                p("registered-models/set-tag"),
                json!({"name": m, "key": "k-{tag}", "value": "v"}).to_string(),
            ),
            step("PATCH", p("registered-models/update"), json!({"name": m, "description": "d"}).to_string()),
            step(
                "POST",
                p("model-versions/create"),
                json!({"name": m, "source": format!("runs:/{r}/model"), "run_id": r}).to_string(),
            ),
            step("POST", p("runs/delete"), format!("{{\"run_id\": \"{{{run_var}}}\"}}")),
            step(
                "POST",
                "/graphql",
                graphql(&format!(
                    "{{ mlflowGetExperiment(input: {{experimentId: \"{e}\"}}) {{ experiment {{ name }} }} }}"
                )),
            ),
            step(
                "POST",
                "/graphql",
                graphql(&format!(
                    "{{ mlflowSearchRuns(input: {{experimentIds: [\"{e}\"]}}) {{ runs {{ info {{ runId }} }} }} }}"
                )),
            ),
        ]);
    }
    let p = |path: &str| format!("/api/2.0/mlflow/{path}");
    let all: Vec<&str> = fixtures.targets.iter().map(|t| t.0.as_str()).collect();
    steps.extend([
        step("GET", p("experiments/search?max_results=100"), ""),
        step("POST", p("experiments/search"), json!({"max_results": 100}).to_string()),
        step("GET", "/ajax-api/2.0/mlflow/experiments/search?max_results=100", ""),
        step("GET", p("registered-models/search"), ""),
        step("GET", "/ajax-api/2.0/mlflow/registered-models/search", ""),
        step("GET", p("model-versions/search"), ""),
        step("POST", p("runs/search"), json!({"experiment_ids": all}).to_string()),
        step("GET", p("users/current"), ""),
        step("GET", p(&format!("users/get?username={OWNER}")), ""),
        step("POST", p("users/create"), json!({"username": format!("new-{user}-{{tag}}"), "password": PASSWORD}).to_string()),
        Step {
            capture: Some(("own_experiment", "experiment_id")),
            ..step("POST", p("experiments/create"), json!({"name": format!("exp-{user}-{{tag}}")}).to_string())
        },
        Step {
            capture: Some(("own_run", "run.info.run_id")),
            ..step("POST", p("runs/create"), r#"{"experiment_id": "{own_experiment}"}"#)
        },
        step(
            "POST",
            p("runs/log-metric"),
            r#"{"run_id": "{own_run}", "key": "x", "value": 1, "timestamp": 0, "step": 0}"#,
        ),
        step("GET", p("runs/get?run_id={own_run}"), ""),
        step(
            "PUT",
            "/api/2.0/mlflow-artifacts/artifacts/{own_experiment}/{own_run}/artifacts/own.txt",
            "own artifact",
        ),
        step("GET", "/api/2.0/mlflow-artifacts/artifacts/{own_experiment}/{own_run}/artifacts/own.txt", ""),
        step(
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            json!({"username": READER, "resource_type": "experiment",
                   "resource_id": "{own_experiment}", "permission": "READ"})
            .to_string(),
        ),
        Step {
            capture: Some(("own_model", "registered_model.name")),
            ..step(
                "POST",
                p("registered-models/create"),
                json!({"name": format!("model-{user}-{{tag}}")}).to_string(),
            )
        },
        step("GET", p("registered-models/get?name={own_model}"), ""),
        step("DELETE", p("registered-models/delete"), r#"{"name": "{own_model}"}"#),
        step("POST", p("experiments/delete"), r#"{"experiment_id": "{own_experiment}"}"#),
        step("GET", p("experiments/search?max_results=100&view_type=ALL"), ""),
        step(
            "POST",
            "/graphql",
            graphql(&format!(
                "{{ mlflowSearchRuns(input: {{experimentIds: {}}}) {{ runs {{ info {{ runId }} }} }} }}",
                serde_json::to_string(&all).unwrap()
            )),
        ),
        step("GET", p("does-not-exist"), ""),
        step("POST", p("nothing/here"), "{}"),
        step("GET", "/api/3.0/mlflow/nothing", ""),
        step("DELETE", p("experiments/get"), ""),
        step("GET", "/no/such/route", ""),
        step("GET", "/health", ""),
    ]);
    steps
}

fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

fn fill(template: &str, tag: &str, vars: &HashMap<&str, String>) -> String {
    let mut out = template.replace("{tag}", tag);
    for (name, value) in vars {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    // A variable whose creating step was refused: an id that does not exist.
    for name in [
        "own_experiment",
        "own_run",
        "own_model",
        "run0",
        "run1",
        "run2",
    ] {
        out = out.replace(&format!("{{{name}}}"), "missing");
    }
    out
}

/// What must agree: the status, and the length of every array among the answer's top-level
/// fields (and GraphQL's `data.<field>.<array>`).
fn shape(answer: &Answer) -> String {
    fn arrays(parts: &mut Vec<String>, prefix: &str, object: &serde_json::Map<String, Value>) {
        for (key, value) in object {
            match value {
                Value::Array(items) => parts.push(format!("{prefix}{key}={}", items.len())),
                Value::Null if !prefix.is_empty() => parts.push(format!("{prefix}{key}=null")),
                _ => {}
            }
        }
    }
    let mut parts = vec![answer.status.to_string()];
    let json = answer.json();
    if let Some(object) = json.as_object() {
        arrays(&mut parts, "", object);
        if let Some(data) = object.get("data").and_then(Value::as_object) {
            for (field, value) in data {
                match value.as_object() {
                    Some(inner) => arrays(&mut parts, &format!("data.{field}."), inner),
                    None => parts.push(format!("data.{field}=null")),
                }
            }
        }
    }
    parts.join(" ")
}

fn capture(json: &Value, path: &str) -> Option<String> {
    path.split('.')
        .try_fold(json, |value, key| value.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn gateway_args(upstream: SocketAddr, dir: &Path, extra: &[&str]) -> support::InProcess {
    let upstream = format!("http://{upstream}");
    let db = dir.join("basic_auth.db").display().to_string();
    let secret = dir.join("assertion-secret").display().to_string();
    let mut args = vec![
        "--upstream",
        &upstream,
        "--mlflow-auth-db",
        &db,
        "--mlflow-assertion-secret-file",
        &secret,
    ];
    args.extend(extra);
    support::InProcess::start(&args).unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
#[ignore = "needs mlflow; run scripts/test"]
fn delegated_permissions_match_mlflow_basic_auth() {
    let dir = TempDir::new("delegation");
    std::fs::write(dir.path().join("assertion-secret"), format!("{SECRET}\n")).unwrap();
    let secret_file = dir.path().join("assertion-secret").display().to_string();
    let reference = Mlflow::start(
        dir.path(),
        "reference",
        &ini(
            dir.path(),
            "mlflow.server.auth:authenticate_request_basic_auth",
        ),
        &[],
    );
    // Started once the reference has created (migrated) the shared databases.
    let delegated = Mlflow::start(
        dir.path(),
        "delegated",
        &ini(dir.path(), "mlflow_gateway_auth:authenticate_request"),
        &[("MLFLOW_GATEWAY_ASSERTION_SECRET_FILE", secret_file.as_str())],
    );
    let fixtures = make_fixtures(reference.addr());
    gateway_log();
    let gateway = gateway_args(delegated.addr(), dir.path(), &[]);
    assert!(
        wait_for_log(&[
            "the upstream refuses requests without a gateway assertion",
            &format!("upstream=http://{}", delegated.addr()),
        ]),
        "{}",
        gateway_log()
    );

    let mut total = 0;
    let mut elapsed = [Duration::ZERO; 2];
    let mut mismatches = Vec::new();
    let mut statuses: HashMap<&str, std::collections::BTreeMap<u16, usize>> = HashMap::new();
    for user in [ADMIN, OWNER, READER, EDITOR, DENIED, PLAIN] {
        let steps = corpus(user, &fixtures);
        assert!(steps.len() >= 100, "{} requests for {user}", steps.len());
        let mut vars: [HashMap<&str, String>; 2] = Default::default();
        for step in &steps {
            let mut shapes = Vec::new();
            for (pass, (addr, tag)) in [(reference.addr(), "d"), (gateway.addr(), "g")]
                .into_iter()
                .enumerate()
            {
                let target = fill(&step.target, tag, &vars[pass]);
                let body = fill(&step.body, tag, &vars[pass]);
                let mut headers = vec![basic(user, password(user))];
                if step.method != "PUT" && !body.is_empty() {
                    headers.push(("Content-Type", "application/json".into()));
                }
                let started = Instant::now();
                let answer = send(addr, step.method, &target, &headers, body.as_bytes());
                elapsed[pass] += started.elapsed();
                if let Some((name, path)) = step.capture
                    && let Some(value) = capture(&answer.json(), path)
                {
                    vars[pass].insert(name, value);
                }
                shapes.push((shape(&answer), answer.text()));
            }
            total += 1;
            let status: u16 = shapes[1].0.split(' ').next().unwrap().parse().unwrap();
            *statuses.entry(user).or_default().entry(status).or_default() += 1;
            if shapes[0].0 != shapes[1].0 {
                mismatches.push(format!(
                    "{user}: {} {}\n  direct:  {} {:.200}\n  gateway: {} {:.200}",
                    step.method, step.target, shapes[0].0, shapes[0].1, shapes[1].0, shapes[1].1
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {total} requests differ:\n{}\n--- delegated mlflow log tail:\n{}",
        mismatches.len(),
        mismatches.join("\n"),
        tail(&delegated.log())
    );
    println!(
        "parity: {total} requests per pass, 6 users, all identical (direct {:?}, gateway {:?})",
        elapsed[0], elapsed[1]
    );
    for user in [ADMIN, OWNER, READER, EDITOR, DENIED, PLAIN] {
        let seen = &statuses[user];
        println!("  {user}: {seen:?}");
        // The corpus exercises both answers for everyone, and refusals for the limited users.
        assert!(seen.contains_key(&200), "{user}: {seen:?}");
        let refused = seen.get(&403).copied().unwrap_or(0);
        assert_eq!(refused > 0, user != ADMIN, "{user}: {seen:?}");
    }

    // Straight to the delegated MLflow: only a valid assertion for this request is accepted.
    let search = "/api/2.0/mlflow/experiments/search?max_results=100";
    let asserter = Asserter::new(SECRET.into()).unwrap();
    let forger = Asserter::new("an-attacker-guessed-this-secret-0000".into()).unwrap();
    let path = "/api/2.0/mlflow/experiments/search";
    let signed = |asserter: &Asserter, user: &str, method: &str, at: u64| {
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        let value = asserter.header_value(user, AdminClaim::Unknown, &method, path, at);
        (ASSERTION, value.to_str().unwrap().to_owned())
    };
    let direct = |headers: &[(&str, String)], method: &str| {
        send(delegated.addr(), method, search, headers, b"").status
    };
    let now = unix_now();
    assert_eq!(direct(&[signed(&asserter, PLAIN, "GET", now)], "GET"), 200);
    assert_eq!(direct(&[], "GET"), 401, "no assertion");
    assert_eq!(
        direct(&[basic(PLAIN, PASSWORD)], "GET"),
        401,
        "Basic without the fallback"
    );
    assert_eq!(
        direct(&[signed(&forger, ADMIN, "GET", now)], "GET"),
        401,
        "forged"
    );
    assert_eq!(
        direct(&[signed(&asserter, ADMIN, "GET", now - 120)], "GET"),
        401,
        "expired"
    );
    assert_eq!(
        direct(&[signed(&asserter, ADMIN, "GET", now + 120)], "GET"),
        401,
        "future"
    );
    assert_eq!(
        direct(&[signed(&asserter, ADMIN, "POST", now)], "GET"),
        401,
        "other method"
    );
    let other_path = send(
        delegated.addr(),
        "GET",
        "/api/2.0/mlflow/registered-models/search",
        &[signed(&asserter, ADMIN, "GET", now)],
        b"",
    );
    assert_eq!(other_path.status, 401, "other path");

    // Through the gateway a client's assertion (any spelling) is replaced by the gateway's own:
    // `plain` claiming to be the admin stays `plain`, who may not create users.
    let create_user = |headers: Vec<(&str, String)>, addr: SocketAddr, name: &str| {
        let body = json!({"username": name, "password": PASSWORD}).to_string();
        let mut headers = headers;
        headers.push(("Content-Type", "application/json".into()));
        let path = "/api/2.0/mlflow/users/create";
        send(addr, "POST", path, &headers, body.as_bytes()).status
    };
    let admin_claim = |name: &'static str| {
        let value = asserter.header_value_now(
            ADMIN,
            AdminClaim::Unknown,
            &http::Method::POST,
            "/api/2.0/mlflow/users/create",
        );
        (name, value.to_str().unwrap().to_owned())
    };
    assert_eq!(
        create_user(vec![admin_claim(ASSERTION)], delegated.addr(), "smuggled-1"),
        200,
        "the admin's assertion is accepted straight to MLflow"
    );
    let smuggled = vec![
        basic(PLAIN, PASSWORD),
        admin_claim("X-MLflow-Gateway-Assertion"),
        admin_claim("x_mlflow_gateway_assertion"),
    ];
    assert_eq!(
        create_user(smuggled, gateway.addr(), "smuggled-2"),
        403,
        "a client-sent assertion must be stripped"
    );

    // A user MLflow does not know (htpasswd) is created on first sight, with no usable
    // password, and grants apply to them.
    let htpasswd = dir.path().join("htpasswd");
    let made = Command::new("htpasswd")
        .args(["-bcB"])
        .arg(&htpasswd)
        .args(["carol", "carol-password-12345"])
        .status()
        .unwrap();
    assert!(made.success());
    let htpasswd = htpasswd.display().to_string();
    let with_htpasswd = gateway_args(delegated.addr(), dir.path(), &["--htpasswd", &htpasswd]);
    let carol = basic("carol", "carol-password-12345");
    let through = |addr: SocketAddr, headers: &[(&str, String)], target: &str| {
        send(addr, "GET", target, headers, b"")
    };
    let (admin_experiment, ..) = &fixtures.targets[1];
    let get_admin_experiment =
        format!("/api/2.0/mlflow/experiments/get?experiment_id={admin_experiment}");
    assert_eq!(
        through(
            with_htpasswd.addr(),
            std::slice::from_ref(&carol),
            &get_admin_experiment
        )
        .status,
        200,
        "default_permission READ applies to a provisioned user"
    );
    let listed = through(
        reference.addr(),
        &[basic(ADMIN, MLFLOW_ADMIN_PASSWORD)],
        "/api/2.0/mlflow/users/get?username=carol",
    );
    assert_eq!(
        listed.status,
        200,
        "carol was provisioned: {}",
        listed.text()
    );
    assert_eq!(listed.json()["user"]["is_admin"], false);
    assert_eq!(
        through(reference.addr(), std::slice::from_ref(&carol), search).status,
        401,
        "the provisioned password is unusable"
    );
    call_ok(
        reference.addr(),
        ADMIN,
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        &json!({"username": "carol", "resource_type": "experiment",
               "resource_id": admin_experiment, "permission": "DENY"}),
    );
    assert_eq!(
        through(with_htpasswd.addr(), &[carol], &get_admin_experiment).status,
        403,
        "a grant applies to a provisioned user"
    );

    // `<admin>` = 1 / 0 (what --mlflow-admin-group asserts for JWT users) sets is_admin.
    let claim = |admin: AdminClaim| {
        let value = asserter.header_value_now(
            "dana",
            admin,
            &http::Method::POST,
            "/api/2.0/mlflow/users/create",
        );
        vec![(ASSERTION, value.to_str().unwrap().to_owned())]
    };
    assert_eq!(
        create_user(claim(AdminClaim::Yes), delegated.addr(), "by-dana-1"),
        200
    );
    assert_eq!(
        create_user(claim(AdminClaim::No), delegated.addr(), "by-dana-2"),
        403
    );
    assert_eq!(
        create_user(claim(AdminClaim::Unknown), delegated.addr(), "by-dana-3"),
        403
    );
    drop(with_htpasswd);
    drop(gateway);
}

/// Everything the gateways of this test binary log (one global subscriber for all tests).
fn gateway_log() -> String {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let log = LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        tracing_subscriber::fmt()
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .init();
        log
    });
    String::from_utf8_lossy(&log.lock().unwrap()).into_owned()
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits (up to 30 s) for a gateway log line containing every one of `needles`.
fn wait_for_log(needles: &[&str]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if gateway_log()
            .lines()
            .any(|line| needles.iter().all(|needle| line.contains(needle)))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn tail(log: &str) -> &str {
    &log[log.len().saturating_sub(3000)..]
}

/// Without peers: an upstream that answers an unsigned request with anything but 401 is
/// reported loudly at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_accepts_unsigned_requests_is_reported() {
    gateway_log();
    let upstream = support::echo_upstream(None).await;
    let dir = TempDir::new("delegation-warn");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, "alice:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=\n").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let found = tokio::task::spawn_blocking(move || {
        let upstream = format!("http://{upstream}");
        let (htpasswd, secret) = (htpasswd.display().to_string(), secret.display().to_string());
        let args = ["--upstream", &upstream, "--htpasswd", &htpasswd];
        let _gateway = support::InProcess::start(
            &[&args[..], &["--mlflow-assertion-secret-file", &secret]].concat(),
        )
        .unwrap();
        wait_for_log(&[
            "THE UPSTREAM ACCEPTS REQUESTS WITHOUT A GATEWAY ASSERTION",
            &format!("upstream={upstream}"),
        ])
    })
    .await
    .unwrap();
    assert!(found, "{}", gateway_log());
}

/// Without peers: the upstream sees the gateway's assertion, never a client's copy nor the
/// client's `Authorization`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_copy_is_replaced_and_credentials_stay() {
    let upstream = support::echo_upstream(None).await;
    let dir = TempDir::new("delegation-echo");
    let htpasswd = dir.path().join("htpasswd");
    // {SHA} of "pw": enough for a header check.
    std::fs::write(&htpasswd, "alice:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=\n").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let (upstream, htpasswd, secret) = (
        format!("http://{upstream}"),
        htpasswd.display().to_string(),
        secret.display().to_string(),
    );
    let gateway = tokio::task::spawn_blocking(move || {
        let args = [
            "--upstream",
            upstream.as_str(),
            "--htpasswd",
            htpasswd.as_str(),
            "--mlflow-assertion-secret-file",
            secret.as_str(),
        ];
        support::InProcess::start(&args).unwrap()
    })
    .await
    .unwrap();
    let addr = gateway.addr();
    let answer = tokio::task::spawn_blocking(move || {
        send(
            addr,
            "GET",
            "/api/2.0/mlflow/experiments/get%20x?y=1",
            &[
                basic("alice", "pw"),
                (ASSERTION, "v1.1.1.YWRtaW4.forged".into()),
                ("X_MLflow_Gateway_Assertion", "v1.1.1.YWRtaW4.forged".into()),
            ],
            b"",
        )
    })
    .await
    .unwrap();
    let listing = answer.text();
    assert_eq!(answer.status, 201, "{listing}");
    let assertions: Vec<&str> = listing
        .lines()
        .filter(|line| {
            line.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with(ASSERTION)
        })
        .collect();
    assert_eq!(assertions.len(), 1, "{listing}");
    assert!(!listing.contains("forged"), "{listing}");
    assert!(
        !listing
            .to_ascii_lowercase()
            .contains("authorization: basic"),
        "{listing}"
    );
    let asserter = Asserter::new(SECRET.into()).unwrap();
    let value = assertions[0].split_once(": ").unwrap().1;
    let timestamp: u64 = value.split('.').nth(1).unwrap().parse().unwrap();
    let expected = asserter.header_value(
        "alice",
        AdminClaim::Unknown,
        &http::Method::GET,
        "/api/2.0/mlflow/experiments/get%20x",
        timestamp,
    );
    assert_eq!(value, expected);
}
