//! `mlflow-gateway`: an authenticating reverse proxy in front of one MLflow tracking server —
//! the replacement for the nginx + htpasswd recipe.
//!
//! The binary's flags are documented by `mlflow-gateway --help`. It reads top to bottom:
//! [`Flags::load`] (flags, `MLFLOW_GATEWAY_*` variables, a `--config` TOML file) → a
//! validated [`Config`] → [`assemble`] (listener, TLS, authenticators, proxy) →
//! [`Gateway::serve`] (the accept loop with its timers and connection cap). [`check`] is
//! `--check`; [`Reloader`] is what SIGHUP calls.

mod access_log;
mod activity;
mod assemble;
pub mod assertion;
mod body;
mod check;
mod config;
mod flags;
mod forwarded;
pub mod logging;
mod metrics;
mod on_wake;
pub mod proxy;
mod server;
mod sso;
mod stores;
mod tls;
pub mod tokens;
mod tunnel;
mod upstream;

pub use self::{
    access_log::TARGET as ACCESS_LOG_TARGET,
    assemble::{AssembleError, Gateway, Reloader, StoreKind, assemble},
    check::check,
    config::{Config, ConfigError, JwtIssuer, Limits, SsoConfig, TlsFiles},
    flags::{
        ConfigFileError, ConfigFileErrorKind, ENV_PREFIX, Flags, LoadError, SsoFlags, env_var,
    },
    logging::LogFormat,
    sso::SsoError,
    tls::TlsFilesError,
};
