//! Werkzeug password hashes (`werkzeug.security`), as MLflow stores them.
//!
//! Format: `method$salt$hexdigest`, where `method` is one of
//!
//! - `scrypt:N:r:p` (bare `scrypt` means `scrypt:32768:8:1`); 64-byte digest;
//! - `pbkdf2:HASH:ITERATIONS`, `pbkdf2:HASH` or bare `pbkdf2` (werkzeug 3.1: SHA-256 and
//!   1,000,000 iterations when left out); `HASH` is `sha224`, `sha256`, `sha384` or `sha512`;
//!   the digest is as long as the hash's output.
//!
//! The salt is used as its UTF-8 bytes, never decoded; the digest is lowercase hex.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::limits::WerkzeugLimits;

/// werkzeug 3.1's `DEFAULT_PBKDF2_ITERATIONS`, used when a `pbkdf2` method names no count.
pub(super) const DEFAULT_PBKDF2_ITERATIONS: u32 = 1_000_000;

/// Length of a werkzeug scrypt digest (hashlib's default `dklen`).
const SCRYPT_DIGEST_LEN: usize = 64;

/// The most a salt may be, in bytes; werkzeug makes 16-character salts.
const MAX_SALT_LEN: usize = 1024;

/// A parsed werkzeug password hash (`werkzeug.security`, as MLflow stores them), ready to
/// verify passwords against.
///
/// The format is `method$salt$hexdigest`, where `method` is one of
///
/// - `scrypt:N:r:p` (a bare `scrypt` means `scrypt:32768:8:1`), with a 64-byte digest;
/// - `pbkdf2:HASH:ITERATIONS`, `pbkdf2:HASH` or a bare `pbkdf2` (as werkzeug 3.1: SHA-256 and
///   [`DEFAULT_PBKDF2_ITERATIONS`] when left out); `HASH` is `sha224`, `sha256`,
///   `sha384` or `sha512`, and the digest is as long as its output.
///
/// The salt is used as its UTF-8 bytes, never decoded; the digest is lowercase hex (werkzeug
/// compares hex text, so an uppercase digest could never match there and is refused here).
/// Parameters are plain decimal digits. Other werkzeug methods (plain text, old `sha1$…`
/// salted hashes, other hashlib names for PBKDF2) are not supported. Costs are bounded by
/// [`WerkzeugLimits`].
///
/// `Debug` and `Display` show the method and its parameters (`scrypt:32768:8:1`), never the
/// salt or the digest.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WerkzeugHash {
    method: Method,
    salt: Box<str>,
    digest: Box<[u8]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Method {
    Scrypt { log_n: u8, r: u32, p: u32 },
    Pbkdf2 { prf: Prf, iterations: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Prf {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Prf {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "sha224" => Self::Sha224,
            "sha256" => Self::Sha256,
            "sha384" => Self::Sha384,
            "sha512" => Self::Sha512,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha224 => "sha224",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn output_len(self) -> usize {
        match self {
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

impl Method {
    fn digest_len(self) -> usize {
        match self {
            Self::Scrypt { .. } => SCRYPT_DIGEST_LEN,
            Self::Pbkdf2 { prf, .. } => prf.output_len(),
        }
    }
}

impl WerkzeugHash {
    /// Parses a stored werkzeug hash with the default [`WerkzeugLimits`].
    ///
    /// # Errors
    ///
    /// [`WerkzeugHashError`] when the text is not a werkzeug hash this crate supports or asks
    /// for more work than the limits allow. The error never contains the hash.
    #[cfg_attr(
        not(feature = "fuzzing"),
        allow(dead_code, reason = "the fuzz targets and tests call this")
    )]
    pub(crate) fn parse(text: &str) -> Result<Self, WerkzeugHashError> {
        Self::parse_with_limits(text, &WerkzeugLimits::default())
    }

    /// Parses a stored werkzeug hash, refusing parameters above `limits`.
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    pub(crate) fn parse_with_limits(
        text: &str,
        limits: &WerkzeugLimits,
    ) -> Result<Self, WerkzeugHashError> {
        // werkzeug splits on the first two `$`; a `$` in the digest part then never matches.
        let mut parts = text.splitn(3, '$');
        let (Some(method), Some(salt), Some(hex)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(WerkzeugHashError::NotAWerkzeugHash);
        };
        let method = parse_method(method, limits)?;
        if salt.len() > MAX_SALT_LEN {
            return Err(WerkzeugHashError::SaltTooLong);
        }
        let digest = decode_lower_hex(hex)
            .filter(|d| d.len() == method.digest_len())
            .ok_or(WerkzeugHashError::InvalidDigest)?;
        Ok(Self {
            method,
            salt: salt.into(),
            digest: digest.into(),
        })
    }

    /// Whether `password` (as UTF-8 bytes) hashes to this digest; compared in constant time.
    ///
    /// This runs the full key derivation: tens to hundreds of milliseconds with werkzeug's
    /// defaults. Call it from a blocking thread, not from an async task.
    #[must_use]
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        let mut derived = Zeroizing::new(vec![0u8; self.digest.len()]);
        let salt = self.salt.as_bytes();
        match self.method {
            Method::Scrypt { log_n, r, p } => {
                // Parameters were checked at parse time; a failure here only means "no match".
                let Ok(params) = scrypt::Params::new(log_n, r, p) else {
                    return false;
                };
                if scrypt::scrypt(password, salt, &params, &mut derived).is_err() {
                    return false;
                }
            }
            Method::Pbkdf2 { prf, iterations } => {
                let derive = match prf {
                    Prf::Sha224 => pbkdf2::pbkdf2_hmac::<sha2::Sha224>,
                    Prf::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>,
                    Prf::Sha384 => pbkdf2::pbkdf2_hmac::<sha2::Sha384>,
                    Prf::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>,
                };
                derive(password, salt, iterations, &mut derived);
            }
        }
        // Both sides have the length fixed by the method.
        derived.ct_eq(&self.digest).into()
    }

    pub(super) fn method(&self) -> Method {
        self.method
    }

    /// A hash with `method`'s cost that no password matches, verified for unknown users so
    /// that they cost as much as known ones.
    pub(super) fn dummy(method: Method) -> Self {
        Self {
            method,
            salt: "tower-mlflow-dummy".into(),
            digest: vec![0; method.digest_len()].into(),
        }
    }
}

impl fmt::Display for WerkzeugHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.method {
            Method::Scrypt { log_n, r, p } => write!(f, "scrypt:{}:{r}:{p}", 1u64 << log_n),
            Method::Pbkdf2 { prf, iterations } => write!(f, "pbkdf2:{}:{iterations}", prf.name()),
        }
    }
}

impl fmt::Debug for WerkzeugHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WerkzeugHash")
            .field("method", &format_args!("{self}"))
            .field("salt", &"[redacted]")
            .field("digest", &"[redacted]")
            .finish()
    }
}

