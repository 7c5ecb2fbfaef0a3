//! The cache keys of `Cached` and of `Jwt`'s verified-token cache: a keyed PRF of the
//! credential under a random per-cache secret, never the credential itself.
//!
//! Two PRFs, each the cheaper one for its input on x86-64 with SHA-NI and AES-NI/CLMUL
//! (criterion `breakdown/cache_key_*`, BENCHMARKS.md):
//!
//! - credentials of `Cached` (a Basic username and password, an API key: tens of bytes):
//!   SipHash-2-4 with its 128-bit output (Aumasson and Bernstein, "SipHash: a fast
//!   short-input PRF", 2012) under a random 128-bit key, ~0.03 µs for a 40-byte credential.
//!   HMAC-SHA256 from a precomputed key state took ~0.14 µs even with SHA-NI (two SHA-256
//!   blocks), the largest single cost of a cached Basic request; AES-128-CMAC (RustCrypto,
//!   runtime-detected AES-NI) ~0.09 µs.
//! - bearer JWTs of `Jwt` (hundreds of bytes to kilobytes): the tag of AES-256-GCM-SIV
//!   (RFC 8452) with an empty plaintext and the token as associated data, by aws-lc-rs (which
//!   `jwt` already builds for jsonwebtoken): POLYVAL runs at a fraction of a cycle per byte,
//!   ~0.2 µs for a 531-byte RS256 token against ~0.49 µs for HMAC-SHA256 with SHA-NI.
//!
//! GCM-SIV is misuse-resistant: with its one nonce fixed, sealing is deterministic and
//! reveals nothing but whether two inputs are equal, which is what a cache key is. Keyed
//! BLAKE3 was measured too and is slower here for both (one 1 KiB chunk, so its SIMD lanes
//! stay idle: 0.56 µs for the token, 0.08–0.13 µs for a Basic credential). SipHash costs
//! ~0.4 ns a byte, so for a 531-byte token GCM-SIV stays the faster one.
//!
//! Why SipHash is enough for credentials: a key is never shown to anyone, so an attacker
//! learns about it only whether a request was answered from the cache, one request per
//! guess. Finding a credential that collides with a cached one, without knowing the secret
//! key, then takes ~2^128 / n requests for n cached entries; recovering the key is the
//! 128-bit security SipHash is designed for.

use std::{
    fmt,
    hash::{Hash, Hasher},
};

#[cfg(feature = "cache")]
use siphasher::sip128::{Hasher128, SipHasher24};

use crate::authenticators::uniform_key::{UniformMap, first_word};
#[cfg(feature = "cache")]
use crate::credentials::{CredentialsRef, Scheme};

/// The length of a [`CacheKey`]: 128 bits, a GCM-SIV tag and a SipHash-128 output. Nobody
/// outside can compute a key, so finding a credential that shares one with a cached
/// credential takes ~2^128 guesses, each a request.
const KEY_LEN: usize = 16;

/// A keyed PRF of a credential under the cache's private secret.
///
/// Compared with `==` in the maps: the bytes are a keyed PRF of the credential, not the
/// credential, and an attacker cannot compute them, so timing reveals nothing usable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheKey([u8; KEY_LEN]);

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Derived from a secret; no reason to print it.
        f.pad("CacheKey(..)")
    }
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The key is already uniformly random (a PRF under a secret key): 8 of its bytes are
        // as good a hash as any, and nobody outside can choose them to collide.
        state.write_u64(first_word(&self.0));
    }
}

/// A map by [`CacheKey`] that skips rehashing the (already random) key.
pub(crate) type KeyMap<V> = UniformMap<CacheKey, V>;

/// Why a cache's key could not be made.
#[derive(Debug)]
pub(crate) enum KeyMacError {
    /// The operating system's random number generator failed.
    Random(getrandom::Error),
    /// aws-lc-rs refused the AES-256-GCM-SIV key (it takes any 32 bytes: not expected).
    #[cfg(feature = "jwt")]
    Cipher,
}

