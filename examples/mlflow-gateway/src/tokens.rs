//! `--tokens-file`: static API tokens for scripts and CI, kept as SHA-256 digests (`user:hex`
//! a line, so that reading the file does not give the tokens away), verified by
//! [`StaticTokens`] and re-read when the file changes.
//!
//! The current table sits in a [`Reloading`] read without a lock per request; a poll a second
//! (and SIGHUP) swaps in a new table, and a broken new file keeps the old one. Tokens stay out
//! of the password cache: a check is one SHA-256, and a removed token is refused as soon as
//! the new table is in.

use std::{
    convert::Infallible,
    fmt,
    io::Read as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use http::request::Parts;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use tower_mlflow_auth::{
    Authenticator, Authorization, Challenge, Credentials, CredentialsError, CredentialsRef, Scheme,
    authenticators::{StaticTokens, StaticTokensBuildError},
};
use tower_mlflow_core::sync::Reloading;

/// How often the file's metadata are checked for a change.
pub(crate) const TOKENS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// A `--tokens-file` that cannot be used. Never shows a token or a digest.
#[derive(Debug)]
#[non_exhaustive]
pub enum TokensFileError {
    /// The file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `user:sha256-hex`, or repeats a token.
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
}

impl fmt::Display for TokensFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, .. } => write!(f, "cannot read --tokens-file {}", path.display()),
            Self::Line {
                path,
                line,
                problem,
            } => write!(f, "{} line {line}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for TokensFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Line { .. } => None,
        }
    }
}

/// Parses a tokens file: `user:sha256-hex` lines, `#` comments and blank lines.
pub(crate) fn parse(path: &Path, text: &str) -> Result<StaticTokens, TokensFileError> {
    let bad_line = |line, problem| TokensFileError::Line {
        path: path.to_owned(),
        line,
        problem,
    };
    let mut builder = StaticTokens::bearer();
    // The line of each token, by position, to name a repeated one.
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let (user, hex) = line
            .rsplit_once(':')
            .ok_or_else(|| bad_line(number, "expected user:sha256-hex"))?;
        if user.is_empty() {
            return Err(bad_line(number, "the user is empty"));
        }
        let digest = decode_sha256_hex(hex)
            .ok_or_else(|| bad_line(number, "the hash is not 64 hex digits (SHA-256)"))?;
        builder = builder.token_sha256(digest, Authorization::new(user, Scheme::Bearer));
        lines.push(number);
    }
    builder.build().map_err(|error| match error {
        StaticTokensBuildError::DuplicateToken { position, .. } => {
            bad_line(lines[position - 1], "the same token as an earlier line")
        }
        // token_sha256 reports nothing else.
        _ => bad_line(0, "unusable token"),
    })
}

fn decode_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(digest)
}

/// The `--tokens-file` line of `token` for `user`: `user:` and the lower-case hex SHA-256.
pub fn token_line(user: &str, token: &SecretString) -> String {
    use fmt::Write as _;
    let digest = Sha256::digest(token.expose_secret().as_bytes());
    let mut line = format!("{user}:");
    for byte in digest {
        let _ = write!(line, "{byte:02x}");
    }
    line
}

/// `mlflow-gateway hash-token USER`: reads a token on stdin (its first line) and returns the
/// line for the tokens file, or why not.
pub fn hash_token(user: &str) -> Result<String, String> {
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid user {user:?}: it must be non-empty, without ':' or spaces"
        ));
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("cannot read the token on stdin: {e}"))?;
    let input = SecretString::from(input);
    let token = input.expose_secret().lines().next().unwrap_or_default();
    // What a bearer header can carry (StaticTokensBuilder::token's rule).
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token on stdin must be one line of visible ASCII, no spaces".into());
    }
    Ok(token_line(user, &SecretString::from(token)))
}

/// The tokens of a `--tokens-file`, swapped as a whole when the file changes.
#[derive(Clone)]
pub(crate) struct TokensFile {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    table: Reloading<StaticTokens, Infallible>,
    /// The modification time and length the table was read at.
    stamp: Mutex<Option<(SystemTime, u64)>>,
    challenges: [Challenge; 1],
}

