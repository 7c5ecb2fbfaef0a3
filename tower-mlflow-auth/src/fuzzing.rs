//! Entry points for the fuzz targets in `fuzz/` (hidden feature `fuzzing`).
//!
//! The parsers the targets exercise are internal. These thin wrappers give the targets
//! exactly what they call, so that the internals stay out of the public API. Nothing here is
//! a stable API; it may change in any release.

use std::fmt;

use crate::authenticators::{
    WerkzeugHashError, WerkzeugLimits,
    htpasswd::{HtpasswdEntry, HtpasswdHashFormat, HtpasswdLineError, parse_htpasswd_line},
    mlflow_users::WerkzeugHash as Inner,
};

/// One line of an htpasswd file, parsed as [`Htpasswd`](crate::authenticators::Htpasswd)
/// parses each line.
pub struct HtpasswdLine(HtpasswdEntry);

impl HtpasswdLine {
    /// Parses one line: `Ok(None)` for a blank line or a comment.
    ///
    /// # Errors
    ///
    /// The [`HtpasswdLineError`] that would make loading the file fail.
    pub fn parse(line: &str) -> Result<Option<Self>, HtpasswdLineError> {
        parse_htpasswd_line(line).map(|entry| entry.map(Self))
    }

    /// The username.
    #[must_use]
    pub fn username(&self) -> &str {
        self.0.username()
    }

    /// The hash format.
    #[must_use]
    pub fn format(&self) -> HtpasswdHashFormat {
        self.0.format()
    }

    /// Whether checking a password costs microseconds whatever the line says: APR1,
    /// MD5-crypt and `{SHA}`. bcrypt and SHA-crypt take their cost from the line, so a fuzzer
    /// could make one check last minutes.
    #[must_use]
    pub fn is_cheap_to_verify(&self) -> bool {
        matches!(
            self.0.format(),
            HtpasswdHashFormat::Apr1 | HtpasswdHashFormat::Md5Crypt | HtpasswdHashFormat::Sha1
        )
    }

    /// Checks `password` against the hash, on the calling thread.
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        self.0.verify_blocking(password)
    }
}

impl fmt::Debug for HtpasswdLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A werkzeug password hash (a row of MLflow's `users` table), parsed as
/// [`MlflowUsers`](crate::authenticators::MlflowUsers) parses it.
#[derive(PartialEq, Eq)]
pub struct WerkzeugHash(Inner);

impl WerkzeugHash {
    /// Parses `text` within the default cost limits.
    ///
    /// # Errors
    ///
    /// The [`WerkzeugHashError`] that would make `MlflowUsers` refuse the row.
    pub fn parse(text: &str) -> Result<Self, WerkzeugHashError> {
        Inner::parse(text).map(Self)
    }

    /// Parses `text` within limits so tight that [`verify`](Self::verify) takes microseconds,
    /// so a target can verify every input it parses.
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse), and for any cost over those limits.
    pub fn parse_cheap(text: &str) -> Result<Self, WerkzeugHashError> {
        let cheap = WerkzeugLimits::default()
            .max_scrypt_memory(1 << 16)
            .max_scrypt_work(1 << 10)
            .max_pbkdf2_iterations(64);
        Inner::parse_with_limits(text, &cheap).map(Self)
    }

    /// Checks `password` against the hash, on the calling thread.
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        self.0.verify(password)
    }
}

/// The method and parameters, as werkzeug writes them before the first `$`.
impl fmt::Display for WerkzeugHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for WerkzeugHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The decoder of `Authorization: Basic` values: canonical standard base64 into `out`, the
/// number of bytes written, or `None` where the value is refused (or `out` is too short).
#[must_use]
pub fn decode_basic_base64(input: &[u8], out: &mut [u8]) -> Option<usize> {
    crate::credentials::decode_standard_base64(input, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_line_entry_points() {
        // `{SHA}` of "password".
        let line = HtpasswdLine::parse("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")
            .unwrap()
            .unwrap();
        assert_eq!(line.username(), "alice");
        assert_eq!(line.format(), HtpasswdHashFormat::Sha1);
        assert!(line.is_cheap_to_verify());
        assert!(line.verify(b"password"));
        assert!(!line.verify(b"Password"));
        assert!(!format!("{line:?}").contains("W6ph5"));

        assert!(HtpasswdLine::parse("# a comment").unwrap().is_none());
        assert!(HtpasswdLine::parse("bob:plaintext").is_err());
        let bcrypt = "carol:$2y$05$eG5JwL1bG3UPd0p8LgGkzu1OG4HeKuk1gNq0LTn.T9Jr3BfXwJ1iy";
        assert!(
            !HtpasswdLine::parse(bcrypt)
                .unwrap()
                .unwrap()
                .is_cheap_to_verify()
        );
    }

    #[test]
    fn werkzeug_entry_points() {
        // Python: hashlib.pbkdf2_hmac("sha256", b"password1234", b"salt", 10).hex()
        let digest = "a40aa3910d73c0bc64e2a39d3b7eae99a8f9de6825f8cf60b99da84957fbee21";
        let salt_and_digest = format!("$salt${digest}");
        let cheap = format!("pbkdf2:sha256:10{salt_and_digest}");
        let hash = WerkzeugHash::parse_cheap(&cheap).unwrap();
        assert_eq!(WerkzeugHash::parse(&cheap).unwrap(), hash);
        assert_eq!(hash.to_string(), "pbkdf2:sha256:10");
        assert!(hash.verify(b"password1234"));
        assert!(!hash.verify(b"password1235"));
        assert!(!format!("{hash:?}").contains(digest));

        let costly = format!("pbkdf2:sha256:1000{salt_and_digest}");
        assert!(WerkzeugHash::parse(&costly).is_ok());
        assert!(WerkzeugHash::parse_cheap(&costly).is_err());
    }
}
