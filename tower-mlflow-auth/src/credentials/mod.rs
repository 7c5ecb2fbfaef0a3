//! Credentials as presented by a client, parsed from untrusted request headers.
//!
//! Parsing never panics and never allocates an unbounded amount of memory: a header over
//! [`MAX_CREDENTIALS_HEADER_LEN`] bytes, two `Authorization` headers, bad base64, a missing `:`,
//! non-UTF-8 text or an empty username are all reported as [`CredentialsError::Malformed`],
//! which the layer answers with 401.
//!
//! Two forms: [`CredentialsRef`], read from the request head without copying the secret (what
//! [`Authenticator::credentials`](crate::Authenticator::credentials) returns and the
//! synchronous fast path looks at), and owned [`Credentials`], whose secrets live in
//! [`SecretString`]s, for verifications that outlive the request head. A decoded Basic buffer
//! is zeroized on drop, and neither `Debug` nor any error message shows a password or token.
//!
//! ```
//! use http::{Request, header::AUTHORIZATION};
//! use secrecy::ExposeSecret;
//! use tower_mlflow_auth::Credentials;
//!
//! let request = Request::builder()
//!     .header(AUTHORIZATION, "basic YWxpY2U6czNjcjN0") // alice:s3cr3t
//!     .body(())
//!     .unwrap();
//! let (parts, _) = request.into_parts();
//! match Credentials::from_authorization_header(&parts.headers).unwrap() {
//!     Credentials::Basic { username, password } => {
//!         assert_eq!(username, "alice");
//!         assert_eq!(password.expose_secret(), "s3cr3t");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

use std::fmt;

use http::{HeaderMap, HeaderName, header::AUTHORIZATION};
use secrecy::SecretString;

mod borrowed;
mod standard_base64;

pub use borrowed::CredentialsRef;

/// For the `fuzzing` entry point: the Basic decoder, `None` on refusal.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_standard_base64(input: &[u8], out: &mut [u8]) -> Option<usize> {
    standard_base64::decode(input, out).ok()
}
use borrowed::DecodedBasic;

/// Longest credentials header accepted, in bytes (8 KiB). Longer values are malformed.
pub const MAX_CREDENTIALS_HEADER_LEN: usize = 8 * 1024;

/// The credential scheme a client used, recorded on the [`Authorization`](crate::Authorization)
/// principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `Authorization: Basic base64(user:password)` (RFC 7617).
    Basic,
    /// `Authorization: Bearer <token>` (RFC 6750).
    Bearer,
    /// A credential carried in some other header, such as an `X-Api-Key`.
    Header,
    /// A browser session cookie, e.g. from the gateway's OpenID Connect sign-in.
    Session,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Basic => "basic",
            Self::Bearer => "bearer",
            Self::Header => "header",
            Self::Session => "session",
        })
    }
}

/// Credentials extracted from a request, owned so that verification can run without borrowing
/// the request.
///
/// `Debug` shows the username and header name but never a password, token or key.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// HTTP Basic credentials. The username is not a secret; the password is.
    Basic {
        /// The username, split off at the first `:`; never empty.
        username: String,
        /// The password (everything after the first `:`; may be empty or contain `:`).
        password: SecretString,
    },
    /// A bearer token.
    Bearer {
        /// The token as sent, without the scheme.
        token: SecretString,
    },
    /// A raw credential from a named header, such as an API key.
    Header {
        /// The header it came from.
        name: HeaderName,
        /// The header's value.
        value: SecretString,
    },
}

