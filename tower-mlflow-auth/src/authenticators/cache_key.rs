//! The cache key of `Cached` and of `Jwt`'s verified-token cache: a keyed MAC of the
//! credential, never the credential itself.

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasherDefault, Hash, Hasher},
};

use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::credentials::Credentials;

/// HMAC-SHA256 of a credential under the cache's private key.
///
/// Compared with `==` in the maps: the bytes are a keyed MAC of the credential, not the
/// credential, and an attacker cannot compute them, so timing reveals nothing usable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheKey([u8; 32]);

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Derived from a secret; no reason to print it.
        f.pad("CacheKey(..)")
    }
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The key is already uniformly random (a MAC under a secret key): 8 of its bytes are
        // as good a hash as any, and nobody outside can choose them to collide.
        let mut word = [0; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(word));
    }
}

/// Passes [`CacheKey`]'s own bytes through as the hash.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached by `CacheKey`, which writes one u64; kept correct for any input.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

/// A map by [`CacheKey`] that skips rehashing the (already random) key.
pub(crate) type KeyMap<V> = HashMap<CacheKey, V, BuildHasherDefault<KeyHasher>>;

/// Turns credentials into [`CacheKey`]s under a random key drawn once per cache.
pub(crate) struct KeyMac(Hmac<Sha256>);

impl KeyMac {
    /// Draws a fresh random key from the operating system.
    pub(crate) fn random() -> Result<Self, getrandom::Error> {
        // 32 random bytes, zero-padded to SHA-256's 64-byte block: exactly what HMAC does with
        // a 32-byte key (RFC 2104), through the constructor that cannot fail.
        let mut secret_key = zeroize::Zeroizing::new([0_u8; 64]);
        getrandom::fill(&mut secret_key[..32])?;
        Ok(Self(<Hmac<Sha256> as KeyInit>::new(&(*secret_key).into())))
    }

    /// The cache key: HMAC(key, scheme ‖ len(name) ‖ name ‖ 0 ‖ secret).
    ///
    /// The name is length-prefixed so that no (name, secret) pair can collide with another
    /// by moving bytes across the boundary (a Basic username may contain a NUL byte).
    pub(crate) fn key_for(&self, credentials: &Credentials) -> CacheKey {
        let (scheme, name, secret): (u8, &[u8], &str) = match credentials {
            Credentials::Basic { username, password } => {
                (1, username.as_bytes(), password.expose_secret())
            }
            Credentials::Bearer { token } => (2, b"", token.expose_secret()),
            Credentials::Header { name, value } => {
                (3, name.as_str().as_bytes(), value.expose_secret())
            }
        };
        let name_len = u64::try_from(name.len()).unwrap_or(u64::MAX);
        let mut mac = self.0.clone();
        mac.update(&[scheme]);
        mac.update(&name_len.to_be_bytes());
        mac.update(name);
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        CacheKey(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hasher};

    use super::{CacheKey, KeyHasher, KeyMap};

    #[test]
    fn the_hash_is_the_first_eight_bytes_of_the_key() {
        let mut bytes = [0xAA; 32];
        bytes[..8].copy_from_slice(&7_u64.to_ne_bytes());
        let build = KeyMap::<()>::default().hasher().clone();
        assert_eq!(build.hash_one(CacheKey(bytes)), 7);
        // Bytes past the eighth do not change the hash, and so do not cost anything.
        bytes[31] = 0;
        assert_eq!(build.hash_one(CacheKey(bytes)), 7);
    }

    #[test]
    fn the_hasher_still_mixes_arbitrary_bytes() {
        let hash = |bytes: &[u8]| {
            let mut hasher = KeyHasher::default();
            hasher.write(bytes);
            hasher.finish()
        };
        assert_ne!(hash(b"ab"), hash(b"ba"));
        assert_ne!(hash(b"a"), hash(b"b"));
    }

    #[test]
    fn debug_hides_the_key_bytes() {
        assert_eq!(format!("{:?}", CacheKey([0x42; 32])), "CacheKey(..)");
    }
}
