//! Hash maps keyed by bytes that are already uniformly random: the SHA-256 digests of
//! `StaticTokens`, the keyed-PRF cache keys of `Cached` and `Jwt`. Their first eight bytes are
//! as good a hash as any, so the maps skip SipHash.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// The first eight bytes of `bytes` (at least eight long), as the key's hash.
pub(crate) fn first_word(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_ne_bytes(word)
}

/// Passes the word a key's `Hash` impl writes (its [`first_word`]) through as the hash.
#[derive(Clone, Copy, Default)]
pub(crate) struct FirstWordHasher(u64);

impl Hasher for FirstWordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached by the keys here, which write one u64; kept correct for any input.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

/// A map by a uniformly random key, hashed by [`FirstWordHasher`].
pub(crate) type UniformMap<K, V> = HashMap<K, V, BuildHasherDefault<FirstWordHasher>>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::*;

    #[derive(PartialEq, Eq)]
    struct Key([u8; 16]);

    impl Hash for Key {
        fn hash<H: Hasher>(&self, state: &mut H) {
            state.write_u64(first_word(&self.0));
        }
    }

    #[test]
    fn the_first_word_is_the_hash_and_equal_words_still_keep_keys_apart() {
        let build = BuildHasherDefault::<FirstWordHasher>::default();
        let key = Key([7; 16]);
        assert_eq!(build.hash_one(&key), u64::from_ne_bytes([7; 8]));
        // Same first word, different tails: one bucket, two entries, each found by equality.
        let mut tail = [7; 16];
        tail[15] = 8;
        let mut map = UniformMap::default();
        map.insert(Key([7; 16]), "a");
        map.insert(Key(tail), "b");
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&Key([7; 16])), Some(&"a"));
        assert_eq!(map.get(&Key(tail)), Some(&"b"));
        let mut other = [7; 16];
        other[8] = 0;
        assert_eq!(map.get(&Key(other)), None);
    }

    #[test]
    fn other_writes_are_still_mixed() {
        let hash = |bytes: &[u8]| {
            let mut hasher = FirstWordHasher::default();
            hasher.write(bytes);
            hasher.finish()
        };
        assert_ne!(hash(b"ab"), hash(b"ba"));
        assert_ne!(hash(b"a"), hash(b"b"));
    }
}