impl Credentials {
    /// The scheme these credentials use.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Basic { .. } => Scheme::Basic,
            Self::Bearer { .. } => Scheme::Bearer,
            Self::Header { .. } => Scheme::Header,
        }
    }

    /// Parses the request's `Authorization` header: `Basic` and `Bearer`, scheme matched
    /// case-insensitively.
    ///
    /// # Errors
    ///
    /// [`CredentialsError::Missing`] when there is no `Authorization` header;
    /// [`CredentialsError::Malformed`] when there are several, when it is too long, when its
    /// scheme is unknown or when its value cannot be decoded.
    pub fn from_authorization_header(headers: &HeaderMap) -> Result<Self, CredentialsError> {
        CredentialsRef::from_authorization_header(headers).map(|found| found.to_credentials())
    }

    /// Reads a raw credential, such as an API key, from the named header.
    ///
    /// Surrounding whitespace is trimmed; the value must be visible ASCII and non-empty.
    ///
    /// # Errors
    ///
    /// [`CredentialsError::Missing`] without the header, [`CredentialsError::Malformed`] when
    /// it is repeated, empty, too long or not visible ASCII.
    pub fn from_header(headers: &HeaderMap, name: &HeaderName) -> Result<Self, CredentialsError> {
        CredentialsRef::from_header(headers, name).map(|found| found.to_credentials())
    }

    /// The same credentials, borrowed: what
    /// [`Authenticator::accepts`](crate::Authenticator::accepts) and
    /// [`Authenticator::try_accept_now`](crate::Authenticator::try_accept_now) take.
    #[must_use]
    pub fn borrowed(&self) -> CredentialsRef<'_> {
        CredentialsRef::from(self)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[redacted]")
                .finish(),
            Self::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"[redacted]")
                .finish(),
            Self::Header { name, .. } => f
                .debug_struct("Header")
                .field("name", name)
                .field("value", &"[redacted]")
                .finish(),
        }
    }
}

/// Why no credentials could be extracted from a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The request carries no credentials at all.
    Missing,
    /// The request carries something that is not valid credentials.
    Malformed(Malformed),
}

/// What was wrong with malformed credentials. Never contains any part of the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The credentials header appears more than once.
    Repeated,
    /// The header is longer than [`MAX_CREDENTIALS_HEADER_LEN`].
    TooLong,
    /// The header value is not visible ASCII.
    InvalidCharacters,
    /// The `Authorization` scheme is neither `Basic` nor `Bearer`.
    UnsupportedScheme,
    /// The credential is empty (no token, no value, or an empty username).
    Empty,
    /// The Basic credential is not valid standard base64.
    InvalidBase64,
    /// The decoded Basic credential has no `:` between username and password.
    MissingColon,
    /// The decoded Basic credential is not UTF-8.
    NotUtf8,
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.pad("no credentials"),
            Self::Malformed(why) => write!(f, "malformed credentials: {why}"),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Repeated => "header repeated",
            Self::TooLong => "header too long",
            Self::InvalidCharacters => "invalid characters",
            Self::UnsupportedScheme => "unsupported scheme",
            Self::Empty => "empty credential",
            Self::InvalidBase64 => "invalid base64",
            Self::MissingColon => "no ':' in basic credential",
            Self::NotUtf8 => "not UTF-8",
        })
    }
}

impl std::error::Error for CredentialsError {}

/// The one value of a header that must not repeat, at most [`MAX_CREDENTIALS_HEADER_LEN`]
/// bytes.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<&'a [u8], CredentialsError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(CredentialsError::Missing)?;
    if values.next().is_some() {
        return Err(CredentialsError::Malformed(Malformed::Repeated));
    }
    if value.len() > MAX_CREDENTIALS_HEADER_LEN {
        return Err(CredentialsError::Malformed(Malformed::TooLong));
    }
    Ok(value.as_bytes())
}

/// Checks that `value` is visible ASCII, space or tab, what `HeaderValue::to_str` accepts (no
/// control or obs-text bytes). A credential is checked on every request, so first eight
/// bytes at a time for visible ASCII alone ([`any_non_graphic`]), which a scheme, a token or
/// base64 passes; only a value with a blank or a bad byte in it is looked at byte by byte.
fn check_visible(value: &[u8]) -> Result<(), CredentialsError> {
    if !any_non_graphic(value) {
        return Ok(());
    }
    let invalid = any_byte(value, |byte| {
        let visible = (byte > b' ') & (byte < 0x7f);
        !(visible | is_blank(byte))
    });
    if invalid {
        return Err(CredentialsError::Malformed(Malformed::InvalidCharacters));
    }
    Ok(())
}

