//! A real headless Chromium signs in to the MLflow UI through `mlflow-gateway`'s browser
//! sign-in (OpenID Connect against `oidc-provider`'s login form) and sees an experiment
//! created beforehand in a real `mlflow server`.

mod support;

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{
    binary::{self, Binary},
    oidc_login::{self, OidcLogin, OidcLoginOptions},
    webdriver::Browser,
};
use tokio::net::TcpListener;
use tower_mlflow_tests::MlflowServer;

/// An experiment name nothing else on the page could show by chance.
const EXPERIMENT: &str = "sso-exp-7f3a";
/// The login typed into the provider's form.
const LOGIN: &str = "alice@example.com";
/// How long the MLflow UI may take to render the experiment after the sign-in.
const UI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each step of the provider's forms may take to appear.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// A step's outcome: what went wrong is reported with a screenshot and the logs.
type Outcome<T> = Result<T, Box<dyn std::error::Error>>;

/// `target/sso-browser/<name>`, where the screenshots go.
fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join("sso-browser")
        .join(name)
}

/// The WebDriver client itself, on a static page: typing, clicking, scripts, the DOM and a
/// screenshot, so a failure of the sign-in test below is not the client's.
#[tokio::test]
#[ignore = "needs chromium; run scripts/test"]
async fn webdriver_drives_a_static_page() {
    let browser = Browser::start().await;
    let page = "<title>static</title><input id=name><button id=go \
        onclick=\"document.getElementById('out').textContent='hello '+\
        document.getElementById('name').value\">go</button><p id=out></p>";
    let url = format!("data:text/html;charset=utf-8,{}", page.replace('#', "%23"));
    browser.goto(&url).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "static");
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .starts_with("data:text/html")
    );

    let name = browser.find("#name").await.unwrap().expect("the input");
    browser.send_keys(&name, "chromium").await.unwrap();
    let go = browser
        .find("button#go")
        .await
        .unwrap()
        .expect("the button");
    browser.click(&go).await.unwrap();
    let out = browser
        .wait_for("#out", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(browser.text(&out).await.unwrap(), "hello chromium");
    assert!(browser.source().await.unwrap().contains("hello chromium"));

    assert!(browser.find("#absent").await.unwrap().is_none());
    assert_eq!(browser.find_all("input, button, p").await.unwrap().len(), 3);
    let sum = browser
        .execute(
            "return Promise.resolve(arguments[0] + arguments[1]);",
            &[json!(2), json!(3)],
        )
        .await
        .unwrap();
    assert_eq!(sum, json!(5));
    let error = browser.execute("throw new Error('boom');", &[]).await;
    assert!(error.is_err_and(|e| e.to_string().contains("boom")));

    let shot = artifact("static-page.png");
    browser.screenshot(&shot).await.unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        shot.display()
    );
    browser.quit().await.unwrap();
}