fn parse_method(method: &str, limits: &WerkzeugLimits) -> Result<Method, WerkzeugHashError> {
    let mut args = method.split(':');
    let name = args.next().unwrap_or_default();
    let args: Vec<&str> = args.collect();
    match name {
        "scrypt" => {
            let (n, r, p) = match args.as_slice() {
                [] => (1u64 << 15, 8, 1),
                [n, r, p] => (parse_decimal(n)?, parse_decimal(r)?, parse_decimal(p)?),
                _ => return Err(WerkzeugHashError::InvalidParameters),
            };
            scrypt_method(n, r, p, limits)
        }
        "pbkdf2" => {
            let (prf, iterations) = match args.as_slice() {
                [] => ("sha256", DEFAULT_PBKDF2_ITERATIONS),
                [prf] => (*prf, DEFAULT_PBKDF2_ITERATIONS),
                [prf, iterations] => {
                    let iterations = parse_decimal(iterations)?;
                    (*prf, u32::try_from(iterations).unwrap_or(u32::MAX))
                }
                _ => return Err(WerkzeugHashError::InvalidParameters),
            };
            let prf = Prf::from_name(prf).ok_or(WerkzeugHashError::UnsupportedDigest)?;
            if iterations == 0 || iterations > limits.max_pbkdf2_iterations {
                return Err(WerkzeugHashError::Pbkdf2IterationsOutOfRange {
                    iterations,
                    max: limits.max_pbkdf2_iterations,
                });
            }
            Ok(Method::Pbkdf2 { prf, iterations })
        }
        _ => Err(WerkzeugHashError::UnsupportedMethod),
    }
}

