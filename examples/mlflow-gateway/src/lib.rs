//! `mlflow-gateway`: an authenticating reverse proxy in front of one MLflow tracking server —
//! the replacement for the nginx + htpasswd recipe.
//!
//! The binary's flags are documented by `mlflow-gateway --help`; this library exposes the
//! pieces for tests and for embedding.

pub mod proxy;
pub mod server;
