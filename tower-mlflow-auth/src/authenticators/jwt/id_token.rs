//! [`Jwt::verify_id_token`]: an OpenID Connect ID token, checked like a bearer JWT and for
//! the `nonce` of the login that asked for it; [`Jwt::verify_refreshed_id_token`]: one from a
//! refresh, checked for the session's `sub` instead.

use std::{
    error::Error,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::errors::ErrorKind;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::{ClaimPath, Jwt, JwtError, claims::Decoded};

impl Jwt {
    /// Verifies an ID token from the issuer's token endpoint (OpenID Connect Core §3.1.3.7)
    /// and returns its claims.
    ///
    /// Build this `Jwt` for the issuer with the client id as
    /// [`audience`](super::JwtBuilder::audience). Checked: the signature with the issuer's
    /// keys (refetched on an unknown `kid`), the algorithm allow-list, `iss`, `aud` naming the
    /// client, `azp` (when present, or when `aud` names several parties) equal to a configured
    /// audience, `exp` and `nbf` with the leeway, `iat` present and not in the future, a
    /// non-empty `sub`, and `nonce` equal to `expected_nonce` (compared in constant time; an
    /// empty `expected_nonce` matches nothing).
    ///
    /// ID tokens are never put in, or answered from, the verified-token cache: each call
    /// checks the signature.
    ///
    /// ```no_run
    /// # use tower_mlflow_auth::authenticators::{ClaimPath, Jwt};
    /// # async fn callback(id_token: &str, nonce: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let oidc = Jwt::builder()
    ///     .issuer("https://idp.example.com/realms/ml")
    ///     .audience("mlflow-gateway") // the OAuth client id
    ///     .build()?;
    /// let claims = oidc.verify_id_token(id_token, nonce).await?;
    /// let user = claims.email().filter(|_| claims.email_verified()).unwrap_or(claims.subject());
    /// let groups = claims.string_list_claim(&ClaimPath::new("groups"));
    /// # let _ = (user, groups);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`IdTokenError`] naming the first check that failed; [`IdTokenError::Keys`] when no
    /// keys could be fetched, [`IdTokenError::Unconfigured`] when this `Jwt` was built with
    /// `any_issuer` or `any_audience`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        expected_nonce: &str,
    ) -> Result<IdTokenClaims, IdTokenError> {
        self.verify_id_token_for(
            token,
            Expected::Login {
                nonce: expected_nonce,
            },
        )
        .await
    }

    /// Verifies an ID token from a refresh-token grant (OpenID Connect Core §12.2) and
    /// returns its claims.
    ///
    /// The checks of [`verify_id_token`](Self::verify_id_token), except for two: `sub` must
    /// equal `subject` (the session's user at the issuer), and `nonce` may be absent (issuers
    /// usually leave it out of refreshed tokens) but, when present, must equal
    /// `original_nonce`, the nonce of the login that started the session (compared in
    /// constant time; an empty `original_nonce` matches nothing).
    ///
    /// ```no_run
    /// # use tower_mlflow_auth::authenticators::Jwt;
    /// # async fn refreshed(oidc: &Jwt, id_token: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// // `sub` and the nonce as the session recorded them at sign-in.
    /// let claims = oidc.verify_refreshed_id_token(id_token, "248289761001", "n-0S6_WzA2Mj").await?;
    /// assert_eq!(claims.subject(), "248289761001");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`verify_id_token`](Self::verify_id_token), and [`IdTokenError::SubjectChanged`]
    /// when `sub` is not `subject`.
    pub async fn verify_refreshed_id_token(
        &self,
        token: &str,
        subject: &str,
        original_nonce: &str,
    ) -> Result<IdTokenClaims, IdTokenError> {
        self.verify_id_token_for(
            token,
            Expected::Refresh {
                subject,
                nonce: original_nonce,
            },
        )
        .await
    }

    async fn verify_id_token_for(
        &self,
        token: &str,
        expected: Expected<'_>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        if !self.checks.issuer_checked || self.checks.audiences.is_empty() {
            return Err(IdTokenError::Unconfigured);
        }
        let accept = |decoded: Decoded<'_>| self.id_token_claims(decoded.claims, expected);
        self.verify_with(token, &accept)
            .await
            .map_err(IdTokenError::Keys)?
    }

    fn id_token_claims(
        &self,
        claims: Value,
        expected: Expected<'_>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        match claims.get("nonce") {
            // §12.2: a refreshed token need not carry the nonce again.
            None if matches!(expected, Expected::Refresh { .. }) => {}
            nonce => {
                let nonce = nonce
                    .and_then(Value::as_str)
                    .ok_or(IdTokenError::MissingClaim("nonce".into()))?;
                let expected_nonce = expected.nonce();
                let same = nonce.as_bytes().ct_eq(expected_nonce.as_bytes());
                if expected_nonce.is_empty() || !bool::from(same) {
                    return Err(IdTokenError::Nonce);
                }
            }
        }
        let several_audiences = claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        match claims.get("azp") {
            Some(Value::String(azp)) if self.checks.audiences.contains(azp) => {}
            None if !several_audiences => {}
            _ => return Err(IdTokenError::AuthorizedParty),
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or(IdTokenError::MissingClaim("iat".into()))?;
        if iat > now.saturating_add(self.checks.leeway.as_secs()) {
            return Err(IdTokenError::IssuedAt);
        }
        let subject_ok = claims
            .get("sub")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty() && s.len() <= Self::MAX_SUBJECT_LEN);
        if !subject_ok {
            return Err(IdTokenError::Subject);
        }
        if let Expected::Refresh { subject, .. } = expected
            && claims.get("sub").and_then(Value::as_str) != Some(subject)
        {
            return Err(IdTokenError::SubjectChanged);
        }
        Ok(IdTokenClaims { claims })
    }
}

