//! What is checked on a token once its key is known, and how its claims become a principal.

use std::{fmt, sync::Arc};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde_json::Value;

use super::{
    IdTokenError, Jwt,
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
    /// The configured audiences (empty with `any_audience`): an ID token's `azp` must be one.
    pub(super) audiences: Vec<String>,
    /// Whether `iss` is checked (not with `any_issuer`): ID tokens need it.
    pub(super) issuer_checked: bool,
    /// The clock-skew allowance: for `exp` and `nbf`, and an ID token's `iat`.
    pub(super) leeway: std::time::Duration,
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

/// A token whose signature and registered claims passed, before its claims are mapped.
#[derive(Debug)]
pub(super) struct Decoded<'a> {
    pub(super) claims: Value,
    pub(super) key: &'a VerifyingKey,
    pub(super) alg: Algorithm,
}

/// What one key set makes of a token.
#[derive(Debug)]
pub(super) enum Verdict<T> {
    /// Accepted, or rejected with the reason.
    Done(Result<T, IdTokenError>),
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

    /// Checks `token` (whose header names `alg` and `kid`) against the keys of `keys`, then
    /// `accept`s its claims.
    pub(super) fn judge<T>(
        &self,
        keys: &KeySet,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        accept: &impl Fn(Decoded<'_>) -> Result<T, IdTokenError>,
    ) -> Verdict<T> {
        match keys.lookup(kid, alg) {
            Lookup::Candidates(candidates) => {
                Verdict::Done(self.check(token, alg, &candidates).and_then(accept))
            }
            Lookup::Incompatible => Verdict::Done(Err(IdTokenError::Algorithm)),
            Lookup::Unknown => Verdict::UnknownKey,
        }
    }

    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }

    /// Verifies the token with the first candidate key whose signature matches, and its
    /// `exp`, `nbf`, `iss` and `aud`.
    fn check<'k>(
        &self,
        token: &str,
        alg: Algorithm,
        candidates: &[&'k VerifyingKey],
    ) -> Result<Decoded<'k>, IdTokenError> {
        let validation = self.validation(alg).ok_or(IdTokenError::Algorithm)?;
        for key in candidates {
            #[cfg(test)]
            self.signature_checks
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match jsonwebtoken::decode::<Value>(token, key.decoding_key(), validation) {
                Ok(data) => {
                    return Ok(Decoded {
                        claims: data.claims,
                        key,
                        alg,
                    });
                }
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => continue,
                Err(e) => return Err(IdTokenError::from_validation(e.kind())),
            }
        }
        Err(IdTokenError::Signature)
    }

    /// A bearer token's principal and what the token cache keeps of it.
    pub(super) fn bearer(&self, decoded: &Decoded<'_>) -> Result<Verified, IdTokenError> {
        Ok(Verified {
            principal: self
                .claims
                .principal(&decoded.claims)
                .ok_or(IdTokenError::Subject)?,
            key: Arc::clone(decoded.key.id()),
            alg: decoded.alg,
            lifetime: Lifetime::of(&decoded.claims),
        })
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

    pub(super) fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
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
