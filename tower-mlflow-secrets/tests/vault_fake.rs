//! The Vault source against an in-process fake Vault.
//!
//! No Vault server can be installed here, so `FakeVault` (`support/vault.rs`, shared with the
//! proxy peer tests of the `tests/` crate) is a hyper server on 127.0.0.1
//! that follows Vault's *documented* HTTP API (developer.hashicorp.com/vault/api-docs):
//! `sys/internal/ui/mounts/<path>`, KV v1 `GET /v1/<mount>/<path>`, KV v2
//! `GET /v1/<mount>/data/<path>?version=N` (`data.data`, `data.metadata`), AppRole
//! `POST /v1/auth/<mount>/login`, `POST /v1/auth/token/renew-self`,
//! `GET /v1/auth/token/lookup-self` (`data.ttl`, `data.renewable`), `X-Vault-Token`,
//! `X-Vault-Namespace`, `{"errors":[..]}` bodies, 403 for bad tokens and policy denials,
//! 404 for missing secrets, 503 when sealed, and a standby node's `307 Temporary Redirect`
//! to the active node (developer.hashicorp.com/vault/docs/concepts/ha). It was written from
//! the docs, not recorded from a live Vault; it is a fake, not a Vault.
#![cfg(feature = "vault")]

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tower_mlflow_secrets::{
    CachedSecret,
    source::{
        SecretSource,
        vault::{KvVersion, Vault, VaultAuth},
    },
};

#[path = "support/vault.rs"]
mod vault;

use self::vault::{FakeVault, ROLE_ID, ROOT, SECRET_ID};

fn token_vault(fake: &FakeVault) -> tower_mlflow_secrets::source::vault::VaultBuilder {
    Vault::builder(fake.url()).auth(VaultAuth::token(ROOT))
}

fn approle_vault(fake: &FakeVault) -> tower_mlflow_secrets::source::vault::VaultBuilder {
    Vault::builder(fake.url()).auth(VaultAuth::app_role("approle", ROLE_ID, SECRET_ID))
}

async fn fetch_text(source: &Vault) -> String {
    let fetched = source.fetch().await.unwrap();
    fetched.secret().expose_secret().to_owned()
}

#[tokio::test]
async fn kv_v2_on_a_custom_mount_is_detected() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "mlflow/prod", json!({"token": "v2-token"}));
    let source = token_vault(&fake).path("kv/mlflow/prod").build().unwrap();
    let text = fetch_text(&source).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"token": "v2-token"})
    );
    assert_eq!(fake.with(|s| s.preflights), 1);
    // The detected mount is remembered.
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| s.preflights), 1);
}

#[tokio::test]
async fn kv_v2_api_form_path_is_accepted() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "mlflow/prod", json!({"token": "v2-token"}));
    let source = token_vault(&fake)
        .path("kv/data/mlflow/prod")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&source).await, "v2-token");
}

#[tokio::test]
async fn kv_v1_on_a_custom_mount_uses_the_lease_as_expiry() {
    let fake = FakeVault::start().await;
    fake.put(
        "",
        "legacy",
        1,
        "apps/mlflow",
        json!({"username": "u", "password": "p"}),
    );
    fake.with(|s| s.v1_lease = 600);
    let source = token_vault(&fake)
        .path("legacy/apps/mlflow")
        .build()
        .unwrap();
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.expires_in(), Some(Duration::from_secs(600)));
    let data: Value = serde_json::from_str(fetched.secret().expose_secret()).unwrap();
    assert_eq!(data, json!({"username": "u", "password": "p"}));
}

#[tokio::test]
async fn configured_mount_and_version_skip_detection() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    let source = token_vault(&fake)
        .mount("kv")
        .kv_version(KvVersion::V2)
        .path("app")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&source).await, "t");
    assert_eq!(fake.with(|s| s.preflights), 0);
}