impl fmt::Display for KeyMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Random(error) => write!(f, "no randomness for the cache key: {error}"),
            #[cfg(feature = "jwt")]
            Self::Cipher => f.pad("the AES-256-GCM-SIV cache key was refused"),
        }
    }
}

impl std::error::Error for KeyMacError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Random(error) => Some(error),
            #[cfg(feature = "jwt")]
            Self::Cipher => None,
        }
    }
}

/// Turns credentials ([`key_for`](Self::key_for), for `Cached`) and bearer tokens
/// ([`key_for_token`](Self::key_for_token), for `Jwt`) into [`CacheKey`]s, under random keys
/// drawn once per cache, one for each PRF.
pub(crate) struct KeyMac {
    #[cfg(feature = "cache")]
    credentials: SipHasher24,
    #[cfg(feature = "jwt")]
    tokens: aws_lc_rs::aead::LessSafeKey,
}

impl KeyMac {
    /// Draws fresh random keys from the operating system.
    pub(crate) fn random() -> Result<Self, KeyMacError> {
        // Independent halves: each PRF gets its own key (SipHash takes 16 bytes of its half,
        // AES-256-GCM-SIV all 32).
        let mut secret = zeroize::Zeroizing::new([0_u8; 64]);
        getrandom::fill(&mut secret[..]).map_err(KeyMacError::Random)?;
        Ok(Self {
            #[cfg(feature = "cache")]
            credentials: {
                let mut key = zeroize::Zeroizing::new([0_u8; 16]);
                key.copy_from_slice(&secret[..16]);
                SipHasher24::new_with_key(&key)
            },
            #[cfg(feature = "jwt")]
            tokens: {
                use aws_lc_rs::aead::{AES_256_GCM_SIV, LessSafeKey, UnboundKey};
                let key = UnboundKey::new(&AES_256_GCM_SIV, &secret[32..])
                    .map_err(|_| KeyMacError::Cipher)?;
                LessSafeKey::new(key)
            },
        })
    }

    /// The cache key of credentials: SipHash-2-4-128(key, scheme ‖ len(name) ‖ name ‖ secret),
    /// the length as 8 bytes big-endian.
    ///
    /// The name is length-prefixed so that no (name, secret) pair can collide with another
    /// by moving bytes across the boundary (a Basic username may contain a NUL byte).
    #[cfg(feature = "cache")]
    pub(crate) fn key_for(&self, credentials: &CredentialsRef<'_>) -> CacheKey {
        let (scheme, name): (u8, &[u8]) = match credentials.scheme() {
            Scheme::Basic => (1, credentials.username_bytes().unwrap_or_default()),
            Scheme::Bearer => (2, b""),
            // `Scheme` is non-exhaustive for users only; a new one gets its own number here.
            Scheme::Header | Scheme::Session => (
                3,
                credentials
                    .header_name()
                    .map_or(&b""[..], |name| name.as_str().as_bytes()),
            ),
        };
        let secret = credentials.secret_bytes();
        let name_len = u64::try_from(name.len()).unwrap_or(u64::MAX);
        let mut head = [scheme; 9];
        head[1..].copy_from_slice(&name_len.to_be_bytes());
        // `Hasher::write` only: it streams the bytes as given, with no length prefixes of its
        // own (those of `Hash` impls), so the input is exactly the framing above. Three
        // writes, not one a field: each one that ends mid-word is carried into the next.
        let mut mac = self.credentials;
        Hasher::write(&mut mac, &head);
        Hasher::write(&mut mac, name);
        Hasher::write(&mut mac, secret);
        CacheKey(mac.finish128().as_bytes())
    }

