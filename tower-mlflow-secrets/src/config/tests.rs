use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;
use crate::format::HeaderMode;

fn config(vars: &[(&str, &str)]) -> Result<Config, EnvConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

const HOSTS: (&str, &str) = ("MLFLOW_SECRETS_ALLOWED_HOSTS", "mlflow.example.com");
const VAULT: [(&str, &str); 3] = [
    ("VAULT_ADDR", "https://vault.example.com"),
    ("VAULT_TOKEN", "hvs.secret-token"),
    ("MLFLOW_VAULT_SECRET_PATH", "kv/mlflow"),
];
const AWS: (&str, &str) = ("MLFLOW_AWS_SECRET_ID", "mlflow/prod");

#[test]
fn nothing_enabled_is_an_error() {
    assert_eq!(
        config(&[HOSTS]).err(),
        Some(EnvConfigError::NoProviderEnabled)
    );
}

#[test]
fn vault_wins_over_aws_without_fallback() {
    let mut vars = vec![
        HOSTS,
        AWS,
        ("MLFLOW_SECRETS_AUTH_ENABLE", "AWS-Secrets-Manager, vault"),
    ];
    vars.extend(VAULT);
    let c = config(&vars).unwrap();
    assert_eq!(c.providers().len(), 1);
    assert_eq!(c.providers()[0].slug(), "vault");
    assert!(!c.fallback());
}

#[test]
fn fallback_keeps_every_enabled_provider_in_order() {
    let mut vars = vec![
        HOSTS,
        AWS,
        ("MLFLOW_SECRETS_AUTH_ENABLE_AWS_SECRETS_MANAGER", "yes"),
        ("MLFLOW_SECRETS_AUTH_ENABLE_VAULT", "On"),
        ("MLFLOW_SECRETS_FALLBACK", "true"),
    ];
    vars.extend(VAULT);
    let c = config(&vars).unwrap();
    let slugs: Vec<_> = c.providers().iter().map(Provider::slug).collect();
    assert_eq!(slugs, ["vault", "aws-secrets-manager"]);
}

