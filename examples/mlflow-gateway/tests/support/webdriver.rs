//! A minimal W3C WebDriver client driving a real headless Chromium through `chromedriver`
//! (Debian `chromium` and `chromium-driver`, installed by `scripts/provision`, which exports
//! `TOWER_MLFLOW_CHROMEDRIVER`).
//!
//! Only what the browser tests need: one session, navigation, CSS look-ups, typing, clicks,
//! scripts, the page source and screenshots.

use std::{
    fmt,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use tower_mlflow_core::http::HttpClient;
use tower_mlflow_tests::free_port;

/// The key under which WebDriver names an element (W3C WebDriver, "Elements").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A failed WebDriver command: which one, and what the driver said.
#[derive(Debug)]
pub struct WebDriverError {
    command: String,
    error: String,
    message: String,
}

impl WebDriverError {
    fn new(command: &str, error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            command: command.to_owned(),
            error: error.into(),
            message: message.into(),
        }
    }

    /// The W3C error code, such as `no such element`.
    pub fn error(&self) -> &str {
        &self.error
    }
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebDriver {}: {}: {}",
            self.command, self.error, self.message
        )
    }
}

impl std::error::Error for WebDriverError {}

/// An element of the current page, as the driver names it.
#[derive(Clone, Debug)]
pub struct Element(String);

/// `chromedriver` and the Chromium it starts, in their own process group, which dropping
/// kills as a whole (Chromium's helpers included).
#[derive(Debug)]
struct DriverProcess {
    child: Child,
    profile: PathBuf,
    log: PathBuf,
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One headless Chromium session; dropping it ends the session and kills the browser.
#[derive(Debug)]
pub struct Browser {
    client: HttpClient,
    session_url: String,
    process: DriverProcess,
}

impl Browser {
    /// How long one WebDriver command may take (a page load included).
    pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

