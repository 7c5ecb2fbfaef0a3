//! Tower middleware that injects credentials from secret stores into outbound requests to
//! MLflow-compatible services.
//!
//! This crate is a skeleton: `SecretHeaderLayer`, the secret cache and the secret sources
//! are being built (see the project's client-side issue).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
