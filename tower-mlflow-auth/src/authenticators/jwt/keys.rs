//! The verification keys of a JWKS, filtered down to the ones we are willing to use.

use std::{str::FromStr, sync::Arc};

use base64::Engine;
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse, ThumbprintHash},
};
use serde_json::Value;

/// At most this many entries of a JWKS are looked at; real sets hold a handful.
const MAX_JWKS_ENTRIES: usize = 100;
/// A token without `kid` is tried against at most this many keys, so that a large key set
/// cannot multiply the cost of checking a forged token.
const MAX_KIDLESS_CANDIDATES: usize = 4;
/// RSA keys below this size are ignored (RFC 7518 §3.3 requires 2048 bits).
const MIN_RSA_BITS: usize = 2048;

/// Which published key verified a token: its `kid` and its RFC 7638 thumbprint (a hash of
/// the public key itself), so that a `kid` reused for a new key is a different key.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct KeyId {
    kid: Option<Box<str>>,
    thumbprint: Box<str>,
}

/// One usable public key.
#[derive(Debug)]
pub(super) struct VerifyingKey {
    id: Arc<KeyId>,
    /// The algorithms this key may verify: the JWK's own `alg` when it has one, else the
    /// allowed algorithms of its key type (and curve).
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// The usable keys of one fetched JWKS.
#[derive(Debug)]
pub(super) struct KeySet {
    keys: Vec<VerifyingKey>,
}

/// The keys that may verify a token.
#[derive(Debug)]
pub(super) enum Lookup<'a> {
    /// Try these, in order.
    Candidates(Vec<&'a VerifyingKey>),
    /// The token's `kid` is in the set but its key may not be used with the token's `alg`:
    /// a refetch would not help.
    Incompatible,
    /// No key matches; the set may be out of date.
    Unknown,
}

impl KeySet {
    /// Reads a JWKS document, keeping the signature keys whose type, curve and `alg` fit
    /// `allowed`. Symmetric (`oct`) keys are always dropped: a published HMAC key would let
    /// anyone sign.
    pub(super) fn from_jwks(document: &Value, allowed: &[Algorithm]) -> Option<Self> {
        let entries = document.get("keys")?.as_array()?;
        let keys: Vec<_> = entries
            .iter()
            .take(MAX_JWKS_ENTRIES)
            .filter_map(|entry| usable_key(entry, allowed))
            .collect();
        Some(Self { keys })
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Finds the keys for a token's `kid` and `alg`.
    pub(super) fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let fits = |k: &&VerifyingKey| k.algorithms.contains(&alg);
        match kid {
            Some(kid) => {
                let mut with_kid = self
                    .keys
                    .iter()
                    .filter(|k| k.id.kid.as_deref() == Some(kid))
                    .peekable();
                if with_kid.peek().is_none() {
                    return Lookup::Unknown;
                }
                let candidates: Vec<_> = with_kid.filter(fits).collect();
                if candidates.is_empty() {
                    Lookup::Incompatible
                } else {
                    Lookup::Candidates(candidates)
                }
            }
            None => {
                let candidates: Vec<_> = self
                    .keys
                    .iter()
                    .filter(fits)
                    .take(MAX_KIDLESS_CANDIDATES)
                    .collect();
                if candidates.is_empty() {
                    Lookup::Unknown
                } else {
                    Lookup::Candidates(candidates)
                }
            }
        }
    }

    /// Whether the key `id` is in this set and may still verify `alg`: what a cached token
    /// needs to stay accepted once the set is refetched.
    pub(super) fn still_verifies(&self, id: &Arc<KeyId>, alg: Algorithm) -> bool {
        self.keys
            .iter()
            .any(|k| (Arc::ptr_eq(&k.id, id) || k.id == *id) && k.algorithms.contains(&alg))
    }

    /// Whether `newer` no longer verifies something this set did: a key removed or
    /// replaced, or an algorithm taken away from one.
    pub(super) fn retired_in(&self, newer: &Self) -> bool {
        self.keys.iter().any(|k| {
            k.algorithms
                .iter()
                .any(|&alg| !newer.still_verifies(&k.id, alg))
        })
    }
}

impl VerifyingKey {
    pub(super) fn id(&self) -> &Arc<KeyId> {
        &self.id
    }

    pub(super) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

fn usable_key(entry: &Value, allowed: &[Algorithm]) -> Option<VerifyingKey> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    let common = &jwk.common;
    if matches!(
        common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    // What the key type (and curve) can do at all.
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            if rsa_bits(&rsa.n)? < MIN_RSA_BITS {
                return None;
            }
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ]
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        // `oct` (HMAC secrets), X25519, unknown key types.
        _ => return None,
    };
    let algorithms: Vec<Algorithm> = match common.key_algorithm {
        // A JWK that names its algorithm is used for that one only (RFC 7517 §4.4).
        Some(named) => {
            let named = Algorithm::from_str(&named.to_string()).ok()?;
            vec![named]
        }
        None => by_type.to_vec(),
    }
    .into_iter()
    .filter(|alg| by_type.contains(alg) && allowed.contains(alg))
    .collect();
    if algorithms.is_empty() {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    let id = KeyId {
        kid: common.key_id.as_deref().map(Into::into),
        thumbprint: jwk.thumbprint(ThumbprintHash::SHA256).ok()?.into(),
    };
    Some(VerifyingKey {
        id: Arc::new(id),
        algorithms,
        key,
    })
}

/// The bit length of a base64url big-endian modulus.
fn rsa_bits(n: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .ok()?;
    let first = bytes.iter().position(|&b| b != 0)?;
    let leading = bytes[first].leading_zeros() as usize;
    Some((bytes.len() - first) * 8 - leading)
}
