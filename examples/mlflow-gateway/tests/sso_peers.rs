//! Browser sign-in (issue 14) end to end: a real OpenID provider with a login form
//! (`tests/peers/oidc-login-server.mjs`, panva's `oidc-provider`), a real `mlflow server`
//! upstream, the gateway assembled in-process, and a cookie-jar client that follows the
//! redirects and fills the provider's forms like a browser without JavaScript.
//!
//! One MLflow and one provider are shared by the tests that run at the same time (they are
//! stopped when the last of them ends); the provider's client knows a pool of gateway
//! addresses picked up front, since its redirect URIs are fixed when it starts. The refresh
//! test has a provider of its own, with short ID tokens, that it restarts.

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use support::{
    InProcess,
    binary::basic,
    browser_client::{Jar, Page, SignInError, percent_encode, query_param},
    oidc_login::{ALICE, BOB, CAROL, OidcLogin, OidcLoginOptions, callback_url},
};
use tower_mlflow_tests::{MlflowServer, TempDir, free_port};

const SESSION_COOKIE: &str = "mlflow_gateway_session";
const LOGIN_COOKIE_PREFIX: &str = "mlflow_gateway_login.";
/// How many gateways the shared provider can serve.
const POOL: usize = 24;

/// The peers shared by the tests running at the same time.
struct Peers {
    mlflow: MlflowServer,
    oidc: OidcLogin,
    free: Mutex<Vec<SocketAddr>>,
}

static PEERS: Mutex<Weak<Peers>> = Mutex::new(Weak::new());

/// The shared MLflow and provider, started when no running test holds them.
fn peers() -> Arc<Peers> {
    let mut shared = PEERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(peers) = shared.upgrade() {
        return peers;
    }
    let mut mlflow = MlflowServer::start(false);
    let free = distinct_addrs(POOL);
    let options = free.iter().fold(
        OidcLoginOptions::new(callback_url(free[0])),
        |options, &addr| {
            options
                .redirect_uri(callback_url(addr))
                .post_logout_redirect_uri(format!("http://{addr}/"))
        },
    );
    let oidc = OidcLogin::start(options);
    mlflow.wait_healthy();
    let peers = Arc::new(Peers {
        mlflow,
        oidc,
        free: Mutex::new(free),
    });
    *shared = Arc::downgrade(&peers);
    peers
}