    /// The cache key of a bearer token: the AES-256-GCM-SIV tag of an empty message with the
    /// whole token as associated data, under a fixed nonce.
    ///
    /// `None` only if aws-lc-rs refuses to seal, which it does for associated data over
    /// 2^36 bytes (a token is at most 8 KiB): the token is then verified, not cached.
    #[cfg(feature = "jwt")]
    pub(crate) fn key_for_token(&self, token: &str) -> Option<CacheKey> {
        use aws_lc_rs::aead::{Aad, Nonce};
        // One nonce for every token is what makes the tag a deterministic PRF of the token;
        // GCM-SIV is designed to stay secure when nonces repeat (RFC 8452 §1).
        let nonce = Nonce::assume_unique_for_key([0; 12]);
        let tag = self
            .tokens
            .seal_in_place_separate_tag(nonce, Aad::from(token.as_bytes()), &mut [])
            .ok()?;
        let mut key = [0; KEY_LEN];
        key.copy_from_slice(tag.as_ref().get(..KEY_LEN)?);
        Some(CacheKey(key))
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::{CacheKey, KEY_LEN, KeyMap};

    #[test]
    fn the_hash_is_the_first_eight_bytes_of_the_key() {
        let mut bytes = [0xAA; KEY_LEN];
        bytes[..8].copy_from_slice(&7_u64.to_ne_bytes());
        let build = KeyMap::<()>::default().hasher().clone();
        assert_eq!(build.hash_one(CacheKey(bytes)), 7);
        // Bytes past the eighth do not change the hash, and so do not cost anything.
        bytes[KEY_LEN - 1] = 0;
        assert_eq!(build.hash_one(CacheKey(bytes)), 7);
    }

    #[test]
    fn debug_hides_the_key_bytes() {
        assert_eq!(format!("{:?}", CacheKey([0x42; KEY_LEN])), "CacheKey(..)");
    }

    #[cfg(feature = "cache")]
    #[test]
    fn a_credential_key_is_siphash_2_4_128_of_exactly_the_framed_bytes() {
        use siphasher::sip128::SipHasher24;

        use super::KeyMac;
        use crate::credentials::Credentials;

        let mac = KeyMac::random().unwrap();
        let credentials = Credentials::Basic {
            username: "alice".into(),
            password: secrecy::SecretString::from("s3cr3t"),
        };
        // scheme 1 (Basic) ‖ the name's length, 8 bytes big-endian ‖ name ‖ secret.
        let mut framed = vec![1];
        framed.extend_from_slice(&5_u64.to_be_bytes());
        framed.extend_from_slice(b"alices3cr3t");
        let expected = SipHasher24::new_with_key(&mac.credentials.key()).hash(&framed);
        assert_eq!(
            mac.key_for(&credentials.borrowed()),
            CacheKey(expected.as_bytes())
        );
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn token_keys_cover_the_whole_token_and_only_it() {
        use super::KeyMac;

        let mac = KeyMac::random().unwrap();
        let key = |token: &str| mac.key_for_token(token).unwrap();
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert_eq!(key(token), key(token), "deterministic");
        // Any byte counts, the first, one in the middle and the last; and the length.
        let mut keys = vec![key(token)];
        for at in [0, token.len() / 2, token.len() - 1] {
            let mut changed = token.as_bytes().to_vec();
            changed[at] ^= 1;
            keys.push(key(std::str::from_utf8(&changed).unwrap()));
        }
        keys.push(key(&token[..token.len() - 1]));
        keys.push(key(&format!("{token}A")));
        keys.push(key(""));
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The longest header a token can come in is still keyed.
        assert!(
            mac.key_for_token(&"a".repeat(crate::credentials::MAX_CREDENTIALS_HEADER_LEN))
                .is_some()
        );
        // Another cache, another random key.
        assert_ne!(
            KeyMac::random().unwrap().key_for_token(token),
            Some(key(token))
        );
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn key_errors_name_the_cause_and_keep_it_as_source() {
        use std::error::Error as _;

        let cipher = super::KeyMacError::Cipher;
        assert!(cipher.to_string().contains("AES-256-GCM-SIV"));
        assert!(cipher.source().is_none());
    }
}
