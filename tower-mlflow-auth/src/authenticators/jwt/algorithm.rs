//! Our own name for a JWS algorithm, so that the public API does not expose jsonwebtoken's.

use std::fmt;

use jsonwebtoken::Algorithm;

/// A JWS signature algorithm (RFC 7518 §3), for [`JwtBuilder::algorithms`](super::JwtBuilder::algorithms).
///
/// The HMAC algorithms are listed so that a configuration naming them gets a clear
/// [`JwtBuildError::SymmetricAlgorithm`](super::JwtBuildError::SymmetricAlgorithm): keys
/// from a JWKS are public and can never be HMAC secrets. `none` is not an algorithm here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256; refused by [`Jwt`](super::Jwt).
    HS256,
    /// HMAC with SHA-384; refused by [`Jwt`](super::Jwt).
    HS384,
    /// HMAC with SHA-512; refused by [`Jwt`](super::Jwt).
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl JwtAlgorithm {
    /// The name used in a token's `alg` header, such as `"RS256"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Whether this is an HMAC algorithm, which needs a shared secret.
    pub(super) const fn is_symmetric(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    pub(super) const fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            Self::HS256 => Algorithm::HS256,
            Self::HS384 => Algorithm::HS384,
            Self::HS512 => Algorithm::HS512,
            Self::RS256 => Algorithm::RS256,
            Self::RS384 => Algorithm::RS384,
            Self::RS512 => Algorithm::RS512,
            Self::PS256 => Algorithm::PS256,
            Self::PS384 => Algorithm::PS384,
            Self::PS512 => Algorithm::PS512,
            Self::ES256 => Algorithm::ES256,
            Self::ES384 => Algorithm::ES384,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::JwtAlgorithm;

    const ALL: [JwtAlgorithm; 12] = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    #[test]
    fn each_algorithm_maps_to_the_jsonwebtoken_one_of_the_same_name() {
        for alg in ALL {
            let theirs: jsonwebtoken::Algorithm = alg.as_str().parse().unwrap();
            assert_eq!(alg.to_jsonwebtoken(), theirs, "{alg}");
            assert_eq!(format!("{alg:?}"), alg.to_string());
        }
    }

    #[test]
    fn only_hmac_is_symmetric() {
        let symmetric: Vec<_> = ALL.into_iter().filter(|a| a.is_symmetric()).collect();
        assert_eq!(
            symmetric,
            [
                JwtAlgorithm::HS256,
                JwtAlgorithm::HS384,
                JwtAlgorithm::HS512
            ]
        );
    }
}