/// `count` different free loopback addresses.
fn distinct_addrs(count: usize) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(count);
    while addrs.len() < count {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

/// A gateway in front of `upstream`, signing users in at `oidc`, listening on `addr`.
struct Gateway {
    _gateway: InProcess,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Gateway {
    fn start(oidc: &OidcLogin, addr: SocketAddr, upstream: &str, extra: &[&str]) -> Self {
        Self::start_with_secret(oidc, addr, upstream, &oidc.session_secret_file(), extra)
    }

    fn start_with_secret(
        oidc: &OidcLogin,
        addr: SocketAddr,
        upstream: &str,
        session_secret: &std::path::Path,
        extra: &[&str],
    ) -> Self {
        let dir = TempDir::new("sso-gateway");
        let listen = addr.to_string();
        let mut args: Vec<String> = ["--listen", &listen, "--upstream", upstream]
            .map(str::to_owned)
            .into();
        args.extend(oidc.gateway_args(&callback_url(addr), session_secret));
        args.extend(extra.iter().map(|&a| a.to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let gateway = InProcess::start(&args).unwrap_or_else(|e| panic!("gateway {args:?}: {e}"));
        assert_eq!(gateway.addr(), addr);
        Self {
            _gateway: gateway,
            addr,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:<port>`.
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// `127.0.0.1:<port>`, the jar's key for its cookies.
    fn authority(&self) -> String {
        self.addr.to_string()
    }
}

impl Peers {
    /// A gateway in front of the shared MLflow, on the next pooled address.
    fn gateway(&self, extra: &[&str]) -> Gateway {
        self.gateway_to(&self.mlflow.base_url(), extra)
    }

    /// A gateway in front of `upstream`, on the next pooled address.
    fn gateway_to(&self, upstream: &str, extra: &[&str]) -> Gateway {
        let addr = self.next_addr();
        Gateway::start(&self.oidc, addr, upstream, extra)
    }

    fn next_addr(&self) -> SocketAddr {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .expect("the pool of gateway addresses is used up: raise POOL")
    }

    /// Whether MLflow itself has an experiment named `name`.
    async fn experiment_exists(&self, name: &str) -> bool {
        let url = format!(
            "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            self.mlflow.base_url(),
            percent_encode(name)
        );
        get_json(&mut Jar::new(), &url).await.status == StatusCode::OK
    }
}

/// The names of the jar's session cookies (the cookie and its chunks) at `gateway`.
fn session_cookies(jar: &Jar, gateway: &Gateway) -> Vec<String> {
    jar.cookie_names(&gateway.authority())
        .into_iter()
        .filter(|name| name == SESSION_COOKIE || name.starts_with(&format!("{SESSION_COOKIE}.")))
        .collect()
}

/// Whether `page` sets a session cookie (not a removal).
fn sets_session(page: &Page) -> bool {
    page.set_cookies_named(&format!("{SESSION_COOKIE}*"))
        .iter()
        .any(|line| !is_removal(line))
}

fn is_removal(set_cookie: &str) -> bool {
    let lower = set_cookie.to_ascii_lowercase();
    lower.contains("max-age=0") || lower.contains("expires=thu, 01 jan 1970")
}

/// Whether `page` is the redirect of a page load without a session: a 302 to `oidc`'s
/// authorization endpoint.
fn goes_to_issuer(page: &Page, oidc: &OidcLogin) -> bool {
    page.status == StatusCode::FOUND
        && page.location().is_some_and(|to| {
            to.to_string()
                .starts_with(&format!("{}/auth?", oidc.issuer()))
        })
}

/// A `GET` of `url` as a script or the UI's `fetch` makes it (no navigation headers).
async fn get_json(jar: &mut Jar, url: &str) -> Page {
    jar.api(Method::GET, url, None, None).await
}

/// `GET /_gateway/userinfo` with the jar's cookies.
async fn userinfo(jar: &mut Jar, gateway: &Gateway) -> Page {
    get_json(jar, &gateway.url("/_gateway/userinfo")).await
}

/// A JSON call through the gateway as the MLflow UI's `fetch` makes it: `Origin` and
/// `Referer` of the gateway's page.
async fn api_from_ui(
    jar: &mut Jar,
    gateway: &Gateway,
    method: Method,
    path: &str,
    json: Option<&str>,
) -> Page {
    let request = Request::builder()
        .method(method)
        .uri(gateway.url(path))
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, gateway.base())
        .header(header::REFERER, gateway.url("/"))
        .body(Bytes::from(json.unwrap_or("").to_owned()))
        .unwrap();
    jar.send(request).await
}

/// Signs in at `gateway` as `login` in a new jar; panics unless it lands on a 2xx page.
async fn signed_in(gateway: &Gateway, login: &str) -> (Jar, Page) {
    let mut jar = Jar::new();
    let page = jar
        .sign_in(&gateway.base(), login)
        .await
        .unwrap_or_else(|e| panic!("{login} could not sign in: {e}"));
    (jar, page)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn alice_signs_in_lands_on_the_mlflow_ui_and_uses_the_rest_api() {
    let peers = peers();
    let gateway = peers.gateway(&["--admin-group", "mlflow-admins"]);
    let mut jar = Jar::new();

    let first = jar.get(&gateway.url("/")).await;
    assert!(goes_to_issuer(&first, &peers.oidc), "{first:?}");
    let login_cookies = first.set_cookies_named(&format!("{LOGIN_COOKIE_PREFIX}*"));
    assert_eq!(login_cookies.len(), 1, "{first:?}");
    let issuer_url = first.location().unwrap();
    for (param, expected) in [
        ("response_type", "code"),
        ("client_id", "gateway"),
        ("code_challenge_method", "S256"),
        ("redirect_uri", callback_url(gateway.addr).as_str()),
    ] {
        assert_eq!(
            query_param(&issuer_url, param).as_deref(),
            Some(expected),
            "{issuer_url}"
        );
    }
    for param in ["state", "nonce", "code_challenge"] {
        assert!(
            query_param(&issuer_url, param).is_some_and(|v| v.len() >= 16),
            "{param}: {issuer_url}"
        );
    }

    let callback = jar.authorize_from(first, ALICE).await.unwrap();
    let landed = jar.get(&callback.to_string()).await;
    assert_eq!(landed.status, StatusCode::SEE_OTHER, "{landed:?}");
    assert_eq!(landed.location(), Some(gateway.url("/").parse().unwrap()));
    let session = landed.set_cookies_named(SESSION_COOKIE);
    assert_eq!(session.len(), 1, "{landed:?}");
    let attributes = session[0].to_ascii_lowercase();
    for attribute in ["httponly", "samesite=lax", "path=/"] {
        assert!(
            attributes.contains(attribute),
            "{attribute}: {}",
            session[0]
        );
    }
    // Plain http on loopback: no Secure; never a Domain.
    assert!(
        !attributes.contains("secure;") && !attributes.ends_with("secure"),
        "{}",
        session[0]
    );
    assert!(!attributes.contains("domain="), "{}", session[0]);
    assert!(
        landed
            .set_cookies_named(&format!("{LOGIN_COOKIE_PREFIX}*"))
            .iter()
            .all(|line| is_removal(line)),
        "the transaction cookie is not removed: {landed:?}"
    );

    let ui = jar.follow(landed).await;
    assert_eq!(ui.status, StatusCode::OK, "{ui:?}");
    assert!(ui.content_type().starts_with("text/html"), "{ui:?}");
    assert!(ui.body.contains("<title>MLflow</title>"), "{ui:?}");

    let created = api_from_ui(
        &mut jar,
        &gateway,
        Method::POST,
        "/api/2.0/mlflow/experiments/create",
        Some(r#"{"name":"sso-alice"}"#),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
    let id = created.json()["experiment_id"].as_str().unwrap().to_owned();
    let got = get_json(
        &mut jar,
        &gateway.url("/api/2.0/mlflow/experiments/get-by-name?experiment_name=sso-alice"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(got.json()["experiment"]["experiment_id"], id.as_str());
    assert!(peers.experiment_exists("sso-alice").await);

    let info = userinfo(&mut jar, &gateway).await;
    assert_eq!(info.status, StatusCode::OK, "{info:?}");
    let info = info.json();
    assert_eq!(info["user"], "alice@example.com", "{info}");
    assert_eq!(info["email"], "alice@example.com", "{info}");
    assert_eq!(
        info["groups"],
        serde_json::json!(["mlflow-users", "mlflow-admins"]),
        "{info}"
    );
    assert_eq!(info["admin"], true, "{info}");
    let expires_at = info["expires_at"].as_u64().expect("expires_at");
    let eight_hours = 8 * 3600;
    assert!(
        expires_at > now_unix() + eight_hours - 600 && expires_at <= now_unix() + eight_hours + 60,
        "{info}"
    );

    // Without --admin-group nobody is an admin.
    let plain = peers.gateway(&[]);
    let (mut jar, _) = signed_in(&plain, ALICE).await;
    let info = userinfo(&mut jar, &plain).await.json();
    assert_eq!(info["admin"], false, "{info}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn upstream_gets_the_identity_headers_and_not_the_gateways_cookies() {
    let peers = peers();
    let echo = format!("http://{}", support::echo_upstream(None).await);
    let gateway = peers.gateway_to(&echo, &[]);
    let (mut jar, landed) = signed_in(&gateway, ALICE).await;
    // The echo upstream answers 201 with what it received.
    assert_eq!(landed.status, StatusCode::CREATED, "{landed:?}");

    let request = Request::get(gateway.url("/ajax-api/2.0/mlflow/experiments/search"))
        .header(header::ACCEPT, "application/json")
        .header("x-forwarded-user", "mallory")
        .header("X_Forwarded_Email", "mallory@evil.example")
        .header("x-forwarded-groups", "mlflow-admins")
        .header(header::COOKIE, "theme=dark")
        .body(Bytes::new())
        .unwrap();
    let seen = jar.send(request).await;
    assert_eq!(seen.status, StatusCode::CREATED, "{seen:?}");
    let body = seen.body.to_ascii_lowercase();
    assert!(
        body.contains("\nx-forwarded-user: alice@example.com\n"),
        "{}",
        seen.body
    );
    assert!(
        body.contains("\nx-forwarded-email: alice@example.com\n"),
        "{}",
        seen.body
    );
    assert!(
        body.contains("\nx-forwarded-groups: mlflow-users,mlflow-admins\n"),
        "{}",
        seen.body
    );
    assert!(!body.contains("mallory"), "{}", seen.body);
    assert!(!body.contains("x_forwarded_email"), "{}", seen.body);
    assert_eq!(
        body.matches("x-forwarded-groups").count(),
        1,
        "{}",
        seen.body
    );
    assert!(!body.contains(SESSION_COOKIE), "{}", seen.body);
    assert!(!body.contains(LOGIN_COOKIE_PREFIX), "{}", seen.body);
    assert!(
        body.contains("theme=dark"),
        "other cookies pass: {}",
        seen.body
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider, mlflow and apache2-utils; run scripts/test"]
async fn api_clients_keep_working_and_get_json_401s_without_a_basic_challenge() {
    let peers = peers();
    let dir = TempDir::new("sso-htpasswd");
    let htpasswd = dir.path().join("htpasswd");
    support::htpasswd_bcrypt(&htpasswd, "bob", "bob-password-123");
    let search = "/api/2.0/mlflow/experiments/search?max_results=1";

    // SSO + htpasswd on one listener.
    let gateway = peers.gateway(&["--htpasswd", htpasswd.to_str().unwrap()]);
    let mut jar = Jar::new();
    let with_basic = |password: &str| {
        Request::get(gateway.url(search))
            .header(header::AUTHORIZATION, basic("bob", password))
            .body(Bytes::new())
            .unwrap()
    };
    let page = jar.send(with_basic("bob-password-123")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains("experiments"), "{page:?}");
    let page = jar.send(with_basic("wrong-password")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{page:?}");
    // A page load with credentials is not sent to the issuer: Authorization wins.
    let mut navigation = with_basic("bob-password-123");
    navigation
        .headers_mut()
        .insert("sec-fetch-mode", "navigate".parse().unwrap());
    navigation
        .headers_mut()
        .insert(header::ACCEPT, "text/html".parse().unwrap());
    let page = jar.send(navigation).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(jar.cookie_names(&gateway.authority()).is_empty(), "{jar:?}");

    // SSO alone, then SSO + a JWT issuer (the same provider): no Basic challenge anywhere.
    let sso_only = peers.gateway(&["--exempt", "/health"]);
    let issuer = peers.oidc.issuer();
    let sso_jwt = peers.gateway(&["--jwt-issuer", &issuer, "--jwt-audience", "urn:mlflow"]);
    for (gateway, challenge) in [(&sso_only, None), (&sso_jwt, Some("bearer"))] {
        let page = get_json(&mut jar, &gateway.url(search)).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{page:?}");
        assert!(
            page.content_type().starts_with("application/json"),
            "{page:?}"
        );
        assert_eq!(page.json()["error"], "unauthenticated", "{page:?}");
        let challenges: Vec<String> = page
            .headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect();
        assert!(challenges.iter().all(|c| !c.contains("basic")), "{page:?}");
        match challenge {
            None => assert!(challenges.is_empty(), "{page:?}"),
            Some(scheme) => assert!(
                !challenges.is_empty() && challenges.iter().all(|c| c.starts_with(scheme)),
                "{page:?}"
            ),
        }
        // A POST is never redirected either.
        let page = jar
            .api(
                Method::POST,
                &gateway.url("/api/2.0/mlflow/experiments/create"),
                Some("{}"),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{page:?}");
        // The same path as a page load goes to the issuer.
        let page = jar.get(&gateway.url(search)).await;
        assert!(goes_to_issuer(&page, &peers.oidc), "{page:?}");
        // The gateway's own paths answer JSON to scripts.
        for (path, status) in [
            ("/_gateway/userinfo", StatusCode::UNAUTHORIZED),
            ("/_gateway/nothing-here", StatusCode::NOT_FOUND),
        ] {
            let page = get_json(&mut jar, &gateway.url(path)).await;
            assert_eq!(page.status, status, "{path}: {page:?}");
            assert!(
                page.content_type().starts_with("application/json"),
                "{page:?}"
            );
        }
    }
    // An exempt path is not sent to the issuer, page load or not.
    let page = jar.get(&sso_only.url("/health")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn return_paths_only_ever_land_on_the_gateway() {
    let peers = peers();
    let gateway = peers.gateway(&[]);
    let mut jar = Jar::new();
    let long = format!("/{}", "a".repeat(3 * 1024));
    let refused = [
        "//evil.example",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "/%2f%5cevil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/ok\r\nSet-Cookie: planted=1",
        "/ok\nx",
        "/ok path",
        "/_gateway/logout",
        long.as_str(),
    ];
    // Encoded once (as a link would carry it), plus two given raw in the query.
    let mut queries: Vec<(String, String)> = refused
        .iter()
        .map(|rd| (format!("rd={}", percent_encode(rd)), (*rd).to_owned()))
        .collect();
    queries.push((
        "rd=/%2F%2Fevil.example".to_owned(),
        "raw /%2F%2F".to_owned(),
    ));
    queries.push(("rd=//evil.example".to_owned(), "raw //".to_owned()));
    let home: Uri = gateway.url("/").parse().unwrap();
    for (query, what) in &queries {
        let start = jar
            .get(&gateway.url(&format!("/_gateway/login?{query}")))
            .await;
        assert!(goes_to_issuer(&start, &peers.oidc), "{what:?}: {start:?}");
        let callback = jar.authorize_from(start, ALICE).await.unwrap();
        let landed = jar.get(&callback.to_string()).await;
        assert_eq!(landed.status, StatusCode::SEE_OTHER, "{what:?}: {landed:?}");
        assert_eq!(
            landed.location().as_ref(),
            Some(&home),
            "{what:?}: {landed:?}"
        );
        assert!(landed.set_cookies_named("planted").is_empty(), "{landed:?}");
    }

    // A good one is kept, query included.
    let wanted = "/ajax-api/2.0/mlflow/experiments/search?max_results=1";
    let start = jar
        .get(&gateway.url(&format!("/_gateway/login?rd={}", percent_encode(wanted))))
        .await;
    let callback = jar.authorize_from(start, ALICE).await.unwrap();
    let landed = jar.get(&callback.to_string()).await;
    assert_eq!(
        landed.location(),
        Some(gateway.url(wanted).parse().unwrap()),
        "{landed:?}"
    );
    // And a page load of a deep link comes back to it after the sign-in.
    let mut fresh = Jar::new();
    let deep = "/static-files/index.html?x=1";
    let callback = fresh.authorize(&gateway.url(deep), ALICE).await.unwrap();
    let landed = fresh.get(&callback.to_string()).await;
    assert_eq!(
        landed.location(),
        Some(gateway.url(deep).parse().unwrap()),
        "{landed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn a_tampered_or_foreign_cookie_is_no_session() {
    let peers = peers();
    let gateway = peers.gateway(&[]);
    let other_secret = TempDir::new("sso-other-secret");
    let other_secret_file = other_secret.path().join("session-secret");
    std::fs::write(
        &other_secret_file,
        "another-session-secret-of-more-than-32-bytes\n",
    )
    .unwrap();
    let other = Gateway::start_with_secret(
        &peers.oidc,
        peers.next_addr(),
        &peers.mlflow.base_url(),
        &other_secret_file,
        &[],
    );

    let (jar, _) = signed_in(&gateway, ALICE).await;
    let (other_jar, _) = signed_in(&other, ALICE).await;
    let own: Vec<(String, String)> = session_values(&jar, &gateway);
    let foreign: Vec<(String, String)> = session_values(&other_jar, &other);
    assert!(!own.is_empty() && !foreign.is_empty());

    let mut tampered = own.clone();
    let value = &mut tampered[0].1;
    let middle = value.len() / 2;
    let flipped = if value.as_bytes()[middle] == b'A' {
        "B"
    } else {
        "A"
    };
    value.replace_range(middle..=middle, flipped);
    let mut truncated = own.clone();
    truncated[0].1.truncate(own[0].1.len() - 4);
    let garbage = vec![(SESSION_COOKIE.to_owned(), "not-a-session".to_owned())];

    for (what, cookies) in [
        ("tampered", tampered),
        ("truncated", truncated),
        ("sealed with another secret", foreign),
        ("garbage", garbage),
    ] {
        let mut jar = Jar::new();
        for (name, value) in &cookies {
            jar.set_cookie(&gateway.authority(), name, value, "/");
        }
        let page = jar.get(&gateway.url("/")).await;
        assert!(goes_to_issuer(&page, &peers.oidc), "{what}: {page:?}");
        let page = get_json(
            &mut jar,
            &gateway.url("/api/2.0/mlflow/experiments/search?max_results=1"),
        )
        .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{what}: {page:?}");
        let page = userinfo(&mut jar, &gateway).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{what}: {page:?}");
    }

    // The untouched cookie works in a jar of its own (the check above is not vacuous).
    let mut copy = Jar::new();
    for (name, value) in &own {
        copy.set_cookie(&gateway.authority(), name, value, "/");
    }
    let page = userinfo(&mut copy, &gateway).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
}

/// The jar's session cookies at `gateway`, as (name, value).
fn session_values(jar: &Jar, gateway: &Gateway) -> Vec<(String, String)> {
    session_cookies(jar, gateway)
        .into_iter()
        .map(|name| {
            let value = jar.cookie(&gateway.authority(), &name).unwrap().to_owned();
            (name, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn an_expired_session_cookie_is_no_session() {
    let peers = peers();
    // The shortest lifetime allowed: 60 s.
    let gateway = peers.gateway(&["--session-lifetime", "60"]);
    let (mut jar, landed) = signed_in(&gateway, ALICE).await;
    let kept = session_values(&jar, &gateway);
    let info = userinfo(&mut jar, &gateway).await;
    assert_eq!(info.status, StatusCode::OK, "{info:?} after {landed:?}");
    assert!(info.json()["expires_at"].as_u64().unwrap() <= now_unix() + 60);

    // A copy that ignores Max-Age (as a stolen cookie would) stops working at expires_at.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut copy = Jar::new();
        for (name, value) in &kept {
            copy.set_cookie(&gateway.authority(), name, value, "/");
        }
        if userinfo(&mut copy, &gateway).await.status == StatusCode::UNAUTHORIZED {
            let page = copy.get(&gateway.url("/")).await;
            assert!(goes_to_issuer(&page, &peers.oidc), "{page:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a 60 s session still works after 120 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The jar itself drops it too (Max-Age=60, counted from when it came).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !session_cookies(&jar, &gateway).is_empty() {
        assert!(Instant::now() < deadline, "Max-Age is not 60: {jar:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn a_replayed_or_foreign_state_is_refused() {
    let peers = peers();
    let gateway = peers.gateway(&[]);

    // Replay: the same callback URL after it made a session.
    let mut jar = Jar::new();
    let callback = jar.authorize(&gateway.url("/"), ALICE).await.unwrap();
    assert!(query_param(&callback, "state").is_some(), "{callback}");
    let tx_cookies: Vec<(String, String, String)> = jar
        .cookies(&gateway.authority())
        .into_iter()
        .filter(|c| c.name.starts_with(LOGIN_COOKIE_PREFIX))
        .map(|c| (c.name.clone(), c.value.clone(), c.path.clone()))
        .collect();
    assert_eq!(tx_cookies.len(), 1, "{jar:?}");
    let first = jar.get(&callback.to_string()).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    assert!(sets_session(&first), "{first:?}");

    let again = jar.get(&callback.to_string()).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "replayed: {again:?}");
    assert!(again.content_type().starts_with("text/html"), "{again:?}");
    assert!(!sets_session(&again), "{again:?}");

    // Even with the transaction cookie put back (a copy kept by an attacker): used once.
    let mut replayer = Jar::new();
    for (name, value, path) in &tx_cookies {
        replayer.set_cookie(&gateway.authority(), name, value, path);
    }
    let replayed = replayer.get(&callback.to_string()).await;
    assert_refused_callback(
        &mut replayer,
        &gateway,
        &replayed,
        "replayed with its cookie",
    )
    .await;

    // Foreign: a callback URL made for another jar's transaction (login CSRF).
    let mut victim = Jar::new();
    let own_start = victim.get(&gateway.url("/_gateway/login")).await;
    assert!(goes_to_issuer(&own_start, &peers.oidc), "{own_start:?}");
    let mut attacker = Jar::new();
    let planted = attacker
        .authorize(&gateway.url("/_gateway/login"), BOB)
        .await
        .unwrap();
    let page = victim.get(&planted.to_string()).await;
    assert_refused_callback(&mut victim, &gateway, &page, "foreign state").await;

    // A callback with no state, or one no transaction knows.
    for query in ["code=abc", "code=abc&state=unknown-state"] {
        let page = victim
            .get(&gateway.url(&format!("/_gateway/callback?{query}")))
            .await;
        assert_refused_callback(&mut victim, &gateway, &page, query).await;
    }
}

/// `page`, the answer to a callback in `jar`, is a 400 page that made no session.
async fn assert_refused_callback(jar: &mut Jar, gateway: &Gateway, page: &Page, what: &str) {
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{what}: {page:?}");
    assert!(
        page.content_type().starts_with("text/html"),
        "{what}: {page:?}"
    );
    assert!(!sets_session(page), "{what}: {page:?}");
    assert!(session_cookies(jar, gateway).is_empty(), "{what}: {jar:?}");
    let info = userinfo(jar, gateway).await;
    assert_eq!(info.status, StatusCode::UNAUTHORIZED, "{what}: {info:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn state_changing_requests_with_a_session_need_the_gateways_origin() {
    let peers = peers();
    let gateway = peers.gateway(&[]);
    let (mut jar, _) = signed_in(&gateway, ALICE).await;
    let create = gateway.url("/api/2.0/mlflow/experiments/create");
    let post = |name: &str, header: Option<(header::HeaderName, String)>| {
        let mut request = Request::post(&create).header(header::CONTENT_TYPE, "application/json");
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request
            .body(Bytes::from(format!(r#"{{"name":"{name}"}}"#)))
            .unwrap()
    };

    for (name, header) in [
        ("csrf-no-origin", None),
        (
            "csrf-foreign-origin",
            Some((header::ORIGIN, "http://evil.example".to_owned())),
        ),
        (
            "csrf-null-origin",
            Some((header::ORIGIN, "null".to_owned())),
        ),
        (
            "csrf-foreign-referer",
            Some((header::REFERER, "http://evil.example/page".to_owned())),
        ),
    ] {
        let page = jar.send(post(name, header)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{name}: {page:?}");
        assert!(
            !peers.experiment_exists(name).await,
            "{name} reached MLflow"
        );
    }
    for (name, header) in [
        (
            "csrf-own-referer",
            (header::REFERER, gateway.url("/#/experiments")),
        ),
        ("csrf-own-origin", (header::ORIGIN, gateway.base())),
    ] {
        let page = jar.send(post(name, Some(header))).await;
        assert_eq!(page.status, StatusCode::OK, "{name}: {page:?}");
        assert!(
            peers.experiment_exists(name).await,
            "{name} did not reach MLflow"
        );
    }
    // Reads need no Origin.
    let page = get_json(
        &mut jar,
        &gateway.url("/api/2.0/mlflow/experiments/search?max_results=1"),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn issuer_errors_show_a_page_and_never_redirect() {
    let peers = peers();
    let gateway = peers.gateway(&[]);
    let mut jar = Jar::new();
    let start = jar.get(&gateway.url("/_gateway/login")).await;
    assert!(goes_to_issuer(&start, &peers.oidc), "{start:?}");
    let login_form = jar.follow(start).await;
    assert_eq!(login_form.status, StatusCode::OK, "{login_form:?}");
    // The provider's "[ Cancel ]" link sends error=access_denied back to the callback.
    let abort = login_form
        .body
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|href| href.ends_with("/abort"))
        .unwrap_or_else(|| panic!("no cancel link: {login_form:?}"));
    let abort = login_form.resolve(abort).unwrap().to_string();
    let aborted = jar.get(&abort).await;
    let callback = jar
        .follow_until(aborted, |url| url.path() == "/_gateway/callback")
        .await
        .unwrap_or_else(|page| panic!("the provider did not come back: {page:?}"));
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    let page = jar.get(&callback.to_string()).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
    assert!(page.content_type().starts_with("text/html"), "{page:?}");
    assert!(page.headers.get(header::LOCATION).is_none(), "{page:?}");
    assert!(
        page.body.contains("/_gateway/login"),
        "no try-again link: {page:?}"
    );
    assert!(!sets_session(&page), "{page:?}");

    let page = jar
        .get(&gateway.url("/_gateway/callback?error=server_error&state=whatever"))
        .await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{page:?}");
    assert!(page.content_type().starts_with("text/html"), "{page:?}");
    assert!(page.headers.get(header::LOCATION).is_none(), "{page:?}");
    assert!(session_cookies(&jar, &gateway).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn only_allowed_and_verified_users_get_a_session() {
    let peers = peers();
    let gateway = peers.gateway(&["--allowed-email-domain", "example.com"]);

    // Bob's page names him; Carol has no verified email to name, her page says so.
    for (login, why) in [(BOB, "bob@example.org"), (CAROL, "verif")] {
        let mut jar = Jar::new();
        let error = jar.sign_in(&gateway.base(), login).await.unwrap_err();
        let SignInError::Refused(page) = error else {
            panic!("{login}: {error}");
        };
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{login}: {page:?}");
        assert!(page.content_type().starts_with("text/html"), "{page:?}");
        assert!(page.headers.get(header::LOCATION).is_none(), "{page:?}");
        assert!(
            page.body.to_ascii_lowercase().contains(why),
            "{login}: the page does not say {why:?}: {page:?}"
        );
        assert!(
            session_cookies(&jar, &gateway).is_empty(),
            "{login}: {jar:?}"
        );
        assert_eq!(
            userinfo(&mut jar, &gateway).await.status,
            StatusCode::UNAUTHORIZED
        );
        // Not a loop: the next page load goes to the issuer, which (remembering them)
        // sends them back to the same refusal.
        let again = jar.navigate(&gateway.url("/")).await;
        assert_eq!(again.status, StatusCode::FORBIDDEN, "{login}: {again:?}");
    }

    let (mut jar, _) = signed_in(&gateway, ALICE).await;
    assert_eq!(userinfo(&mut jar, &gateway).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn two_logins_started_at_once_in_one_jar_both_succeed() {
    let peers = peers();
    let gateway = peers.gateway(&[]);
    let mut jar = Jar::new();
    let first = jar
        .get(&gateway.url("/_gateway/login?rd=%2Fstatic-files%2Ffirst"))
        .await;
    let second = jar
        .get(&gateway.url("/_gateway/login?rd=%2Fstatic-files%2Fsecond"))
        .await;
    assert!(goes_to_issuer(&first, &peers.oidc) && goes_to_issuer(&second, &peers.oidc));
    let open = jar
        .cookie_names(&gateway.authority())
        .into_iter()
        .filter(|name| name.starts_with(LOGIN_COOKIE_PREFIX))
        .count();
    assert_eq!(open, 2, "{jar:?}");

    let first_callback = jar.authorize_from(first, ALICE).await.unwrap();
    let second_callback = jar.authorize_from(second, ALICE).await.unwrap();
    assert_ne!(
        query_param(&first_callback, "state"),
        query_param(&second_callback, "state")
    );
    for (callback, rd) in [
        (first_callback, "/static-files/first"),
        (second_callback, "/static-files/second"),
    ] {
        let page = jar.get(&callback.to_string()).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{rd}: {page:?}");
        assert!(sets_session(&page), "{rd}: {page:?}");
        assert_eq!(
            page.location(),
            Some(gateway.url(rd).parse().unwrap()),
            "{page:?}"
        );
    }
    assert_eq!(userinfo(&mut jar, &gateway).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn logout_removes_every_session_cookie() {
    let peers = peers();
    let gateway = peers.gateway(&[]);
    let (mut jar, _) = signed_in(&gateway, ALICE).await;
    assert!(!session_cookies(&jar, &gateway).is_empty());
    let logout = gateway.url("/_gateway/logout");

    let page = jar.get(&logout).await;
    assert_eq!(page.status, StatusCode::METHOD_NOT_ALLOWED, "GET: {page:?}");
    let page = jar.api(Method::POST, &logout, None, None).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "no Origin: {page:?}");
    let page = jar
        .api(Method::POST, &logout, None, Some("http://evil.example"))
        .await;
    assert_eq!(
        page.status,
        StatusCode::FORBIDDEN,
        "foreign Origin: {page:?}"
    );
    assert_eq!(userinfo(&mut jar, &gateway).await.status, StatusCode::OK);

    let names = session_cookies(&jar, &gateway);
    // Origin alone is enough (a form post from the gateway's page carries it).
    let page = jar
        .api(Method::POST, &logout, None, Some(&gateway.base()))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.content_type().starts_with("text/html"), "{page:?}");
    for name in &names {
        assert!(
            page.set_cookies_named(name)
                .iter()
                .any(|line| is_removal(line)),
            "{name} not removed: {page:?}"
        );
    }
    assert!(session_cookies(&jar, &gateway).is_empty(), "{jar:?}");
    assert_eq!(
        userinfo(&mut jar, &gateway).await.status,
        StatusCode::UNAUTHORIZED
    );
    let page = jar.get(&gateway.url("/")).await;
    assert!(goes_to_issuer(&page, &peers.oidc), "{page:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn logout_with_end_session_signs_out_at_the_issuer_too() {
    let peers = peers();
    let gateway = peers.gateway(&["--oidc-end-session"]);
    let (mut jar, _) = signed_in(&gateway, ALICE).await;
    let page = jar
        .api(
            Method::POST,
            &gateway.url("/_gateway/logout"),
            None,
            Some(&gateway.base()),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{page:?}");
    assert!(session_cookies(&jar, &gateway).is_empty(), "{jar:?}");
    let end_session = page.location().unwrap();
    assert!(
        end_session
            .to_string()
            .starts_with(&format!("{}/session/end?", peers.oidc.issuer())),
        "{end_session}"
    );
    assert_eq!(
        query_param(&end_session, "client_id").as_deref(),
        Some("gateway")
    );
    assert_eq!(
        query_param(&end_session, "post_logout_redirect_uri"),
        Some(gateway.url("/")),
        "{end_session}"
    );

    // The provider asks for confirmation, then sends the browser back to the gateway, which
    // (with no session left anywhere) sends it to the provider's login form.
    let confirm = jar.navigate(&end_session.to_string()).await;
    assert_eq!(confirm.status, StatusCode::OK, "{confirm:?}");
    let login_form = jar.submit_form(&confirm, &[("logout", "yes")]).await;
    assert_eq!(login_form.status, StatusCode::OK, "{login_form:?}");
    let form = login_form.form().unwrap();
    assert!(form.has_input("login"), "{login_form:?}");
    assert_eq!(
        login_form.url.authority().map(|a| a.as_str().to_owned()),
        Some(format!("127.0.0.1:{}", peers.oidc.port())),
        "{login_form:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs oidc-provider and mlflow; run scripts/test"]
async fn a_session_is_refreshed_and_ends_when_the_refresh_fails() {
    let peers = peers();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut oidc = OidcLogin::start(OidcLoginOptions::new(callback_url(addr)).id_token_ttl(2));
    let gateway = Gateway::start(
        &oidc,
        addr,
        &peers.mlflow.base_url(),
        &["--oidc-scopes", "openid email profile offline_access"],
    );
    let mut jar = Jar::new();
    let start = jar.get(&gateway.url("/")).await;
    let issuer_url = start.location().unwrap();
    assert_eq!(
        query_param(&issuer_url, "prompt").as_deref(),
        Some("consent"),
        "{issuer_url}"
    );
    let callback = jar.authorize_from(start, ALICE).await.unwrap();
    let landed = jar.navigate(&callback.to_string()).await;
    assert_eq!(landed.status, StatusCode::OK, "{landed:?}");
    let before = session_values(&jar, &gateway);
    let search = gateway.url("/api/2.0/mlflow/experiments/search?max_results=1");

    // The ID token lives 2 s: a request after that refreshes the session.
    let deadline = Instant::now() + Duration::from_secs(30);
    let refreshed = loop {
        let page = get_json(&mut jar, &search).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "a refresh must not fail here: {page:?}"
        );
        if sets_session(&page) {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "the session was not refreshed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_ne!(session_values(&jar, &gateway), before, "{refreshed:?}");
    let info = userinfo(&mut jar, &gateway).await;
    assert_eq!(info.status, StatusCode::OK, "{info:?}");
    assert_eq!(info.json()["user"], "alice@example.com");

    // A restarted provider knows no refresh token: the next refresh fails, the session ends.
    oidc.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ended = loop {
        let page = get_json(&mut jar, &search).await;
        if page.status != StatusCode::OK {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "the session outlived a failed refresh by 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(ended.status, StatusCode::UNAUTHORIZED, "{ended:?}");
    assert!(
        ended
            .set_cookies_named(&format!("{SESSION_COOKIE}*"))
            .iter()
            .any(|line| is_removal(line)),
        "the session cookie is not removed: {ended:?}"
    );
    assert!(session_cookies(&jar, &gateway).is_empty(), "{jar:?}");
    let page = jar.get(&gateway.url("/")).await;
    assert!(goes_to_issuer(&page, &oidc), "{page:?}");
}

/// A local server for the jar itself: `/set` sets cookies and redirects to a form page,
/// `/clear` removes one, and every answer lists the request line, `Cookie`, `Origin`,
/// `Content-Type` and body.
async fn cookie_server() -> SocketAddr {
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(
                |request: http::Request<hyper::body::Incoming>| async move {
                    let header = |name: header::HeaderName| {
                        request
                            .headers()
                            .get(name)
                            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
                    };
                    let mut listing = format!(
                        "{} {}\ncookie: {}\norigin: {}\ncontent-type: {}\n",
                        request.method(),
                        request.uri(),
                        header(header::COOKIE),
                        header(header::ORIGIN),
                        header(header::CONTENT_TYPE),
                    );
                    let path = request.uri().path().to_owned();
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    listing.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
                    let mut response = http::Response::builder();
                    match path.as_str() {
                        "/set" => {
                            response = response
                                .status(StatusCode::SEE_OTHER)
                                .header(header::LOCATION, "/forms/page");
                            for cookie in [
                                "a=1; Path=/; HttpOnly",
                                "b=2; Path=/forms",
                                "c=3; Max-Age=0",
                                "d=4; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                                "e=5",
                                "f=6; Path=/other",
                                "g=7; Max-Age=3600; Path=/forms/page",
                            ] {
                                response = response.header(header::SET_COOKIE, cookie);
                            }
                        }
                        "/clear" => {
                            response = response.header(header::SET_COOKIE, "a=; Path=/; Max-Age=0");
                        }
                        "/forms/page" => {
                            listing.push_str(
                                "<html><form method=\"post\" action=\"/forms/submit?x=1&amp;y=2\">\
                                 <input type=\"hidden\" name=\"tok\" value=\"a&amp;b\"/>\
                                 <input required type=\"text\" name=\"login\" >\
                                 <input type=password name=password></form></html>",
                            );
                        }
                        _ => {}
                    }
                    Ok::<_, std::convert::Infallible>(
                        response.body(Full::new(Bytes::from(listing))).unwrap(),
                    )
                },
            );
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_jar_keeps_cookies_by_path_follows_redirects_and_posts_forms() {
    let server = cookie_server().await;
    let other = cookie_server().await;
    let mut jar = Jar::new();

    let page = jar.navigate(&format!("http://{server}/set")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(page.url.path(), "/forms/page");
    // Longer paths first; expired, removed and other-path cookies not sent.
    assert!(
        page.body.contains("\ncookie: g=7; b=2; a=1; e=5\n"),
        "{page:?}"
    );
    let mut names = jar.cookie_names(&server.to_string());
    names.sort();
    assert_eq!(names, ["a", "b", "e", "f", "g"]);

    let form = page.form().expect("a form");
    assert_eq!(form.method, Method::POST);
    assert_eq!(form.inputs, ["tok", "login", "password"]);
    let answer = jar
        .submit_form(&page, &[("login", "alice smith"), ("password", "p&q")])
        .await;
    assert!(
        answer.body.starts_with("POST /forms/submit?x=1&y=2\n"),
        "{answer:?}"
    );
    assert!(
        answer
            .body
            .contains("\nbody: tok=a%26b&login=alice+smith&password=p%26q\n"),
        "{answer:?}"
    );
    assert!(
        answer
            .body
            .contains(&format!("\norigin: http://{server}\n")),
        "{answer:?}"
    );
    assert!(
        answer
            .body
            .contains("\ncontent-type: application/x-www-form-urlencoded\n"),
        "{answer:?}"
    );
    assert!(
        answer.body.contains("\ncookie: b=2; a=1; e=5\n"),
        "{answer:?}"
    );

    jar.get(&format!("http://{server}/clear")).await;
    assert!(jar.cookie(&server.to_string(), "a").is_none());
    let page = jar.get(&format!("http://{server}/")).await;
    assert!(page.body.contains("\ncookie: e=5\n"), "{page:?}");
    // Another port is another site.
    let page = jar.get(&format!("http://{other}/forms/page")).await;
    assert!(page.body.contains("\ncookie: \n"), "{page:?}");
}