impl fmt::Debug for TokensFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokensFile")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl TokensFile {
    /// Reads `path`; fails if it cannot be read or parsed.
    pub(crate) fn open(path: &Path) -> Result<Self, TokensFileError> {
        let file = Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                table: Reloading::new(),
                stamp: Mutex::new(None),
                challenges: [Challenge::BEARER],
            }),
        };
        file.reload()?;
        Ok(file)
    }

    /// Re-reads the file now. On an error the old table stays.
    pub(crate) fn reload(&self) -> Result<usize, TokensFileError> {
        let path = &self.inner.path;
        let read = |source| TokensFileError::Read {
            path: path.clone(),
            source,
        };
        let stamp = stamp(path).map_err(read)?;
        let text = std::fs::read_to_string(path).map_err(read)?;
        let tokens = parse(path, &text)?;
        let count = tokens.len();
        self.inner.table.store(tokens);
        *self.lock_stamp() = Some(stamp);
        Ok(count)
    }

    /// Polls the file's metadata every `interval` and reloads on a change, until every other
    /// handle is dropped.
    pub(crate) fn follow(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let file = Self { inner };
                let now = stamp(&file.inner.path).ok();
                if now.is_some() && now != *file.lock_stamp() {
                    file.reload_logged();
                }
            }
        });
    }

    /// Reloads and logs the outcome (the poller and SIGHUP).
    pub(crate) fn reload_logged(&self) {
        match self.reload() {
            Ok(count) => tracing::info!(
                path = %self.inner.path.display(),
                tokens = count,
                "tokens file reloaded"
            ),
            Err(error) => {
                let error: &dyn std::error::Error = &error;
                tracing::error!(error, "tokens file not reloaded, keeping the old tokens");
            }
        }
    }

    fn lock_stamp(&self) -> std::sync::MutexGuard<'_, Option<(SystemTime, u64)>> {
        // A poisoned stamp only costs one extra reload.
        self.inner
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Option<StaticTokens> {
        self.inner
            .table
            .peek()
            .as_ref()
            .map(|snapshot| snapshot.value().clone())
    }
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

impl Authenticator for TokensFile {
    type Error = Infallible;

    fn credentials<'a>(&self, parts: &'a Parts) -> Result<CredentialsRef<'a>, CredentialsError> {
        CredentialsRef::from_authorization_header(&parts.headers)
    }

    async fn authenticate(
        &self,
        credentials: Credentials,
    ) -> Result<Option<Authorization>, Infallible> {
        Ok(self.try_accept_now(&credentials.borrowed()))
    }

    fn try_accept_now(&self, credentials: &CredentialsRef<'_>) -> Option<Authorization> {
        self.current()?.try_accept_now(credentials)
    }

    fn accepts(&self, credentials: &CredentialsRef<'_>) -> bool {
        credentials.scheme() == Scheme::Bearer
    }

    fn challenges(&self) -> &[Challenge] {
        &self.inner.challenges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHA: &str = "tok-alpha";

    fn line(user: &str, token: &str) -> String {
        token_line(user, &SecretString::from(token))
    }

    #[test]
    fn a_line_of_hash_token_is_accepted() {
        let text = format!("# CI\n\n{}\n", line("ci", ALPHA));
        let tokens = parse(Path::new("/t"), &text).unwrap();
        let mut headers = http::HeaderMap::new();
        let value = format!("Bearer {ALPHA}").parse().unwrap();
        headers.insert(http::header::AUTHORIZATION, value);
        let bearer = Credentials::from_authorization_header(&headers).unwrap();
        let who = tokens.try_accept_now(&bearer.borrowed()).unwrap();
        assert_eq!(who.subject(), "ci");
    }

    #[test]
    fn bad_lines_name_their_number_and_never_the_hash() {
        let good = line("ci", ALPHA);
        let cases = [
            (format!("{good}\nno-colon-here"), 2),
            (format!("# c\n:{}", &good[3..]), 2),
            ("ci:abc".to_owned(), 1),
            (format!("{good}\n{}", line("other", ALPHA)), 2),
        ];
        for (text, number) in cases {
            let error = parse(Path::new("/t"), &text).unwrap_err().to_string();
            assert!(error.starts_with(&format!("/t line {number}: ")), "{error}");
            assert!(!error.contains(&good[3..]), "{error}");
        }
    }

    #[test]
    fn the_line_is_user_and_hex_sha256() {
        // sha256("abc"), FIPS 180-2.
        assert_eq!(
            line("u", "abc"),
            "u:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
