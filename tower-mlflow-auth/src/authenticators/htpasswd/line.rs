//! One line of an htpasswd file: its syntax, the formats it may name, and why it is refused.

use std::{fmt, sync::Arc};

use super::hash::StoredHash;

/// The hash formats an htpasswd file may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HtpasswdHashFormat {
    /// bcrypt, `$2y$` (Apache `htpasswd -B`), `$2a$` or `$2b$`.
    Bcrypt,
    /// Apache's MD5 variant `$apr1$` (`htpasswd -m`, the default of `htpasswd`).
    Apr1,
    /// MD5-crypt `$1$` (`openssl passwd -1`), the same algorithm as APR1 with another prefix.
    Md5Crypt,
    /// SHA-256-crypt `$5$` (`htpasswd -2`, `openssl passwd -5`), with optional `rounds=`.
    Sha256Crypt,
    /// SHA-512-crypt `$6$` (`htpasswd -5`, `openssl passwd -6`), with optional `rounds=`.
    Sha512Crypt,
    /// `{SHA}` followed by base64 of the unsalted SHA-1 digest (`htpasswd -s`).
    Sha1,
}

impl fmt::Display for HtpasswdHashFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Bcrypt => "bcrypt",
            Self::Apr1 => "APR1-MD5 ($apr1$)",
            Self::Md5Crypt => "MD5-crypt ($1$)",
            Self::Sha256Crypt => "SHA-256-crypt ($5$)",
            Self::Sha512Crypt => "SHA-512-crypt ($6$)",
            Self::Sha1 => "{SHA}",
        })
    }
}

/// Why one line of an htpasswd file was refused.
///
/// Neither `Display` nor `Debug` ever shows the line's hash or password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HtpasswdLineError {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line has no `:` between user and hash.
    MissingColon,
    /// The user name before the `:` is empty.
    EmptyUsername,
    /// The password is stored as plain text (or in a form this crate does not recognise).
    PlainText,
    /// A 13-character DES-crypt hash (`htpasswd -d`), which keeps only 8 password characters.
    DesCrypt,
    /// A hash format that is recognised but not supported, such as `$2x$`, `{SSHA}`,
    /// `$argon2…` or yescrypt `$y$`.
    UnsupportedFormat,
    /// A hash of a supported format that is malformed (wrong length, bad characters,
    /// SHA-crypt rounds outside 1000..=999999999, bcrypt cost outside 4..=31).
    Malformed(HtpasswdHashFormat),
}

impl fmt::Display for HtpasswdLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("not valid UTF-8"),
            Self::MissingColon => f.write_str("no `:` between user name and hash"),
            Self::EmptyUsername => f.write_str("empty user name"),
            Self::PlainText => f.write_str(
                "plain-text password or unrecognised hash; use bcrypt (`htpasswd -B`) instead",
            ),
            Self::DesCrypt => f.write_str(
                "DES-crypt hash (it ignores all but 8 password characters); use bcrypt (`htpasswd -B`) instead",
            ),
            Self::UnsupportedFormat => f.write_str(
                "unsupported hash format (supported: bcrypt $2y$/$2a$/$2b$, $apr1$, $1$, $5$, $6$, {SHA})",
            ),
            Self::Malformed(format) => write!(f, "malformed {format} hash"),
        }
    }
}

impl std::error::Error for HtpasswdLineError {}

/// One user of an htpasswd file: the user name and the parsed hash.
///
/// `Debug` shows the user name and the hash format, never the hash.
#[derive(Clone)]
pub(crate) struct HtpasswdEntry {
    pub(super) username: Box<str>,
    pub(super) hash: Arc<StoredHash>,
}

#[cfg_attr(
    not(feature = "fuzzing"),
    allow(dead_code, reason = "the fuzz targets and tests call these")
)]
impl HtpasswdEntry {
    /// The user name.
    #[must_use]
    pub(crate) fn username(&self) -> &str {
        &self.username
    }

