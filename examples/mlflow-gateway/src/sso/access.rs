//! Who may sign in: the user, email and groups read from a verified ID token, checked against
//! the allow-lists (`--allowed-email-domain`, `--allowed-email`, `--allowed-group`), and the
//! principal a session stands for.

use std::fmt;

use http::HeaderValue;
use serde::{Deserialize, Serialize};
use tower_mlflow_auth::{
    Authorization,
    authenticators::{ClaimPath, IdTokenClaims},
    credentials::Scheme,
};

use crate::{config::SsoConfig, metrics::AUTHENTICATOR_ATTRIBUTE};

/// The claim that names the user by default, and the one whose value must be verified.
const EMAIL_CLAIM: &str = "email";

/// Who signed in: what a session cookie carries (with the session's times) and what the
/// principal is made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    /// `sub`: the issuer's stable identifier, checked again on refresh.
    pub subject: String,
    /// The user claim: the principal's subject, sent upstream as `X-Forwarded-User`.
    pub user: String,
    /// The verified email, when there is one.
    pub email: Option<String>,
    /// The groups claim.
    pub groups: Vec<String>,
    /// Whether the groups include `--admin-group`.
    pub admin: bool,
}

impl Identity {
    /// The principal of a request carrying this session: subject = the user, scheme
    /// [`Scheme::Session`], admin as computed at sign-in, and the attributes `email`, `groups`
    /// (comma-joined) and the authenticator name `session` for the log and the metrics.
    ///
    /// A group that contains a comma or cannot be a header value is left out of the `groups`
    /// attribute (it would corrupt the joined list or the `X-Forwarded-Groups` header); it
    /// still counted for the allow-list and the admin group.
    pub(crate) fn principal(&self) -> Authorization {
        let mut principal = Authorization::new(self.user.as_str(), Scheme::Session)
            .with_admin(self.admin)
            .with_attribute(AUTHENTICATOR_ATTRIBUTE, "session");
        if let Some(email) = &self.email {
            principal = principal.with_attribute("email", email.as_str());
        }
        let groups: Vec<&str> = self
            .groups
            .iter()
            .map(String::as_str)
            .filter(|g| !g.is_empty() && !g.contains(',') && HeaderValue::from_str(g).is_ok())
            .collect();
        if !groups.is_empty() {
            principal = principal.with_attribute("groups", groups.join(","));
        }
        principal
    }
}

/// The sign-in rules of the configuration: which claims name the user and the groups, the
/// allow-lists and the admin group.
#[derive(Clone, Debug)]
pub(crate) struct AccessRules {
    user_claim: ClaimPath,
    /// The user claim is `email`, which must then be verified.
    user_is_email: bool,
    groups_claim: ClaimPath,
    /// Lower-cased, without `@`.
    email_domains: Vec<String>,
    /// Lower-cased.
    emails: Vec<String>,
    groups: Vec<String>,
    admin_group: Option<String>,
}

impl AccessRules {
    /// The longest user name accepted, in bytes (it becomes a header value upstream).
    pub(crate) const MAX_USER_LEN: usize = 256;

    /// The rules of `config` (its allow-lists are lower-cased again here, so a hand-made
    /// config compares the same way).
    pub(crate) fn new(config: &SsoConfig) -> Self {
        let lower = |items: &[String]| -> Vec<String> {
            items
                .iter()
                .map(|item| item.trim_start_matches('@').to_ascii_lowercase())
                .collect()
        };
        Self {
            user_claim: ClaimPath::new(config.user_claim.as_str()),
            user_is_email: config.user_claim == EMAIL_CLAIM,
            groups_claim: ClaimPath::new(config.groups_claim.as_str()),
            email_domains: lower(&config.allowed_email_domains),
            emails: config
                .allowed_emails
                .iter()
                .map(|e| e.to_ascii_lowercase())
                .collect(),
            groups: config.allowed_groups.clone(),
            admin_group: config.admin_group.clone(),
        }
    }

