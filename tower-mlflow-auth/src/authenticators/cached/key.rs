//! The cache key: a keyed MAC of the credential, never the credential itself. The code is
//! shared with `Jwt`'s token cache, in `authenticators::cache_key`.

pub(super) use crate::authenticators::cache_key::{CacheKey, KeyMac, KeyMap};
