//! Built-in authenticators, each behind its own feature.
//!
//! | type | feature | credentials |
//! |---|---|---|
//! | `Htpasswd` | `htpasswd` | Basic, checked against an Apache htpasswd file |
//! | `MlflowUsers` | `mlflow-users` | Basic, checked against MLflow's user store (werkzeug hashes) |
//! | `StaticTokens` | `static-tokens` | Bearer tokens or API keys in a named header |
//! | `Jwt` | `jwt` | Bearer JWTs verified against a JWKS or OIDC discovery |
//! | `Cached` | `cache` | wraps any authenticator with a verified-credential cache |

// Each helper edits only its own block below.

// -- htpasswd --
#[cfg(feature = "htpasswd")]
mod htpasswd;
#[cfg(feature = "htpasswd")]
pub use self::htpasswd::*;

// -- mlflow-users --
#[cfg(feature = "mlflow-users")]
mod mlflow_users;
#[cfg(feature = "mlflow-users")]
pub use self::mlflow_users::*;

// -- static-tokens --
#[cfg(feature = "static-tokens")]
mod static_tokens;
#[cfg(feature = "static-tokens")]
pub use self::static_tokens::*;

// -- jwt --
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
pub use self::jwt::*;

// -- cache --
#[cfg(feature = "cache")]
mod cached;
#[cfg(feature = "cache")]
pub use self::cached::*;