/// The whole sign-in, as a person does it: open the gateway, get sent to the provider's login
/// form, sign in, consent, land on the MLflow UI and see the experiment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, oidc-provider and mlflow; run scripts/test"]
async fn chromium_signs_in_and_sees_an_experiment() {
    let mut mlflow = MlflowServer::start(false);
    // The redirect URL names the gateway's public address, so it is chosen first; the binary
    // listens on a port of its own choosing behind a loopback relay on that address (a load
    // balancer in front of it, as in production).
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = relay.local_addr().unwrap();
    let redirect_url = oidc_login::callback_url(public);
    let provider = OidcLogin::start(OidcLoginOptions::new(&redirect_url));
    mlflow.wait_healthy();
    let experiment_id = create_experiment(SocketAddr::from(([127, 0, 0, 1], mlflow.port()))).await;

    let mut args = vec!["--upstream".to_owned(), mlflow.base_url()];
    args.extend(provider.gateway_args(&redirect_url, &provider.session_secret_file()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gateway = Binary::start(&args);
    tokio::spawn(relay_to(relay, gateway.addr()));

    let browser = Browser::start().await;
    let outcome = sign_in_and_look(&browser, public, &provider.issuer(), &experiment_id).await;
    if let Err(error) = outcome {
        let shot = artifact("failure.png");
        let saved = browser
            .screenshot(&shot)
            .await
            .map(|()| shot.display().to_string());
        let url = browser.current_url().await.unwrap_or_default();
        let shown = browser
            .execute("return document.body ? document.body.innerText : '';", &[])
            .await
            .ok()
            .and_then(|shown| shown.as_str().map(str::to_owned))
            .unwrap_or_default();
        panic!(
            "{error}\nat {url} (screenshot: {saved:?})\nvisible text:\n{}\ngateway log:\n{}\n\
             provider log:\n{}",
            tail(&shown, 3000),
            tail(&gateway.log(), 6000),
            tail(&provider.log(), 3000),
        );
    }
    browser.quit().await.unwrap();
}

/// Creates [`EXPERIMENT`] through MLflow's REST API, straight at the server; its id.
async fn create_experiment(mlflow: SocketAddr) -> String {
    let body = json!({ "name": EXPERIMENT }).to_string();
    let (status, answer) = binary::request(
        mlflow,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        None,
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "creating the experiment: {answer}");
    let created: Value = serde_json::from_str(&answer).expect("a JSON answer");
    created["experiment_id"]
        .as_str()
        .expect("an experiment_id")
        .to_owned()
}

/// Accepts connections on `listener` and pipes each to `target`.
async fn relay_to(listener: TcpListener, target: SocketAddr) {
    while let Ok((mut client, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

/// Signs in at `gateway` through the provider at `issuer`'s forms and checks what the MLflow UI
/// then shows and lets the page do.
async fn sign_in_and_look(
    browser: &Browser,
    gateway: SocketAddr,
    issuer: &str,
    experiment_id: &str,
) -> Outcome<()> {
    let origin = format!("http://{gateway}");
    browser.goto(&format!("{origin}/")).await?;

    // The gateway sends the browser to the provider, whose dev login form takes any password.
    let login = browser
        .wait_for("form input[name=login]", FORM_TIMEOUT)
        .await?;
    let at = browser.current_url().await?;
    if !at.starts_with(&format!("{issuer}/")) {
        return Err(format!("the login form is not the provider's ({issuer}): {at}").into());
    }
    browser.send_keys(&login, LOGIN).await?;
    let password = browser
        .find("form input[name=password]")
        .await?
        .ok_or("the login form has no password field")?;
    browser.send_keys(&password, "any password will do").await?;
    submit(browser).await?;

    // Then the consent form, then back to the gateway's callback and on to the UI.
    browser
        .wait_for("form input[name=prompt][value=consent]", FORM_TIMEOUT)
        .await?;
    submit(browser).await?;
    let landed = wait_until(UI_TIMEOUT, || async {
        let url = browser.current_url().await?;
        Ok(url.starts_with(&format!("{origin}/")).then_some(url))
    })
    .await
    .map_err(|e| format!("never came back to the gateway: {e}"))?;
    if landed.contains("/_gateway/") {
        return Err(format!("stuck on the gateway's own page {landed}").into());
    }

    // The MLflow UI's home page lists recent experiments from its API, called with the
    // session cookie: a link named after the experiment, to its page.
    let link = "return Array.from(document.querySelectorAll('a'))
        .filter(a => a.textContent.trim() === arguments[0])
        .map(a => a.getAttribute('href'));";
    let hrefs = wait_until(UI_TIMEOUT, || async {
        let hrefs = browser.execute(link, &[json!(EXPERIMENT)]).await?;
        Ok(hrefs.as_array().filter(|hrefs| !hrefs.is_empty()).cloned())
    })
    .await
    .map_err(|e| format!("the MLflow UI never showed a link named {EXPERIMENT:?}: {e}"))?;
    let to_experiment = format!("experiments/{experiment_id}");
    if !hrefs.iter().any(|href| {
        href.as_str()
            .is_some_and(|href| href.contains(&to_experiment))
    }) {
        return Err(format!("the {EXPERIMENT:?} links lead elsewhere: {hrefs:?}").into());
    }
    let url = browser.current_url().await?;
    if !url.starts_with(&format!("{origin}/")) {
        return Err(format!("the UI is not on the gateway's origin {origin}: {url}").into());
    }
    let title = browser.title().await?;
    if !title.contains("MLflow") {
        return Err(format!("the page title is {title:?}, not MLflow's").into());
    }
    browser.screenshot(&artifact("mlflow-ui.png")).await?;

    // The page's own scripts see who is signed in, but never the session cookie (HttpOnly).
    let userinfo = browser
        .execute(
            "return fetch('/_gateway/userinfo', { credentials: 'include' })
                 .then(r => r.json().then(body => ({ status: r.status, body })));",
            &[],
        )
        .await?;
    check_userinfo(&userinfo)?;
    // A write from the page (the UI's own origin, with the session cookie) passes the
    // gateway's cross-site check and reaches MLflow.
    let created = browser
        .execute(
            "return fetch('/ajax-api/2.0/mlflow/experiments/create', {
                     method: 'POST', credentials: 'include',
                     headers: { 'Content-Type': 'application/json' },
                     body: JSON.stringify({ name: arguments[0] }) })
                 .then(r => r.text().then(body => ({ status: r.status, body })));",
            &[json!(format!("{EXPERIMENT}-from-the-ui"))],
        )
        .await?;
    if created["status"] != json!(200) {
        return Err(format!("creating an experiment from the page answered {created}").into());
    }
    let cookies = browser.execute("return document.cookie;", &[]).await?;
    if cookies
        .as_str()
        .is_some_and(|c| c.contains("mlflow_gateway"))
    {
        return Err(format!("the page's scripts can read the gateway's cookies: {cookies}").into());
    }
    Ok(())
}

fn check_userinfo(userinfo: &Value) -> Outcome<()> {
    let body = &userinfo["body"];
    let groups = body["groups"].as_array().cloned().unwrap_or_default();
    let admitted = userinfo["status"] == json!(200)
        && body["user"] == json!(LOGIN)
        && body["email"] == json!(LOGIN)
        && groups.contains(&json!("mlflow-users"))
        && body["expires_at"].as_u64().is_some();
    if admitted {
        Ok(())
    } else {
        Err(format!("/_gateway/userinfo from the page answered {userinfo}").into())
    }
}

/// Clicks the current form's submit button.
async fn submit(browser: &Browser) -> Outcome<()> {
    let button = browser
        .find("form button[type=submit]")
        .await?
        .ok_or("the form has no submit button")?;
    Ok(browser.click(&button).await?)
}

/// Polls `check` every 250 ms until it yields a value; an error once `timeout` has passed.
async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Outcome<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("not within {timeout:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The last `max` bytes of `log` (at a character boundary).
fn tail(log: &str, max: usize) -> &str {
    let mut start = log.len().saturating_sub(max);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}