fn scrypt_method(
    n: u64,
    r: u64,
    p: u64,
    limits: &WerkzeugLimits,
) -> Result<Method, WerkzeugHashError> {
    // hashlib (OpenSSL) wants N a power of two above 1, r and p at least 1.
    if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
        return Err(WerkzeugHashError::InvalidParameters);
    }
    let memory = r
        .checked_mul(128)
        .and_then(|r128| r128.checked_mul(n.checked_add(p)?));
    let work = n.checked_mul(r).and_then(|nr| nr.checked_mul(p));
    match (memory, work) {
        (Some(memory), Some(work))
            if memory <= limits.max_scrypt_memory && work <= limits.max_scrypt_work => {}
        _ => return Err(WerkzeugHashError::ScryptOverLimit { n, r, p }),
    }
    let log_n =
        u8::try_from(n.trailing_zeros()).map_err(|_| WerkzeugHashError::InvalidParameters)?;
    let r = u32::try_from(r).map_err(|_| WerkzeugHashError::ScryptOverLimit { n, r, p })?;
    let p32 =
        u32::try_from(p).map_err(|_| WerkzeugHashError::ScryptOverLimit { n, r: r.into(), p })?;
    // The crate's own checks (r · p < 2^30, sizes fit in usize) must agree before we accept.
    scrypt::Params::new(log_n, r, p32).map_err(|_| WerkzeugHashError::ScryptOverLimit {
        n,
        r: r.into(),
        p,
    })?;
    Ok(Method::Scrypt { log_n, r, p: p32 })
}

/// Plain ASCII decimal digits (no sign, space or `_`, which Python's `int` would allow).
fn parse_decimal(text: &str) -> Result<u64, WerkzeugHashError> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WerkzeugHashError::InvalidParameters);
    }
    text.parse()
        .map_err(|_| WerkzeugHashError::InvalidParameters)
}

/// Lowercase hex only: werkzeug compares hex strings, so an uppercase digest never matches.
fn decode_lower_hex(hex: &str) -> Option<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let bytes = hex.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Why a stored werkzeug hash cannot be used. Never contains the hash, salt or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WerkzeugHashError {
    /// Not of the form `method$salt$hexdigest`.
    NotAWerkzeugHash,
    /// The method is neither `scrypt` nor `pbkdf2` (plain and other werkzeug methods are not
    /// supported).
    UnsupportedMethod,
    /// The method's parameters are missing, extra, not decimal numbers, or out of the range
    /// the algorithm allows (scrypt: `N` a power of two ≥ 2, `r` and `p` ≥ 1).
    InvalidParameters,
    /// The PBKDF2 hash function is not one of `sha224`, `sha256`, `sha384`, `sha512`.
    UnsupportedDigest,
    /// The scrypt parameters need more memory or work than [`WerkzeugLimits`] allow.
    ScryptOverLimit {
        /// The CPU/memory cost `N`.
        n: u64,
        /// The block size `r`.
        r: u64,
        /// The parallelism `p`.
        p: u64,
    },
    /// The PBKDF2 iteration count is zero or above [`WerkzeugLimits`].
    Pbkdf2IterationsOutOfRange {
        /// The stored count (saturated at `u32::MAX`).
        iterations: u32,
        /// The limit in force.
        max: u32,
    },
    /// The salt is longer than 1024 bytes.
    SaltTooLong,
    /// The digest is not lowercase hex of the method's output length.
    InvalidDigest,
}

impl fmt::Display for WerkzeugHashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAWerkzeugHash => f.pad("not a werkzeug hash (method$salt$digest)"),
            Self::UnsupportedMethod => f.pad("unsupported werkzeug method (not scrypt or pbkdf2)"),
            Self::InvalidParameters => f.pad("invalid werkzeug method parameters"),
            Self::UnsupportedDigest => f.pad("unsupported PBKDF2 hash function"),
            Self::ScryptOverLimit { n, r, p } => {
                write!(
                    f,
                    "scrypt parameters N={n} r={r} p={p} exceed the configured cost limits"
                )
            }
            Self::Pbkdf2IterationsOutOfRange { iterations, max } => {
                write!(
                    f,
                    "PBKDF2 iteration count {iterations} is outside 1..={max}"
                )
            }
            Self::SaltTooLong => write!(f, "salt longer than {MAX_SALT_LEN} bytes"),
            Self::InvalidDigest => f.pad("digest is not lowercase hex of the method's length"),
        }
    }
}