    /// The format of the stored hash.
    #[must_use]
    pub(crate) fn format(&self) -> HtpasswdHashFormat {
        self.hash.format()
    }

    /// Checks `password` against the stored hash, in constant time with respect to the hash.
    ///
    /// This runs the hash function on the calling thread: bcrypt and SHA-crypt take
    /// milliseconds or more. [`Htpasswd`](super::Htpasswd) moves that work off the async
    /// runtime.
    #[must_use]
    pub(crate) fn verify_blocking(&self, password: &[u8]) -> bool {
        self.hash.verify(password)
    }
}

impl fmt::Debug for HtpasswdEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HtpasswdEntry")
            .field("username", &self.username)
            .field("format", &self.hash.format())
            .finish()
    }
}

/// Parses one line of an htpasswd file, the way Apache's `mod_authn_file` reads it.
///
/// - Leading and trailing whitespace (including a `\r` from CRLF files) is ignored.
/// - Blank lines and lines starting with `#` give `Ok(None)`.
/// - Otherwise the line is `user:hash`, split at the first `:`; like Apache and nginx, a
///   further `:` ends the hash and the rest of the line is a comment.
///
/// The hash must be one of the [`HtpasswdHashFormat`]s and well formed; its parameters are
/// checked here so that a bad entry fails when the file is loaded, not at the first login.
///
/// # Errors
///
/// A [`HtpasswdLineError`] saying what is wrong, without repeating the hash.
pub(crate) fn parse_htpasswd_line(line: &str) -> Result<Option<HtpasswdEntry>, HtpasswdLineError> {
    let line = line.trim_matches(|c: char| c.is_ascii_whitespace());
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (username, rest) = line
        .split_once(':')
        .ok_or(HtpasswdLineError::MissingColon)?;
    if username.is_empty() {
        return Err(HtpasswdLineError::EmptyUsername);
    }
    let hash = rest.split_once(':').map_or(rest, |(hash, _comment)| hash);
    Ok(Some(HtpasswdEntry {
        username: username.into(),
        hash: Arc::new(StoredHash::parse(hash)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &[u8] = b"mlflow-pass";

    fn entry(line: &str) -> HtpasswdEntry {
        parse_htpasswd_line(line).unwrap().unwrap()
    }

    #[test]
    fn the_doc_example_holds() {
        let entry = entry("alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/");
        assert_eq!(entry.username(), "alice");
        assert_eq!(entry.format(), HtpasswdHashFormat::Apr1);
        assert!(entry.verify_blocking(b"mlflow-pass"));

        assert!(parse_htpasswd_line("# a comment").unwrap().is_none());
        assert_eq!(
            parse_htpasswd_line("bob:hunter2").unwrap_err(),
            HtpasswdLineError::PlainText
        );
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        for line in ["", "   ", "\r", "# alice:$apr1$x$y", "  # indented comment"] {
            assert!(parse_htpasswd_line(line).unwrap().is_none(), "{line:?}");
        }
    }

    #[test]
    fn crlf_and_surrounding_whitespace_are_ignored() {
        let entry = entry("  alice:{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=\r");
        assert_eq!(entry.username(), "alice");
        assert!(entry.verify_blocking(PASSWORD));
    }

    #[test]
    fn text_after_a_second_colon_is_a_comment() {
        let entry = entry("alice:{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=:Alice Liddell");
        assert!(entry.verify_blocking(PASSWORD));
    }

    #[test]
    fn plain_text_is_refused() {
        for line in ["bob:hunter2", "bob:", "bob:{PLAIN}hunter2", "bob: $apr1$"] {
            assert_eq!(
                parse_htpasswd_line(line).unwrap_err(),
                HtpasswdLineError::PlainText,
                "{line}"
            );
        }
    }

    #[test]
    fn des_crypt_is_refused() {
        // `htpasswd -nbd alice mlflow-pass`
        assert_eq!(
            parse_htpasswd_line("alice:UkEFylJv.NouA").unwrap_err(),
            HtpasswdLineError::DesCrypt
        );
    }

    #[test]
    fn unknown_formats_are_refused() {
        for hash in [
            "$2x$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi",
            "{SSHA}abcdefgh",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            "$y$j9T$salt$hash",
            "$",
        ] {
            assert_eq!(
                parse_htpasswd_line(&format!("u:{hash}")).unwrap_err(),
                HtpasswdLineError::UnsupportedFormat,
                "{hash}"
            );
        }
    }

    #[test]
    fn missing_colon_and_empty_user_are_refused() {
        assert_eq!(
            parse_htpasswd_line("alice").unwrap_err(),
            HtpasswdLineError::MissingColon
        );
        assert_eq!(
            parse_htpasswd_line(":{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=").unwrap_err(),
            HtpasswdLineError::EmptyUsername
        );
    }

    #[test]
    fn malformed_hashes_name_their_format() {
        use HtpasswdHashFormat as F;
        let cases = [
            (
                "$2y$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.b",
                F::Bcrypt,
            ),
            (
                "$2y$03$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi",
                F::Bcrypt,
            ),
            (
                "$2y$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.b!",
                F::Bcrypt,
            ),
            ("$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn", F::Apr1),
            ("$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhnz", F::Apr1),
            ("$apr1$abcdefghi$aDPo2xmbXHAQSzMtOEWhn/", F::Apr1),
            ("$apr1$abcdefgh", F::Apr1),
            ("$1$abcdefgh$TW0g6lKcKhN/MGo8nVK1o.$", F::Md5Crypt),
            (
                "$5$abcdefgh$KzrGjP85ZKXMYI7OPpLdRWkjzBvZ3RhEh28or1NXB7",
                F::Sha256Crypt,
            ),
            (
                "$5$rounds=999$abcdefgh$KzrGjP85ZKXMYI7OPpLdRWkjzBvZ3RhEh28or1NXB73",
                F::Sha256Crypt,
            ),
            (
                "$5$rounds=05000$abcdefgh$KzrGjP85ZKXMYI7OPpLdRWkjzBvZ3RhEh28or1NXB73",
                F::Sha256Crypt,
            ),
            (
                "$5$rounds=x$abcdefgh$KzrGjP85ZKXMYI7OPpLdRWkjzBvZ3RhEh28or1NXB73",
                F::Sha256Crypt,
            ),
            (
                "$5$$KzrGjP85ZKXMYI7OPpLdRWkjzBvZ3RhEh28or1NXB73",
                F::Sha256Crypt,
            ),
            (
                "$5$a*b$KzrGjP85ZKXMYI7OPpLdRWkjzBvZ3RhEh28or1NXB73",
                F::Sha256Crypt,
            ),
            (
                "$5$abcdefghijklmnopq$KzrGjP85ZKXMYI7OPpLdRWkjzBvZ3RhEh28or1NXB73",
                F::Sha256Crypt,
            ),
            ("$6$abcdefgh$NQmG3NNsBB04aFTDHKX5w2ttt", F::Sha512Crypt),
            ("{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94", F::Sha1),
            ("{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg95=", F::Sha1),
            ("{SHA}!m5wFmcHTQtCu7kCWsKiMBNgg94=", F::Sha1),
        ];
        for (hash, format) in cases {
            assert_eq!(
                parse_htpasswd_line(&format!("u:{hash}")).unwrap_err(),
                HtpasswdLineError::Malformed(format),
                "{hash}"
            );
        }
    }

    #[test]
    fn errors_and_debug_never_show_the_hash() {
        let hash = "$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn";
        let error = parse_htpasswd_line(&format!("alice:{hash}")).unwrap_err();
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains("aDPo2xmb"), "{text}");
        }
        let entry = entry("alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/");
        let debug = format!("{entry:?}");
        assert!(
            debug.contains("alice") && !debug.contains("aDPo2xmb") && !debug.contains("abcdefgh")
        );
    }
}