/// Checks that `text` is all `is_ascii_graphic`: [`check_visible`] and no space or tab.
fn check_graphic(text: &[u8]) -> Result<(), CredentialsError> {
    if any_non_graphic(text) {
        return Err(CredentialsError::Malformed(Malformed::InvalidCharacters));
    }
    Ok(())
}

/// Whether any byte is outside `!`..=`~` (`is_ascii_graphic`), eight bytes at a time, with no
/// early exit: a credential is tens to hundreds of bytes, where a byte loop's compare and
/// branch per byte cost more than the whole test a word (see [`non_graphic_bits`]).
fn any_non_graphic(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut found = 0;
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        found |= non_graphic_bits(u64::from_le_bytes(word));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Padded with a graphic byte, which sets no bit.
        let mut word = [b'!'; 8];
        word[..rest.len()].copy_from_slice(rest);
        found |= non_graphic_bits(u64::from_le_bytes(word));
    }
    found != 0
}

/// Non-zero when a byte of `word` is below `0x21` or above `0x7e`. The two word tests of
/// "Bit Twiddling Hacks" (S. E. Anderson): `hasless(x, 0x21)`, `(x - 0x21…) & !x & 0x80…`,
/// and `hasmore(x, 0x7e)`, `((x + 0x01…) | x) & 0x80…`. Each may flag the wrong byte when
/// a borrow or a carry crosses bytes, but only when some byte really is out of range: exact
/// for "any", which is all this answers.
fn non_graphic_bits(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = word.wrapping_sub(ONES * 0x21) & !word;
    let above = word.wrapping_add(ONES) | word;
    (below | above) & HIGH
}

/// `bytes` without leading and trailing spaces and tabs (what `trim_ascii` trims once the
/// other whitespace is refused).
fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_blank(b))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// Whether `test` holds for any byte, looking at all of them: an OR without early exit.
fn any_byte(bytes: &[u8], test: impl Fn(u8) -> bool) -> bool {
    bytes
        .iter()
        .fold(0_u8, |any, &byte| any | u8::from(test(byte)))
        != 0
}

fn is_blank(byte: u8) -> bool {
    (byte == b' ') | (byte == b'\t')
}

/// The `Authorization` header's credentials: split first, on space and tab only, then each
/// part checked once. The blanks cut off are valid, the scheme and the rest are checked
/// below, so every byte is checked and a bad one anywhere is `InvalidCharacters`, before
/// any other error. A bearer token, hundreds of bytes, is checked in one pass for both rules.
fn parse_authorization(headers: &HeaderMap) -> Result<CredentialsRef<'_>, CredentialsError> {
    let value = trim_blanks(single_header(headers, &AUTHORIZATION)?);
    let (scheme, rest) = match value.iter().position(|&b| is_blank(b)) {
        Some(at) => (&value[..at], trim_blanks(&value[at..])),
        None => (value, &[][..]),
    };
    check_visible(scheme)?;
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return parse_bearer(rest);
    }
    check_visible(rest)?;
    if scheme.eq_ignore_ascii_case(b"basic") {
        if rest.is_empty() {
            return Err(CredentialsError::Malformed(Malformed::Empty));
        }
        DecodedBasic::decode(rest).map(CredentialsRef::decoded)
    } else {
        Err(CredentialsError::Malformed(Malformed::UnsupportedScheme))
    }
}

/// A raw credential from the named header: trimmed, non-empty, visible ASCII.
fn parse_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<&'a [u8], CredentialsError> {
    let value = trim_blanks(single_header(headers, name)?);
    if value.is_empty() {
        return Err(CredentialsError::Malformed(Malformed::Empty));
    }
    check_graphic(value)?;
    Ok(value)
}

