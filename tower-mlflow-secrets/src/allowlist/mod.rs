//! [`HostAllowlist`]: the origins (scheme, host, port) a secret may be sent to.
//!
//! Patterns are `[scheme://]host[:port]`:
//!
//! - **host**: an exact name (`mlflow.example.com`), a wildcard of one or more leading labels
//!   (`*.example.com` matches `a.example.com` and `a.b.example.com`, never the apex
//!   `example.com` and never `example.com.evil.net`), an IPv4 address or a bracketed IPv6
//!   address (`[::1]`). Names are compared in lower case with one trailing dot removed;
//!   non-ASCII names must be written in their `xn--` form.
//! - **scheme**: `https` by default. A pattern without a scheme also allows `http` when the
//!   host is loopback (`localhost`, `127.0.0.0/8`, `[::1]`). An explicit `http://` pattern
//!   for any other host is refused unless [`HostAllowlistBuilder::allow_plain_http`] is set.
//! - **port**: the scheme's default port (443 or 80) unless given; `:*` allows any port.
//!
//! `MLFLOW_SECRETS_ALLOWED_HOSTS`, read by [`Config`](crate::config::Config), follows the
//! mlflow-secrets-auth plugin on ports and stays strict on the rest:
//!
//! | | builder ([`HostAllowlistBuilder::host`]) | `MLFLOW_SECRETS_ALLOWED_HOSTS` | plugin |
//! |---|---|---|---|
//! | `host` (no port) | the scheme's default port | any port | any port |
//! | `host:5000` | port 5000 | port 5000 | never matches |
//! | `host:*` | any port | any port | never matches |
//! | no scheme | https, or http on loopback | https, or http on loopback | any scheme |
//! | `http://host`, not loopback | refused unless [`allow_plain_http`](HostAllowlistBuilder::allow_plain_http) | refused | no schemes in patterns |
//! | `*.example.com` | one or more labels, not the apex | the same | fnmatch (`*` crosses dots) |
//! | `mlflow.*.com`, `?`, `[seq]` | refused | refused | fnmatch |
//! | case, trailing dot | ignored | ignored | case ignored, dot refused |
//! | no patterns (unset or empty) | allows nothing | the origin of `MLFLOW_TRACKING_URI` (its port only) | all hosts |
//!
//! ```
//! use http::Uri;
//! use tower_mlflow_secrets::HostAllowlist;
//!
//! let allowlist = HostAllowlist::builder()
//!     .host("*.example.com")
//!     .host("localhost:5000")
//!     .build()
//!     .unwrap();
//!
//! let allowed = |uri: &str| allowlist.allows(&uri.parse::<Uri>().unwrap());
//! assert!(allowed("https://mlflow.example.com/api/2.0/mlflow/experiments/create"));
//! assert!(allowed("https://A.B.Example.COM./x"));
//! assert!(allowed("http://localhost:5000/"));
//! assert!(!allowed("https://example.com/")); // the apex
//! assert!(!allowed("https://example.com.evil.net/")); // a suffix trick
//! assert!(!allowed("http://mlflow.example.com/")); // plain http
//! assert!(!allowed("https://mlflow.example.com:8443/")); // another port
//! ```

mod error;
mod origin;
mod pattern;
#[cfg(test)]
mod tests;

use std::fmt;

use http::Uri;

use self::pattern::{Rule, parse_rule};
pub use self::{
    error::{HostAllowlistBuildError, HostAllowlistBuildErrorKind},
    origin::Origin,
};

/// The origins a secret may be sent to. Empty means "nowhere".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HostAllowlist {
    rules: Vec<Rule>,
}

/// Builds a [`HostAllowlist`]; errors are reported by [`build`](Self::build).
#[derive(Clone, Debug, Default)]
pub struct HostAllowlistBuilder {
    patterns: Vec<String>,
    allow_plain_http: bool,
    any_port_unless_given: bool,
}

impl HostAllowlist {
    /// A builder with no hosts.
    pub fn builder() -> HostAllowlistBuilder {
        HostAllowlistBuilder::default()
    }

    /// Whether a secret may be sent to `uri` (absolute URIs only).
    pub fn allows(&self, uri: &Uri) -> bool {
        Origin::of(uri).is_some_and(|origin| self.allows_origin(&origin))
    }

    /// Whether a secret may be sent to `origin`.
    pub fn allows_origin(&self, origin: &Origin) -> bool {
        self.rules.iter().any(|rule| rule.matches(origin))
    }

    /// Whether the list is empty (allows nothing).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl fmt::Debug for HostAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| &r.pattern))
            .finish()
    }
}

impl HostAllowlistBuilder {
    /// Adds one pattern (see the [module docs](self)).
    #[must_use]
    pub fn host(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Adds a comma-separated list of patterns, written as in `MLFLOW_SECRETS_ALLOWED_HOSTS`;
    /// empty items are skipped. Ports follow the builder's rule, not the plugin's (see the
    /// [module docs](self)).
    #[must_use]
    pub fn hosts_from_list(mut self, list: &str) -> Self {
        self.patterns.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        self
    }

    /// Allows explicit `http://` patterns for hosts that are not loopback. Off by default:
    /// a secret sent over plain http can be read by anyone on the path.
    #[must_use]
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Makes patterns without a port match any port, as mlflow-secrets-auth does for
    /// `MLFLOW_SECRETS_ALLOWED_HOSTS` (used by [`Config`](crate::config::Config) only).
    pub(crate) fn any_port_unless_given(mut self) -> Self {
        self.any_port_unless_given = true;
        self
    }

    /// Parses every pattern.
    ///
    /// # Errors
    ///
    /// A [`HostAllowlistBuildError`] naming the first pattern that cannot be parsed.
    pub fn build(self) -> Result<HostAllowlist, HostAllowlistBuildError> {
        let rules = self
            .patterns
            .iter()
            .map(|p| parse_rule(p, self.allow_plain_http, self.any_port_unless_given))
            .collect::<Result<_, _>>()?;
        Ok(HostAllowlist { rules })
    }
}
