//! One htpasswd line: its parser, the stored hash formats and their verification.
//!
//! Everything here is synchronous and pure; [`super::Htpasswd`] decides where the slow
//! verifications run.

use std::{fmt, str::FromStr, sync::Arc};

use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha_crypt::{PasswordVerifier as _, ShaCrypt};
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// The alphabet of crypt(3)'s base64 ("`./0-9A-Za-z`"), used by MD5-crypt, SHA-crypt and DES.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Rounds of SHA-crypt when a hash names none, and the range glibc produces.
const SHA_CRYPT_DEFAULT_ROUNDS: u32 = 5_000;
const SHA_CRYPT_ROUNDS: std::ops::RangeInclusive<u32> = 1_000..=999_999_999;

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
pub struct HtpasswdEntry {
    pub(super) username: Box<str>,
    pub(super) hash: Arc<StoredHash>,
}

impl HtpasswdEntry {
    /// The user name.
    #[must_use]
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The format of the stored hash.
    #[must_use]
    pub fn format(&self) -> HtpasswdHashFormat {
        self.hash.format()
    }

    /// Checks `password` against the stored hash, in constant time with respect to the hash.
    ///
    /// This runs the hash function on the calling thread: bcrypt and SHA-crypt take
    /// milliseconds or more. [`Htpasswd`](super::Htpasswd) moves that work off the async
    /// runtime; call this directly only from blocking code.
    #[must_use]
    pub fn verify_blocking(&self, password: &[u8]) -> bool {
        self.hash.verify(password)
    }
}

