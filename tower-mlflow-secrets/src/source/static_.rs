use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::{Fetched, SecretSource, SourceError};

/// A secret fixed at construction. Useful for tests and for secrets injected by the
/// platform at start-up.
pub struct Static {
    secret: SecretString,
}

impl Static {
    /// A source that always returns `secret`.
    pub fn new(secret: impl Into<SecretString>) -> Self {
        Self {
            secret: secret.into(),
        }
    }
}

impl fmt::Debug for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Static")
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl SecretSource for Static {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        Ok(Fetched::new(SecretString::from(
            self.secret.expose_secret().to_owned(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_secret() {
        let fetched = Static::new("abc").fetch().await.unwrap();
        assert_eq!(fetched.secret().expose_secret(), "abc");
    }

    #[test]
    fn debug_hides_the_secret() {
        assert!(!format!("{:?}", Static::new("hunter2")).contains("hunter2"));
    }
}
