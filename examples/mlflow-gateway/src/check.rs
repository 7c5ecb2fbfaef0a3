//! `mlflow-gateway --check`: everything that can be checked without serving, every problem
//! listed rather than the first, by the code that [`assemble`](crate::assemble) runs.

use tower_mlflow_core::http::error_chain;

use crate::{
    assemble::{authenticator, upstream_roots},
    assertion::Asserter,
    config::Config,
    tls::TlsListener,
};

/// The problems of `config`, each a line naming its input: the configuration's rules, the
/// TLS pair (readable, matching), the upstream CAs, the assertion secret, browser sign-in's
/// two secret files (and its CA when no JWT issuer shares it), and each user store opened
/// alone (htpasswd and tokens parsed, MLflow's database read, the JWT CA loaded), so that one
/// broken store does not hide the next. Empty: all is well.
pub async fn check(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(error) = config.validate() {
        problems.push(error_chain(&error));
    }
    if let Some(Err(error)) = config.tls.as_ref().map(TlsListener::new) {
        problems.push(error_chain(&error));
    }
    if let Err(error) = upstream_roots(config) {
        problems.push(error_chain(&error));
    }
    if let Some(Err(error)) = config
        .mlflow_assertion_secret_file
        .as_deref()
        .map(Asserter::from_file)
    {
        problems.push(error_chain(&error));
    }
    if let Some(sso) = &config.sso {
        if let Err(error) = crate::sso::load_secrets(sso) {
            problems.push(error_chain(&error));
        }
        // With a JWT issuer the same file is loaded with the stores below.
        if let Some(path) = sso.ca_file.as_ref().filter(|_| config.jwt.is_none())
            && let Err(error) = std::fs::read(path)
        {
            let path = path.display();
            problems.push(format!("cannot read the --jwt-ca-file {path}: {error}"));
        }
    }
    for store in stores_alone(config) {
        if let Err(error) = authenticator(&store).await {
            problems.push(error_chain(&error));
        }
    }
    problems
}

/// One configuration per configured user store, holding that store only.
fn stores_alone(config: &Config) -> Vec<Config> {
    let mut none = config.clone();
    none.htpasswd = None;
    none.tokens_file = None;
    none.mlflow_auth_db = None;
    none.jwt = None;
    let mut stores = Vec::new();
    if config.htpasswd.is_some() {
        stores.push(Config {
            htpasswd: config.htpasswd.clone(),
            ..none.clone()
        });
    }
    if config.tokens_file.is_some() {
        stores.push(Config {
            tokens_file: config.tokens_file.clone(),
            ..none.clone()
        });
    }
    if config.mlflow_auth_db.is_some() {
        stores.push(Config {
            mlflow_auth_db: config.mlflow_auth_db.clone(),
            ..none.clone()
        });
    }
    if config.jwt.is_some() {
        stores.push(Config {
            jwt: config.jwt.clone(),
            ..none
        });
    }
    stores
}

#[cfg(test)]
mod tests {
    use tower_mlflow_tests::TempDir;

    use super::*;
    use crate::config::SsoConfig;

    const CLIENT_SECRET: &str = "client-secret-value";
    const SESSION_KEY: &str = "session-key-line-of-more-than-32-bytes-0123456789";

    /// A gateway with browser sign-in alone, its two secret files in `dir`.
    fn sso_config(dir: &TempDir, session_key: &str) -> Config {
        let client = dir.path().join("client");
        let session = dir.path().join("session.key");
        std::fs::write(&client, format!("{CLIENT_SECRET}\n")).unwrap();
        std::fs::write(&session, session_key).unwrap();
        let mut config = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:5000".parse().unwrap(),
        );
        config.sso = Some(SsoConfig::new(
            "https://login.example.com",
            "gateway",
            client,
            "http://127.0.0.1:8080/_gateway/callback".parse().unwrap(),
            session,
        ));
        config
    }

    #[tokio::test]
    async fn check_reads_the_sso_secret_files_and_never_shows_them() {
        let dir = TempDir::new("check-sso");
        let good = sso_config(&dir, SESSION_KEY);
        assert_eq!(check(&good).await, Vec::<String>::new());

        let short = sso_config(&dir, "short-key");
        let problems = check(&short).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("--session-secret-file"),
            "{problems:?}"
        );

        let mut missing = good.clone();
        let sso = missing.sso.as_mut().unwrap();
        sso.client_secret_file = dir.path().join("absent");
        sso.ca_file = Some(dir.path().join("absent-ca.pem"));
        let problems = check(&missing).await;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("--oidc-client-secret-file"),
            "{problems:?}"
        );
        assert!(problems[1].contains("--jwt-ca-file"), "{problems:?}");
        for shown in [&problems, &check(&short).await] {
            let text = shown.join("\n");
            assert!(
                !text.contains(CLIENT_SECRET) && !text.contains("short-key"),
                "{text}"
            );
        }
    }
}
