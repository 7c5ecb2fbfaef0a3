//! A stored htpasswd hash: the formats, their validation and their verification.
//!
//! Everything here is synchronous and pure; [`super::Htpasswd`] decides where the slow
//! verifications run.

use std::str::FromStr;

use base64::Engine as _;
use sha_crypt::{PasswordVerifier as _, ShaCrypt};
use sha1::{Digest as _, Sha1};
use subtle::ConstantTimeEq as _;

use super::{
    line::{HtpasswdHashFormat, HtpasswdLineError},
    md5_crypt::{encode_md5_crypt, md5_crypt},
};

/// The alphabet of crypt(3)'s base64 ("`./0-9A-Za-z`"), used by MD5-crypt, SHA-crypt and DES.
pub(super) const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Rounds of SHA-crypt when a hash names none, and the range glibc produces.
const SHA_CRYPT_DEFAULT_ROUNDS: u32 = 5_000;
const SHA_CRYPT_ROUNDS: std::ops::RangeInclusive<u32> = 1_000..=999_999_999;

/// A parsed, validated hash.
///
/// `==` compares two stored hashes (to tell which users a reload changed), never a
/// password: it need not run in constant time.
#[derive(PartialEq, Eq)]
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
    pub(super) fn parse(hash: &str) -> Result<Self, HtpasswdLineError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticators::htpasswd::line::{HtpasswdEntry, parse_htpasswd_line};

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
