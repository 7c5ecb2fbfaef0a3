//! [`SessionKeys`]: the AEAD keys of the session secret, and sealing one cookie value.

use std::{
    fmt,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{SessionKeysError, SessionSealError};

/// Every sealed value starts with this; a new format gets a new prefix.
pub(super) const VERSION_PREFIX: &str = "v1.";
/// The HKDF `info`: binds the derived key to this use, format version and cipher, so the
/// same secret line used elsewhere (or by a later format) yields an unrelated key.
const HKDF_INFO: &[u8] = b"tower-mlflow-auth session cookie v1 XChaCha20-Poly1305";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const EXPIRY_LEN: usize = 8;

/// The keys that seal and open session cookies, read from the session secret.
///
/// Each non-blank line of the secret is one key (surrounding whitespace is ignored) of at
/// least [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN) bytes, for instance the output of
/// `openssl rand -base64 48`. The first key seals; every key opens, so a new secret is
/// rolled out by putting it first and keeping the old one on the second line until the
/// cookies it sealed have expired. Each line goes through HKDF-SHA256 (no salt, a fixed
/// `info`) to an XChaCha20-Poly1305 key; the lines themselves are not kept.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use secrecy::{ExposeSecret, SecretString};
/// use tower_mlflow_auth::session::SessionKeys;
///
/// let old = SessionKeys::from_secret(&SecretString::from("old-secret-line-of-at-least-32-bytes"))?;
/// let now = SystemTime::now();
/// let sealed = old.seal("session", b"alice", now + Duration::from_secs(60))?;
///
/// // Rotation: the new line first seals, the old one still opens.
/// let rotated = SessionKeys::from_secret(&SecretString::from(
///     "new-secret-line-of-at-least-32-bytes\nold-secret-line-of-at-least-32-bytes\n",
/// ))?;
/// let opened = rotated.open("session", &sealed, now).unwrap();
/// assert_eq!(opened.expose_secret(), b"alice");
/// // Another cookie name, or a time past the expiry, opens nothing.
/// assert!(rotated.open("other", &sealed, now).is_none());
/// assert!(rotated.open("session", &sealed, now + Duration::from_secs(61)).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Cloning is cheap: clones share the keys. `Debug` shows only how many keys there are.
#[derive(Clone)]
pub struct SessionKeys {
    /// The sealing key first. The cipher zeroizes its key when dropped.
    ciphers: Arc<[XChaCha20Poly1305]>,
}

impl SessionKeys {
    /// The fewest bytes a line of the secret may have.
    pub const MIN_SECRET_LEN: usize = 32;
    /// The most keys (lines) a secret may hold; each costs a decryption attempt for a value
    /// sealed by a later key, or forged.
    pub const MAX_KEYS: usize = 16;
    /// Sealed values longer than this are not opened (a bound on the work a request can
    /// cause); it is more than [`SessionCookie::MAX_CHUNKS`](super::SessionCookie::MAX_CHUNKS)
    /// cookies can carry.
    pub const MAX_SEALED_LEN: usize = 64 * 1024;

    /// Reads the keys from the contents of the session secret file: one key per non-blank
    /// line, the first one sealing.
    ///
    /// # Errors
    ///
    /// [`SessionKeysError`] when a line is shorter than [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN)
    /// (naming its line number, never its content), when there is no key, or more than
    /// [`MAX_KEYS`](Self::MAX_KEYS).
    pub fn from_secret(secret: &SecretString) -> Result<Self, SessionKeysError> {
        let mut ciphers = Vec::new();
        for (index, line) in secret.expose_secret().lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line.len() < Self::MIN_SECRET_LEN {
                return Err(SessionKeysError::ShortLine { line: index + 1 });
            }
            if ciphers.len() == Self::MAX_KEYS {
                return Err(SessionKeysError::TooManyKeys);
            }
            ciphers.push(derive_cipher(line.as_bytes()));
        }
        if ciphers.is_empty() {
            return Err(SessionKeysError::NoKeys);
        }
        Ok(Self {
            ciphers: ciphers.into(),
        })
    }

    /// How many keys there are (the first seals).
    #[must_use]
    pub fn len(&self) -> usize {
        self.ciphers.len()
    }

    /// Always `false`: [`from_secret`](Self::from_secret) refuses a secret without keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ciphers.is_empty()
    }

    /// Encrypts and authenticates `plaintext` for the cookie `cookie_name`, valid until
    /// `expires_at`: `v1.` and base64url (no padding) of a random 24-byte nonce and the
    /// ciphertext of the expiry and `plaintext`. The cookie name is the associated data, so
    /// the value opens under that name only.
    ///
    /// # Errors
    ///
    /// [`SessionSealError::Expiry`] when `expires_at` is before 1970,
    /// [`SessionSealError::RandomUnavailable`] when the operating system gives no nonce.
    pub fn seal(
        &self,
        cookie_name: &str,
        plaintext: &[u8],
        expires_at: SystemTime,
    ) -> Result<String, SessionSealError> {
        let expiry = expires_at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SessionSealError::Expiry)?
            .as_secs();
        let mut nonce = [0_u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|error| {
            // The error names no foreign type, so getrandom's cause is logged.
            tracing::error!(%error, "no randomness for a session cookie nonce");
            SessionSealError::RandomUnavailable
        })?;
        let mut message = Zeroizing::new(Vec::with_capacity(EXPIRY_LEN + plaintext.len()));
        message.extend_from_slice(&expiry.to_be_bytes());
        message.extend_from_slice(plaintext);
        let aad = associated_data(cookie_name);
        let payload = Payload {
            msg: &message,
            aad: &aad,
        };
        let ciphertext = self.ciphers[0]
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SessionSealError::TooLarge)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(format!(
            "{VERSION_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens a value made by [`seal`](Self::seal) for `cookie_name` with any of the keys,
    /// if it is still valid at `now`. Anything else — another name, another key, a changed,
    /// truncated or expired value, junk — is `None`.
    #[must_use]
    pub fn open(&self, cookie_name: &str, value: &str, now: SystemTime) -> Option<SecretSlice<u8>> {
        let encoded = value.strip_prefix(VERSION_PREFIX)?;
        if encoded.len() > Self::MAX_SEALED_LEN {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        if sealed.len() < NONCE_LEN + TAG_LEN + EXPIRY_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        let aad = associated_data(cookie_name);
        let mut message = self.ciphers.iter().find_map(|cipher| {
            let payload = Payload {
                msg: ciphertext,
                aad: &aad,
            };
            cipher.decrypt(&nonce, payload).ok().map(Zeroizing::new)
        })?;
        let expiry = u64::from_be_bytes(message.get(..EXPIRY_LEN)?.try_into().ok()?);
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        if now >= expiry {
            return None;
        }
        message.drain(..EXPIRY_LEN);
        Some(SecretSlice::from(std::mem::take(&mut *message)))
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.ciphers.len())
            .finish_non_exhaustive()
    }
}

/// The AEAD key of one secret line: HKDF-SHA256 with no salt (the line is the key material
/// itself) and a fixed `info`.
fn derive_cipher(line: &[u8]) -> XChaCha20Poly1305 {
    let mut key = Zeroizing::new([0_u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32, so `expand` cannot fail.
    let _ = Hkdf::<Sha256>::new(None, line).expand(HKDF_INFO, &mut key[..]);
    XChaCha20Poly1305::new(&(*key).into())
}

/// The version and the cookie name, so that a value sealed for one name never opens under
/// another.
fn associated_data(cookie_name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(VERSION_PREFIX.len() + cookie_name.len());
    aad.extend_from_slice(VERSION_PREFIX.as_bytes());
    aad.extend_from_slice(cookie_name.as_bytes());
    aad
}
