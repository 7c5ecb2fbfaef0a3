//! Built-in authenticators, each behind its own feature.
//!
//! | type | feature | credentials |
//! |---|---|---|
//! | `Htpasswd` | `htpasswd` | Basic, checked against an Apache htpasswd file |
//! | `MlflowUsers` | `mlflow-users` | Basic, checked against MLflow's user store (werkzeug hashes); its PostgreSQL database with `mlflow-users-postgres` |
//! | `StaticTokens` | `static-tokens` | Bearer tokens or API keys in a named header |
//! | `Jwt` | `jwt` | Bearer JWTs verified against a JWKS or OIDC discovery |
//! | `Cached` | `cache` | wraps any authenticator with a verified-credential cache |

// The revocation types are re-exported by `crate::authenticator`, beside the trait.
pub(crate) mod revocation;

// Maps by digests and PRF outputs, hashed by their first word.
#[cfg(any(feature = "cache", feature = "jwt", feature = "static-tokens"))]
pub(crate) mod uniform_key;

// The keyed-PRF cache keys of `Cached` (SipHash) and of `Jwt`'s token cache (GCM-SIV).
#[cfg(any(feature = "cache", feature = "jwt"))]
pub(crate) mod cache_key;

#[cfg(feature = "htpasswd")]
pub(crate) mod htpasswd;
#[cfg(feature = "htpasswd")]
#[cfg_attr(docsrs, doc(cfg(feature = "htpasswd")))]
pub use self::htpasswd::{
    Htpasswd, HtpasswdBuildError, HtpasswdBuilder, HtpasswdError, HtpasswdHashFormat,
    HtpasswdLineError,
};

#[cfg(feature = "mlflow-users")]
pub(crate) mod mlflow_users;
#[cfg(feature = "mlflow-users-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users-postgres")))]
pub use self::mlflow_users::InvalidPostgresUrl;
#[cfg(feature = "mlflow-users")]
#[cfg_attr(docsrs, doc(cfg(feature = "mlflow-users")))]
pub use self::mlflow_users::{
    InvalidUserRecord, MlflowUsers, MlflowUsersBuildError, MlflowUsersBuilder, MlflowUsersError,
    SqliteUserStore, UserRecord, UserStore, UserStoreError, WerkzeugHashError, WerkzeugLimits,
};

#[cfg(feature = "static-tokens")]
mod static_tokens;
#[cfg(feature = "static-tokens")]
#[cfg_attr(docsrs, doc(cfg(feature = "static-tokens")))]
pub use self::static_tokens::{StaticTokens, StaticTokensBuildError, StaticTokensBuilder};

#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
pub use self::jwt::{
    ClaimPath, IdTokenClaims, IdTokenError, Jwt, JwtAlgorithm, JwtBuildError, JwtBuilder, JwtError,
    JwtErrorKind,
};

#[cfg(feature = "cache")]
mod cached;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use self::cached::{Cached, CachedBuildError, CachedBuilder, CachedError};
