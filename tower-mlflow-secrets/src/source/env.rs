use std::{env::VarError, fmt};

use secrecy::SecretString;

use super::{Fetched, SecretSource, SourceError};

/// A secret read from an environment variable on every fetch (so a process that changes its
/// environment sees the new value once the cache refreshes).
///
/// A missing, empty or non-UTF-8 variable is a permanent error; the error names the
/// variable, never its value.
#[derive(Clone, Debug)]
pub struct Env {
    name: String,
}

impl Env {
    /// A source reading the variable `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The variable's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl SecretSource for Env {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        read(&self.name)
    }
}

fn read(name: &str) -> Result<Fetched, SourceError> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Err(SourceError::permanent(format!(
            "environment variable {name} is empty"
        ))),
        Ok(value) => Ok(Fetched::new(SecretString::from(value))),
        Err(VarError::NotPresent) => Err(SourceError::permanent(format!(
            "environment variable {name} is not set"
        ))),
        // The OsString in `NotUnicode` holds the secret: drop it without printing.
        Err(VarError::NotUnicode(_)) => Err(SourceError::permanent(format!(
            "environment variable {name} is not valid UTF-8"
        ))),
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment variable {}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    // Reading variables that the test harness set for us avoids `set_var` (unsafe in 2024).
    #[tokio::test]
    async fn reads_a_set_variable() {
        let (name, value) = std::env::vars()
            .find(|(_, v)| !v.is_empty())
            .unwrap_or_else(|| ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()));
        let fetched = Env::new(&name).fetch().await.unwrap();
        assert_eq!(fetched.secret().expose_secret(), value);
    }

    #[tokio::test]
    async fn missing_variable_is_permanent_and_named() {
        let err = Env::new("TOWER_MLFLOW_SECRETS_SURELY_UNSET_42")
            .fetch()
            .await
            .unwrap_err();
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .contains("TOWER_MLFLOW_SECRETS_SURELY_UNSET_42")
        );
    }
}
