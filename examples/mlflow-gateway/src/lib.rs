//! `mlflow-gateway`: an authenticating reverse proxy in front of one MLflow tracking server —
//! the replacement for the nginx + htpasswd recipe.
//!
//! The binary's flags are documented by `mlflow-gateway --help`. It reads top to bottom:
//! [`Flags`] → a validated [`Config`] → [`assemble`] (listener, TLS, authenticators, proxy)
//! → [`Gateway::serve`] (the accept loop with its timers and connection cap).

mod activity;
mod assemble;
pub mod assertion;
mod config;
mod flags;
mod forwarded;
pub mod proxy;
mod server;
mod tls;
mod tunnel;
mod upstream;

pub use self::{
    assemble::{AssembleError, Gateway, StoreKind, assemble},
    config::{Config, ConfigError, JwtIssuer, Limits, TlsFiles},
    flags::Flags,
    tls::TlsFilesError,
};