impl std::error::Error for WerkzeugHashError {}

#[cfg(test)]
mod tests {
    use super::*;

    // Werkzeug 3.1.9 `_hash_internal`, salt `abcdefghijklmnop`, password `password1234`
    // (reference notes, mlflow-auth-facts.md §3). Each is verified once: at werkzeug's
    // real costs a debug build takes seconds per check; wrong passwords are tested with
    // cheap parameters below.
    const SCRYPT_VECTOR: &str = "scrypt:32768:8:1$abcdefghijklmnop$5e486b2eeda2d795f7264fb41829aa1b25c54f2cc26993369310e21fa388c850761d029c99544f5d059424bb0ef0685d1a561ef4a40736237e3e3584821fecb8";
    const PBKDF2_600K_VECTOR: &str = "pbkdf2:sha256:600000$abcdefghijklmnop$4006a4e16079d6a3714ff8d7afe8a3c3272207e2d0206aa5f1e2d81261a34690";
    const PBKDF2_260K_VECTOR: &str = "pbkdf2:sha256:260000$abcdefghijklmnop$e899cf972d255b26b6b68a9ef80f00520c66daea0e31011662d58edbe14cfcbf";

    fn parse_err(text: &str) -> WerkzeugHashError {
        WerkzeugHash::parse(text).unwrap_err()
    }

    #[test]
    fn display_shows_the_method_and_its_parameters() {
        let hash = WerkzeugHash::parse(PBKDF2_260K_VECTOR).unwrap();
        assert_eq!(hash.to_string(), "pbkdf2:sha256:260000");
    }

    #[test]
    fn scrypt_vector_verifies() {
        let hash = WerkzeugHash::parse(SCRYPT_VECTOR).unwrap();
        assert!(hash.verify(b"password1234"));
    }

    #[test]
    fn pbkdf2_600k_vector_verifies() {
        let hash = WerkzeugHash::parse(PBKDF2_600K_VECTOR).unwrap();
        assert!(hash.verify(b"password1234"));
    }

    #[test]
    fn pbkdf2_260k_vector_verifies() {
        let hash = WerkzeugHash::parse(PBKDF2_260K_VECTOR).unwrap();
        assert!(hash.verify(b"password1234"));
    }