#[tokio::test]
async fn mount_without_version_detects_the_version() {
    let fake = FakeVault::start().await;
    fake.put("", "kv1", 1, "app", json!({"token": "from-v1"}));
    let source = token_vault(&fake)
        .mount("kv1")
        .path("app")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&source).await, "from-v1");
    assert_eq!(fake.with(|s| s.preflights), 1);
}

#[tokio::test]
async fn kv_v2_version_can_be_pinned() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "old"}));
    fake.put("", "kv", 2, "app", json!({"token": "new"}));
    let latest = token_vault(&fake)
        .path("kv/app")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&latest).await, "new");
    let pinned = token_vault(&fake)
        .path("kv/app")
        .field("token")
        .version(1)
        .build()
        .unwrap();
    assert_eq!(fetch_text(&pinned).await, "old");
}

#[tokio::test]
async fn approle_logs_in_once_and_reuses_the_token() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    let source = approle_vault(&fake).path("secret/mlflow").build().unwrap();
    fetch_text(&source).await;
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| (s.logins, s.reads)), (1, 2));
}

#[tokio::test]
async fn approle_token_is_renewed_before_it_expires() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    fake.with(|s| s.token_ttl = 600);
    // Renew when less than the whole lease is left: due right after login.
    let source = approle_vault(&fake)
        .path("secret/mlflow")
        .renew_before(Duration::from_secs(600))
        .build()
        .unwrap();
    fetch_text(&source).await;
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| (s.logins, s.renewals)), (1, 1));
}

#[tokio::test]
async fn approle_logs_in_again_when_renewal_fails() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    fake.with(|s| {
        s.token_ttl = 600;
        s.deny_renew = true;
    });
    let source = approle_vault(&fake)
        .path("secret/mlflow")
        .renew_before(Duration::from_secs(600))
        .build()
        .unwrap();
    fetch_text(&source).await;
    assert_eq!(fetch_text(&source).await, "{\"token\":\"t\"}");
    assert_eq!(fake.with(|s| (s.logins, s.renewals)), (2, 0));
}

#[tokio::test]
async fn approle_survives_token_expiry() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    // A short, non-renewable token, as a role with token_ttl=1s and token_max_ttl=1s gives.
    fake.with(|s| {
        s.token_ttl = 1;
        s.token_renewable = false;
    });
    let source = approle_vault(&fake)
        .path("secret/mlflow")
        .field("token")
        .build()
        .unwrap();
    let secret = CachedSecret::builder(source)
        .ttl(Duration::from_secs(1))
        .max_attempts(1)
        .build()
        .unwrap();
    assert_eq!(secret.get().await.unwrap().secret().expose_secret(), "t");
    // Let the token (and the cached value) expire for real; the fake refuses it from now on.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let first_token_expired = fake.with(|s| {
        s.tokens
            .get("hvs.issued-1")
            .and_then(|t| t.0)
            .is_some_and(|exp| Instant::now() >= exp)
    });
    assert!(first_token_expired);
    fake.put("", "secret", 2, "mlflow", json!({"token": "t2"}));
    let mut value = String::new();
    // The cache refreshes in the background; poll until the new value arrives.
    for _ in 0..50 {
        value = secret
            .get()
            .await
            .unwrap()
            .secret()
            .expose_secret()
            .to_owned();
        if value == "t2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(value, "t2");
    assert!(fake.with(|s| s.logins) >= 2);
}

#[tokio::test]
async fn approle_logs_in_again_when_vault_revokes_the_token() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    let source = approle_vault(&fake).path("secret/mlflow").build().unwrap();
    fetch_text(&source).await;
    // Vault forgets the token (revoked, or expired early by max_ttl) while the client
    // still believes it valid: the read gets 403, the source logs in again, once.
    fake.with(|s| s.tokens.retain(|t, _| t == ROOT));
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| s.logins), 2);
}

