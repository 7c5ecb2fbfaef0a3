//! MD5-crypt, the algorithm behind Apache's `$apr1$` and glibc's `$1$` (no crate implements
//! APR1; it is a few lines on `md-5`).

use md5::{Digest as _, Md5};

use super::hash::CRYPT_ALPHABET;

/// MD5-crypt as written by Poul-Henning Kamp and used by Apache for `$apr1$` (APR's
/// `apr_md5_encode`) and by glibc for `$1$`; only the magic prefix differs.
pub(super) fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> [u8; 16] {
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
pub(super) fn encode_md5_crypt(digest: &[u8; 16]) -> [u8; 22] {
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