    /// Starts `chromedriver` (`$TOWER_MLFLOW_CHROMEDRIVER`, else `chromedriver` on `PATH`) on a
    /// free port and opens a session with a headless Chromium (1280×900, no sandbox since CI
    /// runs as root) using a fresh profile under `target/`; panics with the driver's log if
    /// that fails.
    pub async fn start() -> Self {
        let driver = std::env::var_os("TOWER_MLFLOW_CHROMEDRIVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("chromedriver"));
        let port = free_port();
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-{}-{port}", std::process::id()));
        let profile = base.join("profile");
        std::fs::create_dir_all(&profile).expect("cannot create the Chromium profile dir");
        let log = base.join("chromedriver.log");
        let log_file = std::fs::File::create(&log).expect("chromedriver log file");
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("chromedriver log file"))
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}) — run scripts/provision (or scripts/test)",
                    driver.display()
                )
            });
        let process = DriverProcess {
            child,
            profile: base,
            log,
        };
        let client = HttpClient::builder()
            .timeout(Self::COMMAND_TIMEOUT)
            // Screenshots travel as base64 in JSON.
            .max_body_len(64 << 20)
            .build()
            .expect("an HTTP client");
        let driver_url = format!("http://127.0.0.1:{port}");
        let mut browser = Self {
            client,
            session_url: String::new(),
            process,
        };
        browser.wait_ready(&driver_url).await;
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": {
                        "pageLoad": 60_000,
                        "script": 30_000,
                        "implicit": 0,
                    },
                    "goog:chromeOptions": {
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1280,900",
                            "--no-first-run",
                            "--no-default-browser-check",
                            // Loopback only: the provider's pages @import web fonts, and
                            // Chromium phones home; nothing may leave this machine.
                            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-domain-reliability",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                },
            },
        });
        let created = browser
            .command(
                "new session",
                "POST",
                &format!("{driver_url}/session"),
                Some(capabilities),
            )
            .await;
        let session_id = match created {
            Ok(value) => value["sessionId"].as_str().map(str::to_owned),
            Err(error) => panic!("{error}\n{}", browser.driver_log()),
        };
        let session_id = session_id.unwrap_or_else(|| panic!("no sessionId from chromedriver"));
        browser.session_url = format!("{driver_url}/session/{session_id}");
        browser
    }

    async fn wait_ready(&mut self, driver_url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.process.child.try_wait() {
                panic!("chromedriver exited with {status}:\n{}", self.driver_log());
            }
            let status = self
                .command("status", "GET", &format!("{driver_url}/status"), None)
                .await;
            if status.is_ok_and(|value| value["ready"] == Value::Bool(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready after 30 s:\n{}",
                self.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What chromedriver has logged so far.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    /// One WebDriver command: its `value`, or the driver's error.
    async fn command(
        &self,
        name: &str,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let request = http::Request::builder()
            .method(method)
            .uri(url)
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(Bytes::from(body))
            .map_err(|e| WebDriverError::new(name, "bad request", e.to_string()))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| WebDriverError::new(name, "no answer", e.to_string()))?;
        let status = response.status();
        let mut answer: Value = serde_json::from_slice(response.body()).map_err(|e| {
            WebDriverError::new(name, format!("HTTP {status}, not JSON"), e.to_string())
        })?;
        let value = answer["value"].take();
        if status.is_success() {
            return Ok(value);
        }
        Err(WebDriverError::new(
            name,
            value["error"].as_str().unwrap_or("unknown error"),
            value["message"].as_str().unwrap_or_default(),
        ))
    }

    async fn session_command(
        &self,
        name: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let url = format!("{}{path}", self.session_url);
        self.command(name, method, &url, body).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.session_command("navigate", "POST", "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The URL of the current page.
    pub async fn current_url(&self) -> Result<String, WebDriverError> {
        let url = self
            .session_command("current url", "GET", "/url", None)
            .await?;
        Ok(url.as_str().unwrap_or_default().to_owned())
    }

    /// The title of the current page.
    pub async fn title(&self) -> Result<String, WebDriverError> {
        let title = self.session_command("title", "GET", "/title", None).await?;
        Ok(title.as_str().unwrap_or_default().to_owned())
    }

    /// The first element matching the CSS `selector`, if any.
    pub async fn find(&self, selector: &str) -> Result<Option<Element>, WebDriverError> {
        let found = self
            .session_command("find element", "POST", "/element", Some(css(selector)))
            .await;
        match found {
            Ok(value) => Ok(element(&value)),
            Err(error) if error.error() == "no such element" => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every element matching the CSS `selector`.
    pub async fn find_all(&self, selector: &str) -> Result<Vec<Element>, WebDriverError> {
        let found = self
            .session_command("find elements", "POST", "/elements", Some(css(selector)))
            .await?;
        Ok(found
            .as_array()
            .map(|all| all.iter().filter_map(element).collect())
            .unwrap_or_default())
    }

    /// Polls every 200 ms until an element matches `selector`; an error naming the selector and
    /// the current URL once `timeout` has passed.
    pub async fn wait_for(
        &self,
        selector: &str,
        timeout: Duration,
    ) -> Result<Element, WebDriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.find(selector).await? {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await.unwrap_or_default();
                return Err(WebDriverError::new(
                    "wait for element",
                    "timeout",
                    format!("nothing matched {selector:?} within {timeout:?} on {url}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Types `text` into `element`.
    pub async fn send_keys(&self, element: &Element, text: &str) -> Result<(), WebDriverError> {
        let path = format!("/element/{}/value", element.0);
        self.session_command("send keys", "POST", &path, Some(json!({ "text": text })))
            .await
            .map(drop)
    }

    /// Clicks `element` (waiting for a page load it starts).
    pub async fn click(&self, element: &Element) -> Result<(), WebDriverError> {
        let path = format!("/element/{}/click", element.0);
        self.session_command("click", "POST", &path, Some(json!({})))
            .await
            .map(drop)
    }

    /// The visible text of `element`.
    pub async fn text(&self, element: &Element) -> Result<String, WebDriverError> {
        let path = format!("/element/{}/text", element.0);
        let text = self
            .session_command("element text", "GET", &path, None)
            .await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` as the body of a function called with `args` in the page, and returns
    /// what it returns (a returned promise is awaited).
    pub async fn execute(&self, script: &str, args: &[Value]) -> Result<Value, WebDriverError> {
        let body = json!({ "script": script, "args": args });
        self.session_command("execute script", "POST", "/execute/sync", Some(body))
            .await
    }

    /// The current page's serialized DOM.
    pub async fn source(&self) -> Result<String, WebDriverError> {
        let source = self
            .session_command("page source", "GET", "/source", None)
            .await?;
        Ok(source.as_str().unwrap_or_default().to_owned())
    }

    /// Saves a PNG screenshot of the viewport to `path` (creating its folder).
    pub async fn screenshot(&self, path: &Path) -> Result<(), WebDriverError> {
        let encoded = self
            .session_command("screenshot", "GET", "/screenshot", None)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .map_err(|e| WebDriverError::new("screenshot", "not base64", e.to_string()))?;
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, png));
        written.map_err(|e| {
            WebDriverError::new(
                "screenshot",
                "cannot write",
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Ends the session (Chromium exits); dropping then stops chromedriver.
    pub async fn quit(self) -> Result<(), WebDriverError> {
        self.session_command("delete session", "DELETE", "", None)
            .await
            .map(drop)
    }
}

fn css(selector: &str) -> Value {
    json!({ "using": "css selector", "value": selector })
}

fn element(value: &Value) -> Option<Element> {
    value[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))
}