#[tokio::test]
async fn sealed_vault_is_a_transient_error() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    fake.with(|s| s.sealed = true);
    let source = token_vault(&fake).path("kv/app").build().unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn permission_denied_is_permanent_and_not_retried() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    fake.with(|s| s.denied.push("kv/app".to_owned()));
    let source = token_vault(&fake)
        .mount("kv")
        .kv_version(KvVersion::V2)
        .path("app")
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    let secret = CachedSecret::builder(source)
        .max_attempts(5)
        .build()
        .unwrap();
    assert!(secret.get().await.is_err());
    assert_eq!(
        fake.with(|s| s.reads),
        2,
        "one read by hand, one by the cache"
    );
}

#[tokio::test]
async fn approle_policy_denial_relogs_in_once_then_fails() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    fake.with(|s| s.denied.push("kv/app".to_owned()));
    let source = approle_vault(&fake)
        .mount("kv")
        .kv_version(KvVersion::V2)
        .path("app")
        .build()
        .unwrap();
    // A fresh login that is denied is not retried with another login.
    assert!(!source.fetch().await.unwrap_err().is_transient());
    assert_eq!(fake.with(|s| s.logins), 1);
    // A cached token that is denied gets exactly one new login, then the error stands.
    assert!(!source.fetch().await.unwrap_err().is_transient());
    assert_eq!(fake.with(|s| s.logins), 2);
}

#[tokio::test]
async fn missing_secret_is_permanent() {
    let fake = FakeVault::start().await;
    fake.put("", "kv", 2, "app", json!({"token": "t"}));
    let source = token_vault(&fake).path("kv/other").build().unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn namespace_header_selects_the_namespace() {
    let fake = FakeVault::start().await;
    fake.put("team-a", "kv", 2, "app", json!({"token": "team-a-token"}));
    let without = token_vault(&fake).path("kv/app").build().unwrap();
    assert!(without.fetch().await.is_err());
    let with = token_vault(&fake)
        .namespace("team-a")
        .path("kv/app")
        .field("token")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&with).await, "team-a-token");
}

#[tokio::test]
async fn errors_and_debug_never_contain_tokens() {
    let fake = FakeVault::start().await;
    fake.with(|s| s.sealed = true);
    let source = approle_vault(&fake).path("kv/app").build().unwrap();
    let err = source.fetch().await.unwrap_err();
    let text = format!("{err} {err:?} {source:?}");
    for needle in [ROLE_ID, SECRET_ID, ROOT] {
        assert!(!text.contains(needle), "{text}");
    }
}

#[tokio::test]
async fn env_configuration_reads_through_approle() {
    use tower_mlflow_secrets::config::Config;
    let fake = FakeVault::start().await;
    fake.put("team-a", "kv", 2, "mlflow", json!({"token": "from-env"}));
    let url = fake.url();
    let env = [
        ("MLFLOW_SECRETS_AUTH_ENABLE", url.as_str()),
        ("VAULT_ADDR", url.as_str()),
        ("VAULT_ROLE_ID", ROLE_ID),
        ("VAULT_SECRET_ID", SECRET_ID),
        ("VAULT_NAMESPACE", "team-a"),
        ("MLFLOW_VAULT_SECRET_PATH", "kv/mlflow"),
        ("MLFLOW_SECRETS_ALLOWED_HOSTS", "mlflow.example.com"),
    ];
    let lookup = |name: &str| {
        if name == "MLFLOW_SECRETS_AUTH_ENABLE" {
            return Some("vault".to_owned());
        }
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let config = Config::from_lookup(lookup).unwrap();
    let source = config.source().await.unwrap();
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.secret().expose_secret(), r#"{"token":"from-env"}"#);
    assert!(config.layer().await.is_ok());
    assert_eq!(fake.with(|s| s.logins), 1);
}

const FIXED: &str = "hvs.fixed-renewable";

#[tokio::test]
async fn a_renewable_fixed_token_is_looked_up_once_and_renewed() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    fake.with(|s| {
        let expiry = Instant::now() + Duration::from_secs(600);
        s.tokens.insert(FIXED.to_owned(), (Some(expiry), true, 600));
    });
    // Renew when less than the whole lease is left: due at once.
    let source = Vault::builder(fake.url())
        .auth(VaultAuth::token(FIXED))
        .path("secret/mlflow")
        .renew_before(Duration::from_secs(600))
        .build()
        .unwrap();
    fetch_text(&source).await;
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| (s.lookups, s.renewals, s.reads)), (1, 2, 2));
}

