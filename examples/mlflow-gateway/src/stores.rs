//! The user stores the configuration names, opened and chained: one verified-credential cache
//! over the password stores, then static tokens, then JWT; and the [`Reloader`] of their files.

use std::{path::PathBuf, sync::Arc, time::Duration};

use secrecy::{ExposeSecret as _, SecretString};
use tower_mlflow_auth::{
    BoxAuthenticator,
    authenticators::{Cached, Htpasswd, Jwt, MlflowUsers, MlflowUsersBuilder},
    first_of,
};
use tower_mlflow_core::BoxError;

use crate::{
    assemble::{AssembleError, Reloader, StoreKind},
    config::{Config, ConfigError, MlflowAuthDb},
    metrics::{self, Metrics, Observed},
    tokens::{TOKENS_REFRESH_INTERVAL, TokensFile},
};

/// The authenticators the configuration asks for, tried in order: htpasswd, MLflow's user
/// database, static tokens, JWT; and what reloads their files.
pub(crate) async fn authenticator(
    config: &Config,
) -> Result<(BoxAuthenticator, Reloader), AssembleError> {
    observed_authenticator(config, &Arc::new(Metrics::new(&metrics::AUTHENTICATORS))).await
}

/// [`authenticator`], recording its password checks in `metrics` and naming on each
/// principal the store that accepted it.
pub(crate) async fn observed_authenticator(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(BoxAuthenticator, Reloader), AssembleError> {
    let mut reloader = Reloader::default();
    // The password stores share ONE cache (tower_mlflow_auth::authenticator, "Composing a
    // chain"): a hit from any store takes the synchronous fast path, a miss checks each store
    // at most once, and a store's reload revokes what it no longer vouches for.
    let mut passwords: Vec<BoxAuthenticator> = Vec::new();
    if let Some(path) = &config.htpasswd {
        let htpasswd = Htpasswd::builder(path)
            // A stat a second: a removed user is refused within about a second of the edit.
            .refresh_interval(HTPASSWD_REFRESH_INTERVAL)
            .build()
            .map_err(|e| AssembleError::Store {
                what: StoreKind::Htpasswd,
                name: path.display().to_string(),
                source: e.into(),
            })?;
        reloader.htpasswd = Some(htpasswd.clone());
        let htpasswd = Observed::tagged(htpasswd, "htpasswd");
        passwords.push(BoxAuthenticator::new(htpasswd));
    }
    if let Some(db) = &config.mlflow_auth_db {
        let store_error = |source: BoxError| AssembleError::Store {
            what: StoreKind::MlflowUsers,
            name: db.to_string(),
            source,
        };
        let users = mlflow_users(config, db)?
            .build()
            .map_err(|e| store_error(e.into()))?;
        users.refresh().await.map_err(|e| store_error(e.into()))?;
        reloader.mlflow_users = Some(users.clone());
        let users = Observed::tagged(users, "mlflow-users");
        passwords.push(BoxAuthenticator::new(users));
    }
    let mut chain: Vec<BoxAuthenticator> = Vec::new();
    if let Some(passwords) = passwords
        .into_iter()
        .reduce(|a, b| BoxAuthenticator::new(first_of(a, b)))
    {
        // Inside the cache: each call is a miss and a password check.
        let passwords =
            BoxAuthenticator::new(Observed::password_checks(passwords, Arc::clone(metrics)));
        chain.push(if config.cache_ttl.is_zero() {
            passwords
        } else {
            // Built inside the runtime, so the stores start watching their sources at once.
            let cached = Cached::builder(passwords)
                .ttl(config.cache_ttl)
                .build()
                .map_err(|e| AssembleError::Cache(e.into()))?;
            BoxAuthenticator::new(cached)
        });
    }
    if let Some(path) = &config.tokens_file {
        let tokens = TokensFile::open(path).map_err(|e| AssembleError::Store {
            what: StoreKind::Tokens,
            name: path.display().to_string(),
            source: e.into(),
        })?;
        tokens.follow(TOKENS_REFRESH_INTERVAL);
        reloader.tokens = Some(tokens.clone());
        // Outside the password cache (a check is one SHA-256), before JWT: a bearer token
        // that is no static token then costs one hash-map miss before the signature check.
        chain.push(BoxAuthenticator::new(Observed::tagged(tokens, "tokens")));
    }
    if let Some(issuer) = &config.jwt {
        let mut jwt = Jwt::builder()
            .issuer(&issuer.issuer)
            .audience(&issuer.audience);
        if let Some(group) = &config.mlflow_admin_group {
            jwt = jwt.admin_if_claim("groups", group.as_str());
        }
        if let Some(path) = &issuer.ca_file {
            let pem = std::fs::read(path).map_err(|source| AssembleError::JwtCa {
                path: path.clone(),
                source: source.into(),
            })?;
            // Adds to the public roots, as the flag promises.
            jwt = jwt.root_certificates_pem(pem).public_roots(true);
        }
        let jwt = jwt.build().map_err(|e| AssembleError::Store {
            what: StoreKind::Jwt,
            name: issuer.issuer.clone(),
            source: e.into(),
        })?;
        // Fail fast on a wrong issuer URL, but start anyway if the issuer is merely down:
        // keys are fetched again on the first token.
        if let Err(error) = jwt.refresh().await {
            // As `dyn Error`, the log line shows the cause (`error.sources`) too.
            let error: &dyn std::error::Error = &error;
            tracing::warn!(error, "cannot fetch the issuer's keys yet");
        }
        // Outside the password cache: a JWT carries its own expiry.
        chain.push(BoxAuthenticator::new(Observed::tagged(jwt, "jwt")));
    }
    let authenticator = chain
        .into_iter()
        .reduce(|chain, next| BoxAuthenticator::new(first_of(chain, next)))
        .ok_or(AssembleError::Config(ConfigError::NoAuthenticator))?;
    Ok((authenticator, reloader))
}

/// The builder for `--mlflow-auth-db`, with the PostgreSQL password and CAs read from their
/// files.
fn mlflow_users(config: &Config, db: &MlflowAuthDb) -> Result<MlflowUsersBuilder, AssembleError> {
    let builder = MlflowUsers::builder().refresh_interval(config.users_refresh);
    let url = match db {
        MlflowAuthDb::Sqlite(path) => return Ok(builder.sqlite(path)),
        MlflowAuthDb::Postgres(url) => url,
    };
    let read = |flag, path: &PathBuf| {
        std::fs::read(path).map_err(|source| AssembleError::MlflowAuthDbFile {
            flag,
            path: path.clone(),
            source,
        })
    };
    let mut builder = builder.postgres(url);
    if let Some(path) = &config.mlflow_auth_db_password_file {
        let bytes = read("--mlflow-auth-db-password-file", path)?;
        let text = SecretString::from(String::from_utf8_lossy(&bytes).into_owned());
        // The first line, as in a PGPASSFILE-style secret mount; the line end is no part of it.
        let password = text.expose_secret().lines().next().unwrap_or_default();
        builder = builder.postgres_password(SecretString::from(password));
    }
    if let Some(path) = &config.mlflow_auth_db_ca_file {
        builder = builder.postgres_ca_pem(read("--mlflow-auth-db-ca-file", path)?);
    }
    Ok(builder)
}

/// How often the htpasswd file is checked for changes.
const HTPASSWD_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