fn parse_bearer(token: &[u8]) -> Result<CredentialsRef<'_>, CredentialsError> {
    if token.is_empty() {
        return Err(CredentialsError::Malformed(Malformed::Empty));
    }
    // token68 never contains whitespace; anything after a space is not a bearer token.
    check_graphic(token)?;
    Ok(CredentialsRef::bearer(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use http::HeaderValue;
    use secrecy::ExposeSecret;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    fn basic(raw: &[u8]) -> Vec<u8> {
        let mut v = b"Basic ".to_vec();
        v.extend(
            base64::engine::general_purpose::STANDARD
                .encode(raw)
                .bytes(),
        );
        v
    }

    fn parse(values: &[&[u8]]) -> Result<Credentials, CredentialsError> {
        Credentials::from_authorization_header(&headers(values))
    }

    fn malformed(why: Malformed) -> CredentialsError {
        CredentialsError::Malformed(why)
    }

    fn parse_err(values: &[&[u8]]) -> CredentialsError {
        parse(values).unwrap_err()
    }

    #[test]
    fn schemes_display_in_lower_case() {
        let shown: Vec<String> = [
            Scheme::Basic,
            Scheme::Bearer,
            Scheme::Header,
            Scheme::Session,
        ]
        .iter()
        .map(|scheme| format!("{scheme:>7}"))
        .collect();
        assert_eq!(shown, ["  basic", " bearer", " header", "session"]);
    }

    #[test]
    fn basic_is_parsed_with_any_scheme_case() {
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            let value = format!("{scheme} YWxpY2U6czNjcjN0");
            let Credentials::Basic { username, password } = parse(&[value.as_bytes()]).unwrap()
            else {
                panic!("not basic")
            };
            assert_eq!(username, "alice");
            assert_eq!(password.expose_secret(), "s3cr3t");
        }
    }

    #[test]
    fn basic_splits_on_first_colon_and_keeps_utf8() {
        let Credentials::Basic { username, password } =
            parse(&[&basic("jörg:a:b:c".as_bytes())]).unwrap()
        else {
            panic!("not basic")
        };
        assert_eq!(username, "jörg");
        assert_eq!(password.expose_secret(), "a:b:c");
    }

    #[test]
    fn basic_of_every_length_round_trips() {
        // Short credentials are decoded on the stack, long ones on the heap; the boundary
        // (96 decoded bytes: "u:" and 94) and its neighbours must behave the same.
        for len in [
            1, 60, 138, 139, 140, 141, 142, 143, 144, 145, 186, 193, 300, 6000,
        ] {
            let password = "p".repeat(len);
            let Credentials::Basic {
                username,
                password: parsed,
            } = parse(&[&basic(format!("u:{password}").as_bytes())]).unwrap()
            else {
                panic!("not basic")
            };
            assert_eq!(username, "u");
            assert_eq!(parsed.expose_secret(), password, "length {len}");
        }
        for len in [100, 255, 256, 257, 400] {
            let mut value = b"Basic ".to_vec();
            value.extend(std::iter::repeat_n(b'*', len));
            assert_eq!(parse_err(&[&value]), malformed(Malformed::InvalidBase64));
        }
    }

    #[test]
    fn empty_password_is_allowed_but_empty_username_is_not() {
        assert!(matches!(
            parse(&[&basic(b"alice:")]),
            Ok(Credentials::Basic { .. })
        ));
        assert_eq!(
            parse(&[&basic(b":secret")]).unwrap_err(),
            CredentialsError::Malformed(Malformed::Empty)
        );
    }

    #[test]
    fn bearer_is_parsed() {
        let Credentials::Bearer { token } = parse(&[b"bearer abc.def-ghi"]).unwrap() else {
            panic!("not bearer")
        };
        assert_eq!(token.expose_secret(), "abc.def-ghi");
    }

    #[test]
    fn missing_header_is_missing() {
        assert_eq!(parse(&[]).unwrap_err(), CredentialsError::Missing);
    }

    #[test]
    fn hostile_inputs_are_malformed() {
        assert_eq!(
            parse_err(&[b"Basic YWxpY2U6cw==", b"Basic YWxpY2U6cw=="]),
            malformed(Malformed::Repeated)
        );
        assert_eq!(
            parse_err(&[b"Basic !!!!"]),
            malformed(Malformed::InvalidBase64)
        );
        assert_eq!(
            parse_err(&[b"Basic YWxpY2U6cw"]),
            malformed(Malformed::InvalidBase64)
        ); // no padding
        assert_eq!(
            parse_err(&[&basic(b"alice")]),
            malformed(Malformed::MissingColon)
        );
        assert_eq!(
            parse_err(&[&basic(b"al\xffce:pw")]),
            malformed(Malformed::NotUtf8)
        );
        assert_eq!(
            parse_err(&[&basic(b"alice:p\xffw")]),
            malformed(Malformed::NotUtf8)
        );
        assert_eq!(parse_err(&[b"Basic"]), malformed(Malformed::Empty));
        assert_eq!(parse_err(&[b"Basic   "]), malformed(Malformed::Empty));
        assert_eq!(parse_err(&[b"Bearer"]), malformed(Malformed::Empty));
        assert_eq!(
            parse_err(&[b"Bearer a b"]),
            malformed(Malformed::InvalidCharacters)
        );
        assert_eq!(
            parse_err(&[b"Digest username=x"]),
            malformed(Malformed::UnsupportedScheme)
        );
        assert_eq!(parse_err(&[b""]), malformed(Malformed::UnsupportedScheme));
        assert_eq!(
            parse_err(&[b"Basic \xe9\xe9"]),
            malformed(Malformed::InvalidCharacters)
        );
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIALS_HEADER_LEN));
        assert_eq!(parse_err(&[long.as_bytes()]), malformed(Malformed::TooLong));
    }

    #[test]
    fn a_bad_byte_in_any_part_is_invalid_characters_before_other_errors() {
        // The value is split before it is checked: scheme, token, the rest of an unknown
        // scheme, and a Basic credential are each checked, and the error stays the same.
        for value in [
            &b"Be\xe9rer abc"[..],
            b"Bearer abc\xe9",
            b"Bearer \xe9",
            b"\xe9",
            b"Digest \xe9",
            b"Basic \xe9\xe9==",
            b"Bearer\tabc def",
        ] {
            assert_eq!(
                parse_err(&[value]),
                malformed(Malformed::InvalidCharacters),
                "{value:?}"
            );
        }
        let Credentials::Bearer { token } = parse(&[b" \tBearer \t abc.def \t"]).unwrap() else {
            panic!("not bearer")
        };
        assert_eq!(
            token.expose_secret(),
            "abc.def",
            "blanks around are trimmed"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = parse(&[&basic(b"alice:hunter2-secret")]).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"));
        let c = parse(&[b"Bearer tok-secret-123"]).unwrap();
        assert!(!format!("{c:?}").contains("tok-secret"));
        let mut map = HeaderMap::new();
        map.insert("x-api-key", HeaderValue::from_static("key-secret-456"));
        let c = Credentials::from_header(&map, &HeaderName::from_static("x-api-key")).unwrap();
        assert!(!format!("{c:?}").contains("key-secret"));
    }

    #[test]
    fn borrowed_credentials_debug_without_the_secret() {
        let mut map = headers(&[&basic(b"alice:hunter2-secret")]);
        map.insert("x-api-key", HeaderValue::from_static("key-secret-456"));
        let basic = CredentialsRef::from_authorization_header(&map).unwrap();
        let shown = format!("{basic:?}");
        assert!(
            shown.contains("alice") && shown.contains("Basic"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        let key = HeaderName::from_static("x-api-key");
        let header = CredentialsRef::from_header(&map, &key).unwrap();
        let shown = format!("{header:?}");
        assert!(
            shown.contains("x-api-key") && !shown.contains("key-secret"),
            "{shown}"
        );
        let bearer = headers(&[b"Bearer tok-secret-123"]);
        let shown = format!(
            "{:?}",
            CredentialsRef::from_authorization_header(&bearer).unwrap()
        );
        assert!(!shown.contains("tok-secret"), "{shown}");
    }

    #[test]
    fn borrowed_and_owned_credentials_say_the_same() {
        let key = HeaderName::from_static("x-api-key");
        let mut map = HeaderMap::new();
        map.insert(&key, HeaderValue::from_static(" k-1 "));
        let long = format!("bob:{}", "é".repeat(100));
        for (map, header) in [
            (headers(&[&basic(b"alice:s3cr3t:with:colons")]), None),
            (headers(&[&basic(long.as_bytes())]), None),
            (headers(&[&basic(b"carol:")]), None),
            (headers(&[b"bearer abc.def"]), None),
            (map, Some(&key)),
        ] {
            let found = match header {
                Some(name) => CredentialsRef::from_header(&map, name),
                None => CredentialsRef::from_authorization_header(&map),
            }
            .unwrap();
            let owned = found.to_credentials();
            // Owned, then borrowed again: every accessor agrees with the first reading.
            let again = owned.borrowed();
            for view in [&found, &again] {
                assert_eq!(view.scheme(), owned.scheme());
                assert_eq!(view.expose_secret(), found.expose_secret());
                assert_eq!(view.username(), found.username());
                assert_eq!(view.header_name(), found.header_name());
            }
            match &owned {
                Credentials::Basic { username, password } => {
                    assert_eq!(Some(username.as_str()), found.username());
                    assert_eq!(password.expose_secret(), found.expose_secret());
                }
                Credentials::Bearer { token } => {
                    assert_eq!(token.expose_secret(), "abc.def");
                    assert_eq!(found.username(), None);
                }
                Credentials::Header { name, value } => {
                    assert_eq!(name, &key);
                    assert_eq!(value.expose_secret(), "k-1");
                }
            }
        }
        let long_found =
            CredentialsRef::from_authorization_header(&headers(&[&basic(long.as_bytes())]))
                .map(|found| found.expose_secret().to_owned());
        assert_eq!(long_found.as_deref(), Ok(&long[4..]));
    }

    #[test]
    fn custom_header_rules() {
        let name = HeaderName::from_static("x-api-key");
        let mut map = HeaderMap::new();
        assert_eq!(
            Credentials::from_header(&map, &name).unwrap_err(),
            CredentialsError::Missing
        );
        map.insert(&name, HeaderValue::from_static("  "));
        assert_eq!(
            Credentials::from_header(&map, &name).unwrap_err(),
            malformed(Malformed::Empty)
        );
        map.insert(&name, HeaderValue::from_static("a b"));
        assert_eq!(
            Credentials::from_header(&map, &name).unwrap_err(),
            malformed(Malformed::InvalidCharacters)
        );
        map.insert(&name, HeaderValue::from_static(" k1 "));
        map.append(&name, HeaderValue::from_static("k2"));
        assert_eq!(
            Credentials::from_header(&map, &name).unwrap_err(),
            malformed(Malformed::Repeated)
        );
    }

    /// The checks as they were before [`check_visible`]: `HeaderValue::to_str`, then
    /// trimming, splitting and `is_ascii_graphic` over `&str`. The oracle of the proptest below.
    fn old_rules(
        value: &HeaderValue,
        custom: bool,
    ) -> Result<(Scheme, String, String), CredentialsError> {
        let is_ws = |c: char| c == ' ' || c == '\t';
        let graphic = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        let value = value
            .to_str()
            .map_err(|_| malformed(Malformed::InvalidCharacters))?
            .trim_matches(is_ws);
        if custom {
            if value.is_empty() {
                return Err(malformed(Malformed::Empty));
            }
            if !graphic(value) {
                return Err(malformed(Malformed::InvalidCharacters));
            }
            return Ok((Scheme::Header, String::new(), value.to_owned()));
        }
        let (scheme, rest) = match value.find(is_ws) {
            Some(at) => (&value[..at], value[at..].trim_start_matches(is_ws)),
            None => (value, ""),
        };
        if scheme.eq_ignore_ascii_case("basic") {
            // The base64 crate's engine, which the parser used before its own decoder.
            if rest.is_empty() {
                return Err(malformed(Malformed::Empty));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| malformed(Malformed::InvalidBase64))?;
            let colon = decoded
                .iter()
                .position(|&b| b == b':')
                .ok_or(malformed(Malformed::MissingColon))?;
            if colon == 0 {
                return Err(malformed(Malformed::Empty));
            }
            let text = |bytes: &[u8]| {
                String::from_utf8(bytes.to_vec()).map_err(|_| malformed(Malformed::NotUtf8))
            };
            Ok((
                Scheme::Basic,
                text(&decoded[..colon])?,
                text(&decoded[colon + 1..])?,
            ))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Err(malformed(Malformed::Empty));
            }
            if !graphic(rest) {
                return Err(malformed(Malformed::InvalidCharacters));
            }
            Ok((Scheme::Bearer, String::new(), rest.to_owned()))
        } else {
            Err(malformed(Malformed::UnsupportedScheme))
        }
    }

    /// Credentials as comparable values: scheme, username, secret.
    fn summary(
        credentials: Result<Credentials, CredentialsError>,
    ) -> Result<(Scheme, String, String), CredentialsError> {
        credentials.map(|credentials| match credentials {
            Credentials::Basic { username, password } => {
                (Scheme::Basic, username, password.expose_secret().to_owned())
            }
            Credentials::Bearer { token } => (
                Scheme::Bearer,
                String::new(),
                token.expose_secret().to_owned(),
            ),
            Credentials::Header { value, .. } => (
                Scheme::Header,
                String::new(),
                value.expose_secret().to_owned(),
            ),
        })
    }

    /// Header values near the rules' edges: a scheme (or none), then bytes mostly from the
    /// ones the rules treat differently (blanks, DEL, obs-text, base64 and token68 characters).
    fn edgy_header_value() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let scheme = prop::sample::select(vec![
            &b""[..],
            b"Basic",
            b"bearer",
            b"BEARER ",
            b" Bearer\t",
            b"\tbasic  ",
            b"Digest ",
        ]);
        let byte = prop_oneof![
            3 => prop::sample::select(vec![b' ', b'\t', b'a', b'Z', b'=', b':', b'.', b'-', b'~', b'!', 0x7f, 0x80, 0xe9, 0xff]),
            1 => any::<u8>(),
        ];
        (scheme, prop::collection::vec(byte, 0..48))
            .prop_map(|(scheme, rest)| [scheme, &rest].concat())
    }

    proptest::proptest! {
        #[test]
        fn vectorized_checks_keep_the_old_rules(raw in edgy_header_value()) {
            // Bytes a `HeaderValue` cannot hold never reach the parser.
            if let Ok(value) = HeaderValue::from_bytes(&raw) {
                let mut map = HeaderMap::new();
                map.insert(AUTHORIZATION, value.clone());
                proptest::prop_assert_eq!(
                    summary(Credentials::from_authorization_header(&map)),
                    old_rules(&value, false)
                );
                let name = HeaderName::from_static("x-api-key");
                let mut map = HeaderMap::new();
                map.insert(&name, value.clone());
                proptest::prop_assert_eq!(
                    summary(Credentials::from_header(&map, &name)),
                    old_rules(&value, true)
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(value) = HeaderValue::from_bytes(&raw) {
                let mut map = HeaderMap::new();
                map.insert(AUTHORIZATION, value);
                let _ = Credentials::from_authorization_header(&map);
            }
            let mut encoded = b"Basic ".to_vec();
            encoded.extend(base64::engine::general_purpose::STANDARD.encode(&raw).bytes());
            let _ = parse(&[&encoded]);
        }
    }

    #[test]
    fn the_word_test_finds_every_byte_outside_graphic_ascii_at_every_position() {
        for len in 1..=25 {
            for at in 0..len {
                for byte in 0..=u8::MAX {
                    // Neighbours at both ends of the graphic range: the borrows and carries
                    // of the word tests start there.
                    for fill in [b'!', b'~', b'A'] {
                        let mut bytes = vec![fill; len];
                        bytes[at] = byte;
                        assert_eq!(
                            any_non_graphic(&bytes),
                            !byte.is_ascii_graphic(),
                            "byte {byte:#04x} at {at} of {len}, fill {fill:#04x}"
                        );
                    }
                }
            }
        }
        assert!(!any_non_graphic(b""));
    }

    proptest::proptest! {
        #[test]
        fn the_word_test_agrees_with_is_ascii_graphic(
            raw in proptest::collection::vec(
                proptest::prop_oneof![0x1f_u8..=0x22, 0x7d_u8..=0x81, proptest::num::u8::ANY],
                0..80,
            )
        ) {
            proptest::prop_assert_eq!(
                any_non_graphic(&raw),
                !raw.iter().all(u8::is_ascii_graphic)
            );
        }
    }
}