    /// The identity of a verified ID token, if the rules admit it.
    ///
    /// The email counts only when `email_verified` is true and it has exactly one `@`. The
    /// user claim must be a string, a valid header value of at most
    /// [`MAX_USER_LEN`](Self::MAX_USER_LEN) bytes; when it is `email`, the email must count.
    /// Then any allow-list match admits (none configured admits everyone).
    ///
    /// # Errors
    ///
    /// [`Denied::EmailUnverified`] when the user claim is an email that does not count,
    /// [`Denied::NoUser`] when the user claim is missing or unusable, [`Denied::NotAllowed`]
    /// when no allow-list matches.
    pub(crate) fn admit(&self, claims: &IdTokenClaims) -> Result<Identity, Denied> {
        let email = claims
            .email()
            .filter(|email| claims.email_verified() && email.matches('@').count() == 1);
        let user = if self.user_is_email {
            match (email, claims.email()) {
                (Some(email), _) => email,
                (None, Some(_)) if !claims.email_verified() => {
                    return Err(Denied::EmailUnverified);
                }
                // Verified but without exactly one `@`: treated as absent.
                (None, _) => return Err(Denied::NoUser),
            }
        } else {
            claims
                .string_claim(&self.user_claim)
                .ok_or(Denied::NoUser)?
        };
        if !usable_user(user) {
            return Err(Denied::NoUser);
        }
        let groups: Vec<String> = claims
            .string_list_claim(&self.groups_claim)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let admin = self
            .admin_group
            .as_ref()
            .is_some_and(|admin| groups.contains(admin));
        let identity = Identity {
            subject: claims.subject().to_owned(),
            user: user.to_owned(),
            email: email.map(str::to_owned),
            groups,
            admin,
        };
        self.readmit(&identity)?;
        Ok(identity)
    }

    /// Applies the allow-lists again to an identity admitted before (on refresh, when the
    /// issuer sent no new ID token, or after a restart with other rules).
    ///
    /// # Errors
    ///
    /// [`Denied::NoUser`] for an unusable user, [`Denied::NotAllowed`] when no allow-list
    /// matches.
    pub(crate) fn readmit(&self, identity: &Identity) -> Result<(), Denied> {
        if !usable_user(&identity.user) {
            return Err(Denied::NoUser);
        }
        if self.email_domains.is_empty() && self.emails.is_empty() && self.groups.is_empty() {
            return Ok(());
        }
        let email = identity
            .email
            .as_deref()
            .filter(|email| email.matches('@').count() == 1)
            .map(str::to_ascii_lowercase);
        let email_allowed = email.as_deref().is_some_and(|email| {
            let domain = email.rsplit('@').next().unwrap_or_default();
            self.emails.iter().any(|allowed| allowed == email)
                || self.email_domains.iter().any(|allowed| allowed == domain)
        });
        let group_allowed = identity
            .groups
            .iter()
            .any(|group| self.groups.contains(group));
        if email_allowed || group_allowed {
            Ok(())
        } else {
            Err(Denied::NotAllowed {
                user: identity.user.clone(),
            })
        }
    }
}

/// Non-empty, at most [`AccessRules::MAX_USER_LEN`] bytes, and a valid header value.
fn usable_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= AccessRules::MAX_USER_LEN
        && HeaderValue::from_str(user).is_ok()
}

/// Why a verified user may not sign in; the text is shown on the 403 page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The user claim is missing, not a string, too long or not a valid header value.
    NoUser,
    /// The user claim is `email`, and the issuer has not verified it.
    EmailUnverified,
    /// No allow-list admits this user.
    NotAllowed {
        /// The user claim.
        user: String,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoUser => f.pad("the identity provider did not say who you are in a usable form"),
            Self::EmailUnverified => {
                f.pad("the identity provider has not verified your email address")
            }
            Self::NotAllowed { user } => write!(f, "{user} is not allowed to use this MLflow"),
        }
    }
}

impl std::error::Error for Denied {}

#[cfg(test)]
mod tests;