impl fmt::Debug for HtpasswdEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HtpasswdEntry")
            .field("username", &self.username)
            .field("format", &self.format())
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
/// ```
/// use tower_mlflow_auth::authenticators::{HtpasswdHashFormat, HtpasswdLineError, parse_htpasswd_line};
///
/// let entry = parse_htpasswd_line("alice:$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/").unwrap().unwrap();
/// assert_eq!(entry.username(), "alice");
/// assert_eq!(entry.format(), HtpasswdHashFormat::Apr1);
/// assert!(entry.verify_blocking(b"mlflow-pass"));
///
/// assert!(parse_htpasswd_line("# a comment").unwrap().is_none());
/// assert_eq!(parse_htpasswd_line("bob:hunter2").unwrap_err(), HtpasswdLineError::PlainText);
/// ```
///
/// # Errors
///
/// A [`HtpasswdLineError`] saying what is wrong, without repeating the hash.
pub fn parse_htpasswd_line(line: &str) -> Result<Option<HtpasswdEntry>, HtpasswdLineError> {
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

/// A parsed, validated hash.
pub(super) enum StoredHash {
    /// Kept as text: the `bcrypt` crate parses it again on each check (cheap next to bcrypt).
    Bcrypt {
        hash: Box<str>,
        cost: u32,
    },
    Md5Crypt {
        variant: Md5Variant,
        salt: Box<[u8]>,
        digest: [u8; 22],
    },
    /// Normalised to name its rounds explicitly, so the verifier can never read
    /// `rounds=…` as a salt.
    ShaCrypt {
        variant: ShaVariant,
        rounds: u32,
        normalized: Box<str>,
    },
    Sha1 {
        digest: [u8; 20],
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Md5Variant {
    Apr1,
    Md5,
}

impl Md5Variant {
    fn magic(self) -> &'static [u8] {
        match self {
            Self::Apr1 => b"$apr1$",
            Self::Md5 => b"$1$",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum ShaVariant {
    Sha256,
    Sha512,
}

/// The work one verification costs, used to pick the decoy hash for unknown users so that
/// they take as long as real ones. Ordered roughly by cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum WorkClass {
    Sha1,
    Md5Crypt,
    ShaCrypt(ShaVariant, u32),
    Bcrypt(u32),
}

impl StoredHash {
    fn parse(hash: &str) -> Result<Self, HtpasswdLineError> {
        use HtpasswdHashFormat as F;
        use HtpasswdLineError as E;

        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
            parse_bcrypt(hash).ok_or(E::Malformed(F::Bcrypt))
        } else if let Some(rest) = hash.strip_prefix("$apr1$") {
            parse_md5_crypt(Md5Variant::Apr1, rest).ok_or(E::Malformed(F::Apr1))
        } else if let Some(rest) = hash.strip_prefix("$1$") {
            parse_md5_crypt(Md5Variant::Md5, rest).ok_or(E::Malformed(F::Md5Crypt))
        } else if let Some(rest) = hash.strip_prefix("$5$") {
            parse_sha_crypt(ShaVariant::Sha256, rest).ok_or(E::Malformed(F::Sha256Crypt))
        } else if let Some(rest) = hash.strip_prefix("$6$") {
            parse_sha_crypt(ShaVariant::Sha512, rest).ok_or(E::Malformed(F::Sha512Crypt))
        } else if let Some(rest) = hash.strip_prefix("{SHA}") {
            parse_sha1(rest).ok_or(E::Malformed(F::Sha1))
        } else if hash.starts_with("{PLAIN}") {
            Err(E::PlainText)
        } else if hash.starts_with('$') || hash.starts_with('{') {
            Err(E::UnsupportedFormat)
        } else if hash.len() == 13 && hash.bytes().all(|b| CRYPT_ALPHABET.contains(&b)) {
            Err(E::DesCrypt)
        } else {
            Err(E::PlainText)
        }
    }

    pub(super) fn format(&self) -> HtpasswdHashFormat {
        match self {
            Self::Bcrypt { .. } => HtpasswdHashFormat::Bcrypt,
            Self::Md5Crypt {
                variant: Md5Variant::Apr1,
                ..
            } => HtpasswdHashFormat::Apr1,
            Self::Md5Crypt {
                variant: Md5Variant::Md5,
                ..
            } => HtpasswdHashFormat::Md5Crypt,
            Self::ShaCrypt {
                variant: ShaVariant::Sha256,
                ..
            } => HtpasswdHashFormat::Sha256Crypt,
            Self::ShaCrypt {
                variant: ShaVariant::Sha512,
                ..
            } => HtpasswdHashFormat::Sha512Crypt,
            Self::Sha1 { .. } => HtpasswdHashFormat::Sha1,
        }
    }

    /// Whether a check is slow enough to belong on a blocking thread (all but `{SHA}`).
    pub(super) fn is_slow(&self) -> bool {
        !matches!(self, Self::Sha1 { .. })
    }

    pub(super) fn work_class(&self) -> WorkClass {
        match *self {
            Self::Bcrypt { cost, .. } => WorkClass::Bcrypt(cost),
            Self::Md5Crypt { .. } => WorkClass::Md5Crypt,
            Self::ShaCrypt {
                variant, rounds, ..
            } => WorkClass::ShaCrypt(variant, rounds),
            Self::Sha1 { .. } => WorkClass::Sha1,
        }
    }

    /// A hash of the given cost that no password matches in practice (its digest is all
    /// zeros), checked for unknown users.
    pub(super) fn decoy(class: WorkClass) -> Self {
        match class {
            WorkClass::Bcrypt(cost) => Self::Bcrypt {
                hash: format!("$2y${cost:02}${}", ".".repeat(53)).into(),
                cost,
            },
            WorkClass::Md5Crypt => Self::Md5Crypt {
                variant: Md5Variant::Apr1,
                salt: b"decoysal".as_slice().into(),
                digest: [b'.'; 22],
            },
            WorkClass::ShaCrypt(variant, rounds) => {
                let (id, len) = match variant {
                    ShaVariant::Sha256 => (5, 43),
                    ShaVariant::Sha512 => (6, 86),
                };
                Self::ShaCrypt {
                    variant,
                    rounds,
                    normalized: format!(
                        "${id}$rounds={rounds}$decoysaltdecoysa${}",
                        ".".repeat(len)
                    )
                    .into(),
                }
            }
            WorkClass::Sha1 => Self::Sha1 { digest: [0; 20] },
        }
    }

    /// Checks a password; every comparison of digests is constant-time.
    pub(super) fn verify(&self, password: &[u8]) -> bool {
        match self {
            // `verify` (not `non_truncating_verify`): like Apache, bcrypt reads only the first
            // 72 bytes of a password. The crate compares in constant time.
            Self::Bcrypt { hash, .. } => bcrypt::verify(password, hash).unwrap_or(false),
            Self::Md5Crypt {
                variant,
                salt,
                digest,
            } => {
                let computed = encode_md5_crypt(&md5_crypt(password, salt, variant.magic()));
                computed.ct_eq(digest).into()
            }
            // The crate compares in constant time.
            Self::ShaCrypt { normalized, .. } => ShaCrypt::default()
                .verify_password(password, normalized.as_ref())
                .is_ok(),
            Self::Sha1 { digest } => {
                let computed: [u8; 20] = Sha1::digest(password).into();
                computed.ct_eq(digest).into()
            }
        }
    }
}

fn parse_bcrypt(hash: &str) -> Option<StoredHash> {
    // `HashParts` checks the length (60), the layout and the base64 of salt and digest.
    let parts = bcrypt::HashParts::from_str(hash).ok()?;
    let cost = parts.get_cost();
    (4..=31).contains(&cost).then(|| StoredHash::Bcrypt {
        hash: hash.into(),
        cost,
    })
}

/// `salt$digest` after `$apr1$` or `$1$`: a salt of at most 8 characters (longer salts are
/// cut at 8 when hashing, so such a line could never match) and a 22-character digest.
fn parse_md5_crypt(variant: Md5Variant, rest: &str) -> Option<StoredHash> {
    let (salt, digest) = rest.split_once('$')?;
    if salt.len() > 8 {
        return None;
    }
    // The last character carries 2 bits; any other value would never be produced.
    let digest: [u8; 22] = canonical_crypt64(digest.as_bytes(), 4)?.try_into().ok()?;
    Some(StoredHash::Md5Crypt {
        variant,
        salt: salt.as_bytes().into(),
        digest,
    })
}

/// `[rounds=N$]salt$digest` after `$5$` or `$6$`, checked the way glibc writes them.
fn parse_sha_crypt(variant: ShaVariant, rest: &str) -> Option<StoredHash> {
    let mut fields = rest.split('$');
    let mut field = fields.next()?;
    let mut rounds = SHA_CRYPT_DEFAULT_ROUNDS;
    if let Some(digits) = field.strip_prefix("rounds=") {
        // glibc writes the rounds it used, clamped and without leading zeros; anything
        // else could never match what it computes.
        rounds = digits.parse().ok()?;
        if !SHA_CRYPT_ROUNDS.contains(&rounds) || digits != rounds.to_string() {
            return None;
        }
        field = fields.next()?;
    }
    let salt = field;
    // At most 16 characters (glibc cuts longer ones), from the set the verifier accepts.
    let salt_char = |b: u8| b.is_ascii_alphanumeric() || b"./+=,-".contains(&b);
    if salt.is_empty() || salt.len() > 16 || !salt.bytes().all(salt_char) {
        return None;
    }
    // SHA-256-crypt ends in a character carrying 4 bits, SHA-512-crypt in one carrying 2.
    let (id, digest_len, last_limit) = match variant {
        ShaVariant::Sha256 => (5, 43, 16),
        ShaVariant::Sha512 => (6, 86, 4),
    };
    let digest = fields.next()?;
    if fields.next().is_some() || digest.len() != digest_len {
        return None;
    }
    canonical_crypt64(digest.as_bytes(), last_limit)?;
    Some(StoredHash::ShaCrypt {
        variant,
        rounds,
        normalized: format!("${id}$rounds={rounds}${salt}${digest}").into(),
    })
}

fn parse_sha1(rest: &str) -> Option<StoredHash> {
    let mut digest = [0u8; 20];
    // Standard alphabet, canonical padding: exactly 28 characters for 20 bytes.
    if rest.len() != 28 {
        return None;
    }
    let written = base64::engine::general_purpose::STANDARD
        .decode_slice(rest, &mut digest)
        .ok()?;
    (written == 20).then_some(StoredHash::Sha1 { digest })
}

/// `text` if it is made of crypt(3) base64 characters and its last character is below
/// `last_limit` (that is, carries no bits beyond the digest's end).
fn canonical_crypt64(text: &[u8], last_limit: usize) -> Option<&[u8]> {
    let position = |b: &u8| CRYPT_ALPHABET.iter().position(|a| a == b);
    let last = text.last().and_then(position)?;
    (last < last_limit && text.iter().all(|b| position(b).is_some())).then_some(text)
}

/// MD5-crypt as written by Poul-Henning Kamp and used by Apache for `$apr1$` (APR's
/// `apr_md5_encode`) and by glibc for `$1$`; only the magic prefix differs.
fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> [u8; 16] {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();

    let mut context = Md5::new();
    context.update(password);
    context.update(magic);
    context.update(salt);
    // As many bytes of the alternate digest as the password has, 16 at a time.
    for chunk_start in (0..password.len()).step_by(16) {
        let len = (password.len() - chunk_start).min(16);
        context.update(&alternate[..len]);
    }
    // For each bit of the password length, low bit first: a zero byte for 1, the
    // password's first byte for 0. (The loop runs only for a non-empty password.)
    let mut bits = password.len();
    while bits != 0 {
        if bits & 1 == 1 {
            context.update([0u8]);
        } else {
            context.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest: [u8; 16] = context.finalize().into();

    // 1000 rounds to slow down brute force.
    for round in 0..1000 {
        let mut context = Md5::new();
        if round % 2 == 1 {
            context.update(password);
        } else {
            context.update(digest);
        }
        if round % 3 != 0 {
            context.update(salt);
        }
        if round % 7 != 0 {
            context.update(password);
        }
        if round % 2 == 1 {
            context.update(digest);
        } else {
            context.update(password);
        }
        digest = context.finalize().into();
    }
    digest
}

/// The 22-character crypt(3) base64 of an MD5-crypt digest, in its byte order.
fn encode_md5_crypt(digest: &[u8; 16]) -> [u8; 22] {
    const GROUPS: [[usize; 3]; 5] = [[0, 6, 12], [1, 7, 13], [2, 8, 14], [3, 9, 15], [4, 10, 5]];
    let mut out = [0u8; 22];
    let mut chars = out.iter_mut();
    let mut put = |mut value: u32, count: usize| {
        for slot in chars.by_ref().take(count) {
            *slot = CRYPT_ALPHABET[(value & 0x3f) as usize];
            value >>= 6;
        }
    };
    for [a, b, c] in GROUPS {
        put(
            u32::from(digest[a]) << 16 | u32::from(digest[b]) << 8 | u32::from(digest[c]),
            4,
        );
    }
    put(u32::from(digest[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &[u8] = b"mlflow-pass";

    fn entry(line: &str) -> HtpasswdEntry {
        parse_htpasswd_line(line).unwrap().unwrap()
    }

    /// Fixed vectors: the reference notes' `openssl passwd` output, and Apache `htpasswd`
    /// 2.4 output made once for these tests (password `mlflow-pass`).
    const VECTORS: &[(&str, HtpasswdHashFormat)] = &[
        (
            "$apr1$abcdefgh$aDPo2xmbXHAQSzMtOEWhn/",
            HtpasswdHashFormat::Apr1,
        ),
        (
            "$apr1$I49XB5v7$FqYcAgvX30YYB2VFhYLGK.",
            HtpasswdHashFormat::Apr1,
        ),
        (
            "$1$abcdefgh$TW0g6lKcKhN/MGo8nVK1o.",
            HtpasswdHashFormat::Md5Crypt,
        ),
        (
            "$5$abcdefgh$KzrGjP85ZKXMYI7OPpLdRWkjzBvZ3RhEh28or1NXB73",
            HtpasswdHashFormat::Sha256Crypt,
        ),
        (
            "$5$rounds=7000$q3f.VrexNYMZ0VKr$RdfkKueFBLjanfNkoOfjsSFJtCo/rEPp4vxo912nTGC",
            HtpasswdHashFormat::Sha256Crypt,
        ),
        (
            "$6$abcdefgh$NQmG3NNsBB04aFTDHKX5w2tttRkvNNwZ.yaA7QWd9qi1yLUH/d5lkyGqZPX.UBJVJ6UEo0iaoYI.ghMWW6WVI/",
            HtpasswdHashFormat::Sha512Crypt,
        ),
        (
            "$6$rounds=7000$wGEs.CS/JbZRTeZq$tQB/ITyqbX5EUt5pnqCBdHAMmIIEXrjSSj0sLErTFpBYD2qL.IcOVhno9A6oGScmZZiSS7LHxsrhX7mW8duN81",
            HtpasswdHashFormat::Sha512Crypt,
        ),
        (
            "$2y$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi",
            HtpasswdHashFormat::Bcrypt,
        ),
        // The same bcrypt hash under the other accepted prefixes (identical for ASCII passwords).
        (
            "$2a$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi",
            HtpasswdHashFormat::Bcrypt,
        ),
        (
            "$2b$05$O3cpwl/0eErvy3EaKaKpQelXeavfRGTTY0GryPu5TSpbSNg0yO.bi",
            HtpasswdHashFormat::Bcrypt,
        ),
        (
            "{SHA}Vm5wFmcHTQtCu7kCWsKiMBNgg94=",
            HtpasswdHashFormat::Sha1,
        ),
    ];

    #[test]
    fn fixed_vectors_accept_the_right_password() {
        for (hash, format) in VECTORS {
            let entry = entry(&format!("alice:{hash}"));
            assert_eq!(entry.format(), *format, "{hash}");
            assert!(entry.verify_blocking(PASSWORD), "{hash}");
        }
    }

    #[test]
    fn fixed_vectors_reject_a_wrong_password() {
        for (hash, _) in VECTORS {
            let entry = entry(&format!("alice:{hash}"));
            assert!(!entry.verify_blocking(b"mlflow-pasS"), "{hash}");
            assert!(!entry.verify_blocking(b""), "{hash}");
        }
    }

    #[test]
    fn openwall_bcrypt_vector_is_accepted() {
        // From Openwall's crypt_blowfish test vectors.
        let entry = entry("u:$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW");
        assert!(entry.verify_blocking(b"U*U"));
        assert!(!entry.verify_blocking(b"U*V"));
    }

    #[test]
    fn md5_crypt_handles_passwords_longer_than_one_digest() {
        // `openssl passwd -apr1 -salt abcdefgh` of 40 × "x" (exercises the 16-byte chunks).
        let entry = entry("u:$apr1$abcdefgh$7h4098paklNpzdB9KwCdh/");
        assert!(entry.verify_blocking("x".repeat(40).as_bytes()));
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

    #[test]
    fn decoys_parse_back_and_match_nothing() {
        let classes = [
            WorkClass::Sha1,
            WorkClass::Md5Crypt,
            WorkClass::ShaCrypt(ShaVariant::Sha256, 5000),
            WorkClass::ShaCrypt(ShaVariant::Sha512, 1000),
            WorkClass::Bcrypt(4),
        ];
        for class in classes {
            let decoy = StoredHash::decoy(class);
            assert_eq!(decoy.work_class(), class);
            assert!(!decoy.verify(PASSWORD), "{class:?}");
            // The decoy goes through the same code path as a real hash of its class.
            if let StoredHash::Bcrypt { hash, .. }
            | StoredHash::ShaCrypt {
                normalized: hash, ..
            } = &decoy
            {
                assert!(StoredHash::parse(hash).is_ok(), "{hash}");
            }
        }
    }
}
