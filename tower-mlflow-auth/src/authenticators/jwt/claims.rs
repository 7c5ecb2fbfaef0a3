//! What is checked on a token once its key is known, and how its claims become a principal.

use std::{fmt, sync::Arc};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde_json::Value;

use super::{
    Jwt,
    cache::Lifetime,
    keys::{KeyId, KeySet, Lookup, VerifyingKey},
};
use crate::{Authorization, Scheme};

/// Everything checked on a token and how its claims become a principal.
#[derive(Debug)]
pub(super) struct Checks {
    /// One `Validation` per allowed algorithm: jsonwebtoken requires every algorithm of a
    /// `Validation` to belong to the key's family.
    pub(super) validations: Vec<(Algorithm, Validation)>,
    pub(super) claims: ClaimMapping,
    /// Signature checks run, for the tests of the token cache.
    #[cfg(test)]
    pub(super) signature_checks: std::sync::atomic::AtomicUsize,
}

/// How the claims of a verified token become a principal.
#[derive(Debug)]
pub(super) struct ClaimMapping {
    pub(super) subject: ClaimPath,
    pub(super) admin_claims: Vec<(ClaimPath, Box<str>)>,
    pub(super) admin_scopes: Vec<Box<str>>,
    pub(super) copied: Vec<(ClaimPath, Box<str>)>,
}

/// An accepted token: its principal, and what the token cache needs to keep it.
#[derive(Debug)]
pub(super) struct Verified {
    pub(super) principal: Authorization,
    /// The key whose signature matched, and for which algorithm.
    pub(super) key: Arc<KeyId>,
    pub(super) alg: Algorithm,
    /// `None` when `exp` or `nbf` is not a whole number of seconds: not cached then.
    pub(super) lifetime: Option<Lifetime>,
}

/// What one key set makes of a token.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Accepted (`Some`) or rejected (`None`).
    Done(Option<Verified>),
    /// The set has no key for the token; a newer set might.
    UnknownKey,
}

impl Checks {
    /// The allowed algorithms.
    pub(super) fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.validations.iter().map(|(alg, _)| *alg)
    }

    pub(super) fn allows(&self, alg: Algorithm) -> bool {
        self.validation(alg).is_some()
    }

    /// Checks `token` (whose header names `alg` and `kid`) against the keys of `keys`.
    pub(super) fn judge(
        &self,
        keys: &KeySet,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Verdict {
        match keys.lookup(kid, alg) {
            Lookup::Candidates(candidates) => Verdict::Done(self.check(token, alg, &candidates)),
            Lookup::Incompatible => {
                tracing::debug!(?kid, ?alg, "JWT algorithm does not fit its key");
                Verdict::Done(None)
            }
            Lookup::Unknown => Verdict::UnknownKey,
        }
    }

    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }

    /// Verifies the token with the first candidate key whose signature matches, then maps
    /// its claims to a principal.
    fn check(&self, token: &str, alg: Algorithm, candidates: &[&VerifyingKey]) -> Option<Verified> {
        let validation = self.validation(alg)?;
        for key in candidates {
            #[cfg(test)]
            self.signature_checks
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match jsonwebtoken::decode::<Value>(token, key.decoding_key(), validation) {
                Ok(data) => {
                    return Some(Verified {
                        principal: self.claims.principal(&data.claims)?,
                        key: Arc::clone(key.id()),
                        alg,
                        lifetime: Lifetime::of(&data.claims),
                    });
                }
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => continue,
                Err(e) => {
                    tracing::debug!(reason = %e, "JWT rejected");
                    return None;
                }
            }
        }
        tracing::debug!("JWT signature does not verify");
        None
    }
}

impl ClaimMapping {
    fn principal(&self, claims: &Value) -> Option<Authorization> {
        let Some(subject) = self
            .subject
            .lookup(claims)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= Jwt::MAX_SUBJECT_LEN)
        else {
            tracing::debug!(claim = %self.subject, "JWT has no usable subject claim");
            return None;
        };
        let admin_by_claim = self.admin_claims.iter().any(|(path, wanted)| {
            path.lookup(claims).is_some_and(|v| match v {
                Value::String(s) => s == wanted.as_ref(),
                Value::Array(items) => items.iter().any(|i| i.as_str() == Some(wanted)),
                _ => false,
            })
        });
        let admin_by_scope = !self.admin_scopes.is_empty() && {
            let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
            let scp = claims.get("scp");
            self.admin_scopes.iter().any(|wanted| {
                scope.split(' ').any(|s| s == wanted.as_ref())
                    || match scp {
                        Some(Value::String(s)) => s.split(' ').any(|s| s == wanted.as_ref()),
                        Some(Value::Array(items)) => {
                            items.iter().any(|i| i.as_str() == Some(wanted))
                        }
                        _ => false,
                    }
            })
        };
        let mut principal = Authorization::new(subject, Scheme::Bearer)
            .with_admin(admin_by_claim || admin_by_scope);
        for (path, attribute) in &self.copied {
            let value = match path.lookup(claims) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => continue,
            };
            principal = principal.with_attribute(attribute.clone(), value);
        }
        Some(principal)
    }
}

/// Where a claim sits in a token's payload: a top-level name, or a path into nested
/// objects such as Keycloak's `realm_access.roles`.
///
/// A `&str` is always one top-level name (claim names may contain dots, as in
/// `https://example.com/roles`); use [`ClaimPath::nested`] for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath(Box<[Box<str>]>);

impl ClaimPath {
    /// A top-level claim.
    #[must_use]
    pub fn new(name: impl Into<Box<str>>) -> Self {
        Self(Box::new([name.into()]))
    }

    /// A claim inside nested objects: `ClaimPath::nested(["realm_access", "roles"])`.
    #[must_use]
    pub fn nested<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        Self(segments.into_iter().map(Into::into).collect())
    }

    fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        if self.0.is_empty() {
            return None;
        }
        self.0
            .iter()
            .try_fold(claims, |value, segment| value.get(segment.as_ref()))
    }
}

impl From<&str> for ClaimPath {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for ClaimPath {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(segment)?;
        }
        Ok(())
    }
}