#[test]
fn unknown_slug_names_the_variable() {
    let err = config(&[HOSTS, ("MLFLOW_SECRETS_AUTH_ENABLE", "gcp")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("MLFLOW_SECRETS_AUTH_ENABLE is invalid"),
        "{err}"
    );
}

#[test]
fn missing_vault_addr_is_named() {
    let err = config(&[HOSTS, ("MLFLOW_SECRETS_AUTH_ENABLE", "vault")]).unwrap_err();
    assert_eq!(err, EnvConfigError::Missing("VAULT_ADDR"));
}

#[test]
fn token_wins_over_approle_and_approle_mount_defaults() {
    let mut vars = vec![HOSTS, ("MLFLOW_SECRETS_AUTH_ENABLE", "vault")];
    vars.extend(VAULT);
    vars.push(("VAULT_ROLE_ID", "r"));
    vars.push(("VAULT_SECRET_ID", "s"));
    let c = config(&vars).unwrap();
    let Provider::Vault(v) = &c.providers()[0] else {
        panic!("not vault")
    };
    assert!(
        matches!(v.auth, VaultAuthConfig::Token(ref t) if t.expose_secret() == "hvs.secret-token")
    );
    vars.retain(|(k, _)| *k != "VAULT_TOKEN");
    let c = config(&vars).unwrap();
    let Provider::Vault(v) = &c.providers()[0] else {
        panic!("not vault")
    };
    assert!(matches!(&v.auth, VaultAuthConfig::AppRole { mount, .. } if mount == "approle"));
}

#[test]
fn bare_vault_path_means_the_secret_mount() {
    let c = config(&[
        HOSTS,
        ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
        ("VAULT_ADDR", "https://v"),
        ("VAULT_TOKEN", "t"),
        ("MLFLOW_VAULT_SECRET_PATH", "mlflow"),
    ])
    .unwrap();
    let Provider::Vault(v) = &c.providers()[0] else {
        panic!("not vault")
    };
    assert_eq!(v.path, "secret/mlflow");
}

#[test]
fn ttl_follows_the_plugin_rules() {
    let ttl = |v: &str| {
        let mut vars = vec![
            HOSTS,
            ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
            ("MLFLOW_VAULT_TTL_SEC", v),
        ];
        vars.extend(VAULT);
        config(&vars).map(|c| c.ttl().as_secs())
    };
    assert_eq!(ttl("0"), Ok(300));
    assert_eq!(ttl("-5"), Ok(300));
    assert_eq!(ttl("999999"), Ok(86_400));
    assert_eq!(ttl("60"), Ok(60));
    assert_eq!(
        ttl("ten").err(),
        Some(EnvConfigError::Invalid {
            variable: "MLFLOW_VAULT_TTL_SEC",
            reason: "not a whole number of seconds"
        })
    );
}

#[test]
fn invalid_auth_mode_is_named() {
    let err = config(&[
        HOSTS,
        AWS,
        ("MLFLOW_SECRETS_AUTH_ENABLE", "aws-secrets-manager"),
        ("MLFLOW_AWS_AUTH_MODE", "digest"),
    ])
    .unwrap_err();
    assert!(err.to_string().starts_with("MLFLOW_AWS_AUTH_MODE"), "{err}");
}

#[test]
fn header_modes_follow_the_plugin() {
    let base = [
        HOSTS,
        AWS,
        ("MLFLOW_SECRETS_AUTH_ENABLE", "aws-secrets-manager"),
    ];
    let c = config(&base).unwrap();
    assert_eq!(c.template().mode(), &HeaderMode::Bearer);
    let mut custom = base.to_vec();
    custom.push(("MLFLOW_AUTH_HEADER_NAME", "X-Api-Key"));
    let c = config(&custom).unwrap();
    assert_eq!(c.template().mode(), &HeaderMode::Raw);
    assert_eq!(c.template().name().as_str(), "x-api-key");
    let mut basic = base.to_vec();
    basic.push(("MLFLOW_AWS_AUTH_MODE", "BASIC"));
    assert_eq!(
        config(&basic).unwrap().template().mode(),
        &HeaderMode::Basic
    );
    basic.push(("MLFLOW_SECRETS_FORMAT", "token"));
    assert!(
        config(&basic)
            .unwrap_err()
            .to_string()
            .starts_with("MLFLOW_AWS_AUTH_MODE")
    );
}

#[test]
fn aws_region_falls_back_to_default_region() {
    let c = config(&[
        HOSTS,
        AWS,
        ("MLFLOW_SECRETS_AUTH_ENABLE", "aws-secrets-manager"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
    ])
    .unwrap();
    let Provider::Aws(a) = &c.providers()[0] else {
        panic!("not aws")
    };
    assert_eq!(a.region.as_deref(), Some("eu-west-1"));
}

#[test]
fn azure_url_must_be_https() {
    let err = config(&[
        HOSTS,
        ("MLFLOW_SECRETS_AUTH_ENABLE", "azure-key-vault"),
        ("AZURE_KEY_VAULT_URL", "http://kv.vault.azure.net"),
        ("MLFLOW_AZURE_SECRET_NAME", "mlflow"),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        EnvConfigError::Invalid {
            variable: "AZURE_KEY_VAULT_URL",
            reason: "must start with https://"
        }
    );
}

#[test]
fn allowlist_defaults_to_the_tracking_uri_origin() {
    let mut vars = vec![
        ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
        (
            "MLFLOW_TRACKING_URI",
            "https://user@mlflow.example.com:8443/",
        ),
    ];
    vars.extend(VAULT);
    let c = config(&vars).unwrap();
    assert!(
        c.allowlist()
            .allows(&"https://mlflow.example.com:8443/api".parse().unwrap())
    );
    assert!(
        !c.allowlist()
            .allows(&"https://mlflow.example.com/api".parse().unwrap())
    );
    vars.retain(|(k, _)| *k != "MLFLOW_TRACKING_URI");
    assert_eq!(
        config(&vars).err(),
        Some(EnvConfigError::Missing("MLFLOW_SECRETS_ALLOWED_HOSTS"))
    );
}

#[test]
fn allowlist_with_ports_and_bad_patterns() {
    let mut vars = vec![
        ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
        (
            "MLFLOW_SECRETS_ALLOWED_HOSTS",
            "mlflow.example.com:5000, *.corp.example",
        ),
    ];
    vars.extend(VAULT);
    let c = config(&vars).unwrap();
    assert!(
        c.allowlist()
            .allows(&"https://mlflow.example.com:5000/".parse().unwrap())
    );
    assert!(
        c.allowlist()
            .allows(&"https://a.corp.example/".parse().unwrap())
    );
    vars[1] = ("MLFLOW_SECRETS_ALLOWED_HOSTS", "http://mlflow.example.com");
    let err = config(&vars).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("MLFLOW_SECRETS_ALLOWED_HOSTS is invalid"),
        "{err}"
    );
}

#[test]
fn allowed_hosts_without_a_port_match_any_port_as_in_the_plugin() {
    let mut vars = vec![
        ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
        (
            "MLFLOW_SECRETS_ALLOWED_HOSTS",
            "127.0.0.1, MLflow.Example.com, [::1], api.example.com:8443",
        ),
    ];
    vars.extend(VAULT);
    let c = config(&vars).unwrap();
    let allows = |uri: &str| c.allowlist().allows(&uri.parse().unwrap());
    assert!(allows("http://127.0.0.1:43503/api/2.0/mlflow/runs/create"));
    assert!(allows("http://[::1]:5000/"));
    assert!(allows("https://mlflow.example.com:5000/"));
    assert!(allows("https://mlflow.example.com/"));
    assert!(allows("https://api.example.com:8443/"));
    // A given port is the only one; https is still required off loopback.
    assert!(!allows("https://api.example.com/"));
    assert!(!allows("http://mlflow.example.com:5000/"));
    assert!(!allows("http://127.0.0.2.example.com:5000/"));
    // Shell globs beyond a leading `*.` are still refused.
    vars[1] = ("MLFLOW_SECRETS_ALLOWED_HOSTS", "mlflow.*.com");
    assert!(config(&vars).is_err());
}

#[test]
fn errors_and_debug_never_show_secrets() {
    let mut vars = vec![
        HOSTS,
        ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
        ("MLFLOW_VAULT_TTL_SEC", "hvs.secret-token"),
    ];
    vars.extend(VAULT);
    let err = config(&vars).unwrap_err();
    assert!(!err.to_string().contains("hvs.secret-token"));
    vars.pop();
    vars.retain(|(k, _)| *k != "MLFLOW_VAULT_TTL_SEC");
    vars.extend(VAULT);
    let text = format!("{:?}", config(&vars).unwrap());
    assert!(!text.contains("hvs.secret-token"), "{text}");
}

#[test]
fn disallowed_host_policy() {
    let mut vars = vec![
        HOSTS,
        ("MLFLOW_SECRETS_AUTH_ENABLE", "vault"),
        ("MLFLOW_SECRETS_ON_DISALLOWED_HOST", "fail"),
    ];
    vars.extend(VAULT);
    assert_eq!(
        config(&vars).unwrap().on_disallowed_host(),
        DisallowedHost::Fail
    );
}
