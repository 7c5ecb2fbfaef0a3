//! [`StaticUsers`]: a fixed list of Basic-auth users, for the example binary and tests.
//!
//! Passwords are kept only as SHA-256 digests and compared in constant time over those
//! fixed-length digests. An unknown user costs the same comparison as a known one, so the
//! answer time does not tell which usernames exist. (For real deployments use the
//! workspace's `Htpasswd` or `MlflowUsers`, which store salted slow hashes.)
//!
//! ```
//! use tracking_server::users::StaticUsers;
//!
//! let users = StaticUsers::new().with_user_entry("alice:s3cr3t")?;
//! assert_eq!(users.len(), 1);
//! # Ok::<_, tracking_server::users::UserEntryError>(())
//! ```

use std::{collections::HashMap, convert::Infallible, fmt, sync::Arc};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_mlflow_auth::{Authenticator, Authorization, Credentials, Scheme};

type PasswordDigest = [u8; 32];

/// Basic-auth users with fixed passwords. Cloning is cheap (the table is shared).
#[derive(Clone, Default)]
pub struct StaticUsers {
    users: Arc<HashMap<String, PasswordDigest>>,
}

impl fmt::Debug for StaticUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Usernames only: the digests are password-equivalent for a fast hash.
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("StaticUsers")
            .field("users", &names)
            .finish()
    }
}

impl StaticUsers {
    /// No users: every request is refused.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `username` with `password`.
    #[must_use]
    pub fn with_user(mut self, username: impl Into<String>, password: &SecretString) -> Self {
        Arc::make_mut(&mut self.users).insert(username.into(), digest(password));
        self
    }

    /// Adds a user from `NAME:PASSWORD` (the password may contain `:`).
    ///
    /// # Errors
    ///
    /// [`UserEntryError`] when there is no `:`, or the name or password is empty.
    pub fn with_user_entry(self, entry: &str) -> Result<Self, UserEntryError> {
        let (username, password) = entry.split_once(':').ok_or(UserEntryError::NoColon)?;
        if username.is_empty() {
            return Err(UserEntryError::EmptyUsername);
        }
        if password.is_empty() {
            return Err(UserEntryError::EmptyPassword);
        }
        Ok(self.with_user(username, &SecretString::from(password)))
    }

    /// How many users there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn verify(&self, username: &str, password: &SecretString) -> bool {
        let given = digest(password);
        // Compare against a digest no password can produce when the user is unknown, so the
        // work is the same either way.
        let (known, expected) = match self.users.get(username) {
            Some(expected) => (true, *expected),
            None => (false, [0u8; 32]),
        };
        let matches: bool = given.ct_eq(&expected).into();
        known & matches
    }
}

fn digest(password: &SecretString) -> PasswordDigest {
    Sha256::digest(password.expose_secret().as_bytes()).into()
}

impl Authenticator for StaticUsers {
    type Error = Infallible;

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Infallible> {
        Ok(match credentials {
            Credentials::Basic { username, password } if self.verify(&username, &password) => {
                Some(Authorization::new(username, Scheme::Basic))
            }
            _ => None,
        })
    }
}

/// A `NAME:PASSWORD` user entry that cannot be used. Never contains the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserEntryError {
    /// No `:` between name and password.
    NoColon,
    /// Nothing before the `:`.
    EmptyUsername,
    /// Nothing after the `:`.
    EmptyPassword,
}

impl fmt::Display for UserEntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::NoColon => "a user must be given as NAME:PASSWORD (no ':' found)",
            Self::EmptyUsername => "a user must be given as NAME:PASSWORD (empty NAME)",
            Self::EmptyPassword => "a user must be given as NAME:PASSWORD (empty PASSWORD)",
        })
    }
}

impl std::error::Error for UserEntryError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(username: &str, password: &str) -> Credentials {
        Credentials::Basic {
            username: username.to_owned(),
            password: SecretString::from(password),
        }
    }

    fn users() -> StaticUsers {
        StaticUsers::new().with_user_entry("alice:pa:ss").unwrap()
    }

    #[tokio::test]
    async fn right_password_gives_the_username() {
        let who = users().authenticate(basic("alice", "pa:ss")).await.unwrap();
        assert_eq!(
            who.map(|w| w.subject().to_owned()).as_deref(),
            Some("alice")
        );
    }

    #[tokio::test]
    async fn wrong_password_or_unknown_user_is_refused() {
        assert!(
            users()
                .authenticate(basic("alice", "pa"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            users()
                .authenticate(basic("bob", "pa:ss"))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_entries_are_errors() {
        assert_eq!(
            StaticUsers::new().with_user_entry("alice").unwrap_err(),
            UserEntryError::NoColon
        );
        assert_eq!(
            StaticUsers::new().with_user_entry(":pw").unwrap_err(),
            UserEntryError::EmptyUsername
        );
        assert_eq!(
            StaticUsers::new().with_user_entry("alice:").unwrap_err(),
            UserEntryError::EmptyPassword
        );
    }

    #[test]
    fn debug_shows_names_only() {
        let text = format!("{:?}", users());
        assert!(text.contains("alice"));
        assert!(!text.contains("pa:ss"));
    }
}
