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
/// TLS pair (readable, matching), the upstream CAs, the assertion secret, and each user
/// store opened alone (htpasswd and tokens parsed, MLflow's database read, the JWT CA
/// loaded), so that one broken store does not hide the next. Empty: all is well.
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