    /// A PBKDF2 hash made here with few iterations, to test cheap variants of the format.
    pub(crate) fn pbkdf2_hex<D: pbkdf2::hmac::EagerHash>(
        password: &[u8],
        salt: &str,
        iterations: u32,
        len: usize,
    ) -> String {
        let mut out = vec![0u8; len];
        pbkdf2::pbkdf2_hmac::<D>(password, salt.as_bytes(), iterations, &mut out);
        out.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn pbkdf2_sha512_and_utf8_salt_verify() {
        let salt = "sälz";
        let hex = pbkdf2_hex::<sha2::Sha512>("pässword".as_bytes(), salt, 3, 64);
        let hash = WerkzeugHash::parse(&format!("pbkdf2:sha512:3${salt}${hex}")).unwrap();
        assert!(hash.verify("pässword".as_bytes()));
        assert!(!hash.verify(b"password"));
        assert_eq!(hash.to_string(), "pbkdf2:sha512:3");
    }

    #[test]
    fn cheap_scrypt_parameters_verify() {
        let params = scrypt::Params::new(4, 2, 3).unwrap();
        let mut out = [0u8; 64];
        scrypt::scrypt(b"pw", b"salt", &params, &mut out).unwrap();
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        let hash = WerkzeugHash::parse(&format!("scrypt:16:2:3$salt${hex}")).unwrap();
        assert!(hash.verify(b"pw"));
        assert!(!hash.verify(b"pW"));
        assert_eq!(hash.to_string(), "scrypt:16:2:3");
    }

    #[test]
    fn bare_methods_take_werkzeug_3_1_defaults() {
        let scrypt_digest = "0".repeat(128);
        let hash = WerkzeugHash::parse(&format!("scrypt$s${scrypt_digest}")).unwrap();
        assert_eq!(hash.to_string(), "scrypt:32768:8:1");
        let sha256_digest = "0".repeat(64);
        let hash = WerkzeugHash::parse(&format!("pbkdf2$s${sha256_digest}")).unwrap();
        assert_eq!(hash.to_string(), "pbkdf2:sha256:1000000");
        let sha512_digest = "0".repeat(128);
        let hash = WerkzeugHash::parse(&format!("pbkdf2:sha512$s${sha512_digest}")).unwrap();
        assert_eq!(hash.to_string(), "pbkdf2:sha512:1000000");
    }

    #[test]
    fn empty_salt_is_allowed() {
        let hex = pbkdf2_hex::<sha2::Sha256>(b"pw", "", 2, 32);
        assert!(
            WerkzeugHash::parse(&format!("pbkdf2:sha256:2$${hex}"))
                .unwrap()
                .verify(b"pw")
        );
    }

    #[test]
    fn malformed_hashes_are_errors() {
        let d64 = "0".repeat(64);
        let d128 = "0".repeat(128);
        let cases: &[(&str, WerkzeugHashError)] = &[
            ("", WerkzeugHashError::NotAWerkzeugHash),
            ("plain", WerkzeugHashError::NotAWerkzeugHash),
            ("scrypt$salt", WerkzeugHashError::NotAWerkzeugHash),
            (
                &format!("md5$s${d64}"),
                WerkzeugHashError::UnsupportedMethod,
            ),
            (
                &format!("plain$s${d64}"),
                WerkzeugHashError::UnsupportedMethod,
            ),
            (&format!("$s${d64}"), WerkzeugHashError::UnsupportedMethod),
            (
                &format!("scrypt:16:8$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:16:8:1:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:+16:8:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:1_6:8:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt: 16:8:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:15:8:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:1:8:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:0:8:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:16:0:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:16:8:0$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("scrypt:99999999999999999999:8:1$s${d128}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("pbkdf2:sha256:1:2$s${d64}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("pbkdf2:sha256:-1$s${d64}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("pbkdf2:sha256:$s${d64}"),
                WerkzeugHashError::InvalidParameters,
            ),
            (
                &format!("pbkdf2:md5:1000$s${d64}"),
                WerkzeugHashError::UnsupportedDigest,
            ),
            (
                &format!("pbkdf2:SHA256:1000$s${d64}"),
                WerkzeugHashError::UnsupportedDigest,
            ),
            ("pbkdf2:sha256:1000$s$", WerkzeugHashError::InvalidDigest),
            (
                &format!("pbkdf2:sha256:1000$s${d128}"),
                WerkzeugHashError::InvalidDigest,
            ),
            (&format!("scrypt$s${d64}"), WerkzeugHashError::InvalidDigest),
            (
                &format!("pbkdf2:sha256:1000$s${}", "A".repeat(64)),
                WerkzeugHashError::InvalidDigest,
            ),
            (
                &format!("pbkdf2:sha256:1000$s${}", "0".repeat(63)),
                WerkzeugHashError::InvalidDigest,
            ),
            (
                &format!("pbkdf2:sha256:1000$s${}g", "0".repeat(63)),
                WerkzeugHashError::InvalidDigest,
            ),
            (
                &format!("pbkdf2:sha256:1000$s$$${}", "0".repeat(62)),
                WerkzeugHashError::InvalidDigest,
            ),
            (
                &format!("pbkdf2:sha256:1000${}${d64}", "s".repeat(1025)),
                WerkzeugHashError::SaltTooLong,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&parse_err(text), expected, "for {text:?}");
        }
    }

    #[test]
    fn scrypt_memory_and_work_are_capped() {
        let d = "0".repeat(128);
        // 2^18 · 8 · 128 = 256 MiB, plus p's block: just over the default memory cap.
        assert!(matches!(
            parse_err(&format!("scrypt:262144:8:1$s${d}")),
            WerkzeugHashError::ScryptOverLimit {
                n: 262_144,
                r: 8,
                p: 1
            }
        ));
        // 2^17 · 8 is within memory (128 MiB) and work (2^20).
        assert!(WerkzeugHash::parse(&format!("scrypt:131072:8:1$s${d}")).is_ok());
        // Little memory but p pushes the work past 2^22.
        assert!(matches!(
            parse_err(&format!("scrypt:1024:8:1024$s${d}")),
            WerkzeugHashError::ScryptOverLimit { .. }
        ));
        // Overflowing products are over the limit, not a panic.
        assert!(matches!(
            parse_err(&format!(
                "scrypt:9223372036854775808:4294967295:4294967295$s${d}"
            )),
            WerkzeugHashError::ScryptOverLimit { .. }
        ));
        let tight = WerkzeugLimits::default().max_scrypt_memory(1 << 20);
        assert!(matches!(
            WerkzeugHash::parse_with_limits(&format!("scrypt:32768:8:1$s${d}"), &tight),
            Err(WerkzeugHashError::ScryptOverLimit { .. })
        ));
        let tight = WerkzeugLimits::default().max_scrypt_work(1 << 10);
        assert!(WerkzeugHash::parse_with_limits(&format!("scrypt:16:2:3$s${d}"), &tight).is_ok());
        assert!(
            WerkzeugHash::parse_with_limits(&format!("scrypt:1024:8:1$s${d}"), &tight).is_err()
        );
    }

    #[test]
    fn pbkdf2_iterations_are_capped() {
        let d = "0".repeat(64);
        assert!(WerkzeugHash::parse(&format!("pbkdf2:sha256:4000000$s${d}")).is_ok());
        assert_eq!(
            parse_err(&format!("pbkdf2:sha256:4000001$s${d}")),
            WerkzeugHashError::Pbkdf2IterationsOutOfRange {
                iterations: 4_000_001,
                max: 4_000_000
            }
        );
        assert_eq!(
            parse_err(&format!("pbkdf2:sha256:0$s${d}")),
            WerkzeugHashError::Pbkdf2IterationsOutOfRange {
                iterations: 0,
                max: 4_000_000
            }
        );
        assert_eq!(
            parse_err(&format!("pbkdf2:sha256:99999999999$s${d}")),
            WerkzeugHashError::Pbkdf2IterationsOutOfRange {
                iterations: u32::MAX,
                max: 4_000_000
            }
        );
        // A bare `pbkdf2` means 1,000,000 iterations, which a strict limit refuses.
        let strict = WerkzeugLimits::default().max_pbkdf2_iterations(999_999);
        assert!(WerkzeugHash::parse_with_limits(&format!("pbkdf2$s${d}"), &strict).is_err());
    }

    #[test]
    fn debug_display_and_errors_never_show_salt_or_digest() {
        let hash = WerkzeugHash::parse(SCRYPT_VECTOR).unwrap();
        for shown in [format!("{hash:?}"), hash.to_string()] {
            assert!(!shown.contains("abcdefghijklmnop"), "{shown}");
            assert!(!shown.contains("5e486b2e"), "{shown}");
        }
        assert!(format!("{hash:?}").contains("scrypt:32768:8:1"));
        let broken = "pbkdf2:sha256:1000$secret-salt$0123456789abcdef";
        let err = parse_err(broken);
        assert!(!err.to_string().contains("secret-salt"));
        assert!(!err.to_string().contains("0123456789abcdef"));
    }

    #[test]
    fn dummy_never_matches() {
        let dummy = WerkzeugHash::dummy(Method::Pbkdf2 {
            prf: Prf::Sha256,
            iterations: 1,
        });
        assert!(!dummy.verify(b""));
        assert!(!dummy.verify(b"tower-mlflow-dummy"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,200}") {
            let _ = WerkzeugHash::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_near_misses(
            method in "(scrypt|pbkdf2)(:[0-9a-z]{0,12}){0,4}",
            salt in "[^$]{0,20}",
            hex in "[0-9a-fA-F$]{0,130}",
        ) {
            let _ = WerkzeugHash::parse(&format!("{method}${salt}${hex}"));
        }
    }
}