/// What an ID token's `nonce` and `sub` must be, besides the checks every ID token gets.
#[derive(Clone, Copy)]
enum Expected<'a> {
    /// From a login's code: `nonce` present and this login's.
    Login { nonce: &'a str },
    /// From a refresh (OpenID Connect Core §12.2): `sub` the session's; `nonce`, when
    /// present, the original login's.
    Refresh { subject: &'a str, nonce: &'a str },
}

impl<'a> Expected<'a> {
    fn nonce(self) -> &'a str {
        match self {
            Self::Login { nonce } | Self::Refresh { nonce, .. } => nonce,
        }
    }
}

/// The claims of an ID token accepted by [`Jwt::verify_id_token`] or
/// [`Jwt::verify_refreshed_id_token`].
#[derive(Clone, Debug)]
pub struct IdTokenClaims {
    claims: Value,
}

impl IdTokenClaims {
    /// `sub`: the user's stable identifier at the issuer (never empty).
    #[must_use]
    pub fn subject(&self) -> &str {
        self.claims.get("sub").and_then(Value::as_str).unwrap_or("")
    }

    /// `email`, when it is a string.
    #[must_use]
    pub fn email(&self) -> Option<&str> {
        self.claims.get("email").and_then(Value::as_str)
    }

    /// Whether `email_verified` is `true` (or the string `"true"`, as some issuers send it).
    /// A missing claim is `false`: an unverified address must not pass an allow-list.
    #[must_use]
    pub fn email_verified(&self) -> bool {
        match self.claims.get("email_verified") {
            Some(Value::Bool(verified)) => *verified,
            Some(Value::String(verified)) => verified == "true",
            _ => false,
        }
    }

    /// `name`, when it is a string.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.claims.get("name").and_then(Value::as_str)
    }

    /// `exp`: when the token expires.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        let exp = self.claims.get("exp").and_then(Value::as_u64)?;
        UNIX_EPOCH.checked_add(Duration::from_secs(exp))
    }

    /// A string claim (the user claim, such as `email` or `preferred_username`).
    #[must_use]
    pub fn string_claim(&self, claim: &ClaimPath) -> Option<&str> {
        claim.lookup(&self.claims).and_then(Value::as_str)
    }

    /// A claim holding a list of strings, such as `groups`: an array (items that are not
    /// strings are skipped) or one string. Empty when the claim is missing.
    #[must_use]
    pub fn string_list_claim(&self, claim: &ClaimPath) -> Vec<&str> {
        match claim.lookup(&self.claims) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(one)) => vec![one.as_str()],
            _ => Vec::new(),
        }
    }
}

/// Why [`Jwt::verify_id_token`] or [`Jwt::verify_refreshed_id_token`] refused an ID token. Its text never contains the token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenError {
    /// Not a JWT.
    Malformed,
    /// The algorithm is not allowed, does not fit the key, or the header has `crit`.
    Algorithm,
    /// No key of the issuer has the token's `kid`, even after a refetch.
    UnknownKey,
    /// The signature does not verify with the issuer's keys.
    Signature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not the issuer.
    Issuer,
    /// `aud` does not name the client.
    Audience,
    /// `azp` is not the client, or is missing while `aud` names several parties.
    AuthorizedParty,
    /// `iat` is in the future (beyond the leeway).
    IssuedAt,
    /// A required claim is missing or has the wrong type.
    MissingClaim(Box<str>),
    /// `nonce` is not the one this login sent.
    Nonce,
    /// `sub` is missing, empty or longer than [`Jwt::MAX_SUBJECT_LEN`].
    Subject,
    /// A refreshed token's `sub` is not the session's
    /// ([`Jwt::verify_refreshed_id_token`]).
    SubjectChanged,
    /// The `Jwt` accepts any issuer or any audience; an ID token needs both checked.
    Unconfigured,
    /// The issuer's keys could not be fetched.
    Keys(JwtError),
}

impl IdTokenError {
    /// A failed check of jsonwebtoken's validation.
    pub(super) fn from_validation(kind: &ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidSignature => Self::Signature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::MissingRequiredClaim(claim) => Self::MissingClaim(claim.as_str().into()),
            _ => Self::Malformed,
        }
    }
}

impl fmt::Display for IdTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.pad("the token is not a well-formed JWT"),
            Self::Algorithm => f.pad("the token's algorithm is not allowed for its key"),
            Self::UnknownKey => f.pad("no key of the issuer has the token's `kid`"),
            Self::Signature => f.pad("the token's signature does not verify"),
            Self::Expired => f.pad("the token has expired"),
            Self::NotYetValid => f.pad("the token is not valid yet (`nbf`)"),
            Self::Issuer => f.pad("the token's `iss` is not the issuer"),
            Self::Audience => f.pad("the token's `aud` does not name the client"),
            Self::AuthorizedParty => f.pad("the token's `azp` is not the client"),
            Self::IssuedAt => f.pad("the token's `iat` is in the future"),
            Self::MissingClaim(claim) => write!(f, "the token has no usable `{claim}` claim"),
            Self::Nonce => f.pad("the token's `nonce` is not this login's"),
            Self::Subject => f.pad("the token has no usable `sub`"),
            Self::SubjectChanged => f.pad("the refreshed token's `sub` is not the session's"),
            Self::Unconfigured => {
                f.pad("ID tokens need a `Jwt` with an issuer and the client id as audience")
            }
            Self::Keys(e) => write!(f, "cannot check the token: {e}"),
        }
    }
}

impl Error for IdTokenError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Keys(e) => Some(e),
            _ => None,
        }
    }
}