#[tokio::test]
async fn a_root_token_without_a_ttl_is_looked_up_once_and_never_renewed() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    let source = token_vault(&fake).path("secret/mlflow").build().unwrap();
    fetch_text(&source).await;
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| (s.lookups, s.renewals)), (1, 0));
}

#[tokio::test]
async fn absurd_leases_are_clamped_or_refused_without_a_panic() {
    let fake = FakeVault::start().await;
    fake.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    fake.with(|s| s.lease_reply = Some(json!(u64::MAX)));
    let source = approle_vault(&fake).path("secret/mlflow").build().unwrap();
    // Behind a cache, as in production: a panic there would wedge it.
    let cached = CachedSecret::new(source.clone());
    assert_eq!(
        cached.get().await.unwrap().secret().expose_secret(),
        "{\"token\":\"t\"}"
    );
    fetch_text(&source).await;
    assert_eq!(fake.with(|s| s.logins), 1);
    for hostile in [json!(-1), json!(2.5), json!("forever")] {
        fake.with(|s| s.lease_reply = Some(hostile.clone()));
        let source = approle_vault(&fake).path("secret/mlflow").build().unwrap();
        let err = source.fetch().await.unwrap_err().to_string();
        assert!(err.contains("`auth.lease_duration`"), "{hostile}: {err}");
    }
    fake.put("", "legacy", 1, "mlflow", json!({"token": "t"}));
    fake.with(|s| s.lease_reply = Some(json!(-5)));
    let source = token_vault(&fake).path("legacy/mlflow").build().unwrap();
    let err = source.fetch().await.unwrap_err().to_string();
    assert!(err.contains("`lease_duration`"), "{err}");
}

#[tokio::test]
async fn a_standby_redirect_to_the_active_node_is_followed_with_method_and_body() {
    let active = FakeVault::start().await;
    active.put("", "secret", 2, "mlflow", json!({"token": "t"}));
    let standby = FakeVault::start().await;
    standby.with(|s| s.redirect_to = Some(active.url()));
    // The AppRole login is a POST with a JSON body: both must reach the active node.
    let source = Vault::builder(standby.url())
        .auth(VaultAuth::app_role("approle", ROLE_ID, SECRET_ID))
        .path("secret/mlflow")
        .build()
        .unwrap();
    assert_eq!(fetch_text(&source).await, "{\"token\":\"t\"}");
    assert_eq!(active.with(|s| (s.logins, s.reads)), (1, 1));
    // Login, mount detection and read were each redirected once.
    assert_eq!(standby.with(|s| s.redirects), 3);
}

#[tokio::test]
async fn a_redirect_to_a_disallowed_host_is_refused_and_loops_are_bounded() {
    let standby = FakeVault::start().await;
    standby.with(|s| s.redirect_to = Some("http://vault-active.example:8200".to_owned()));
    let source = token_vault(&standby).path("secret/mlflow").build().unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("http://vault-active.example:8200") && text.contains("not allowed"),
        "{text}"
    );
    // Userinfo in the target is refused too, and never printed.
    standby.with(|s| s.redirect_to = Some(format!("http://user:pw@{}", standby.addr)));
    let text = source.fetch().await.unwrap_err().to_string();
    assert!(
        text.contains("not allowed") && !text.contains("pw"),
        "{text}"
    );
    standby.with(|s| {
        s.redirect_to = Some(standby.url());
        s.redirects = 0;
    });
    let text = source.fetch().await.unwrap_err().to_string();
    assert!(text.contains("more than 2 redirects"), "{text}");
    assert_eq!(standby.with(|s| s.redirects), 3);
}
