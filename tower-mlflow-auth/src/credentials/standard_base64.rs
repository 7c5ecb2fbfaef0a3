//! A small, strict decoder for short standard base64, used for `Authorization: Basic` values.
//!
//! It accepts and rejects exactly what `base64::engine::general_purpose::STANDARD.decode_slice`
//! (base64 0.22) does, and writes the same bytes; the tests below check that differentially.
//! The generic engine is built for long inputs (unrolled 32-byte chunks, error positions, three
//! padding modes) and spends ~450 instructions on a 36-character credential; a header value
//! needs none of that, so this is one table lookup per symbol and a single validity check at
//! the end (~240 instructions for the same input, ~18 per further quad).
//!
//! Accepted input (RFC 4648 §4 with canonical padding, no whitespace):
//!
//! - the alphabet `A-Z a-z 0-9 + /` (not the URL-safe `-` `_`);
//! - a length that is a multiple of 4, with `=` only as the last one or two bytes of the last
//!   quad: `xxxx`, `xxx=` or `xx==` (so `x===` and a lone trailing symbol are rejected);
//! - zero unused low bits in the last symbol before padding (`AA==` is accepted, `AB==`, which
//!   would decode to the same byte, is not), so every byte string has exactly one encoding;
//! - the empty input, which decodes to no bytes.

/// The input was not canonical, padded, standard-alphabet base64, or `out` was too short.
///
/// Deliberately carries no position or byte: the input is a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidBase64;

/// [`DECODE`]'s entry for a byte outside the alphabet (`=` included; padding is handled apart).
///
/// Valid entries are a symbol value (0..=63) already shifted into place, so a valid quad packs
/// into the low 24 bits; this sets bit 31. So an OR of packed quads has a bit at or above 24
/// set iff some byte was invalid: one check for the whole input instead of a branch per symbol.
const INVALID: u32 = 1 << 31;

/// `DECODE[i][byte]`: the value of `byte` as the `i`th symbol of a quad, i.e. its 6-bit value
/// shifted left by `18 - 6 * i`, or [`INVALID`].
///
/// Four pre-shifted tables (4 KiB) rather than one 256-byte table: they spare the shifts, and
/// [`pack`] becomes four lookups OR-ed together (~18 instead of ~25 instructions a quad).
/// Full 256-entry tables, so indexing with a `u8` can never be out of bounds.
static DECODE: [[u32; 256]; 4] = {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut tables = [[INVALID; 256]; 4];
    let mut position = 0;
    while position < 4 {
        let mut value: u32 = 0;
        while value < 64 {
            tables[position][ALPHABET[value as usize] as usize] = value << (18 - 6 * position);
            value += 1;
        }
        position += 1;
    }
    tables
};

/// Packs a quad's four symbols, first highest: its three bytes are bits 0..24, and any bit
/// above is an invalid symbol (see [`INVALID`]).
fn pack(s0: u8, s1: u8, s2: u8, s3: u8) -> u32 {
    let [t0, t1, t2, t3] = &DECODE;
    t0[usize::from(s0)] | t1[usize::from(s1)] | t2[usize::from(s2)] | t3[usize::from(s3)]
}

/// Decodes canonical, padded, standard-alphabet base64 `input` into the front of `out` and
/// returns the number of bytes written.
///
/// `out` needs room for the decoded length, which is at most `input.len() / 4 * 3`; a shorter
/// `out` is an error (as it is for `decode_slice`), never a panic. Callers pass a buffer of at
/// least `input.len() / 4 * 3` bytes.
///
/// On error nothing decoded is left behind in `out`: either nothing was written (bad length,
/// short `out`) or the bytes written are overwritten with zeros. The decoded bytes are never
/// copied anywhere but `out`.
///
/// Not constant-time, but the work does not depend on the symbols' values: every quad is
/// decoded and validity is checked once at the end. Only the length and the padding (which
/// the decoded length reveals anyway) choose a path.
///
/// # Errors
///
/// [`InvalidBase64`] if `input` is not accepted (see the module docs) or `out` is shorter
/// than the decoded length.
pub(crate) fn decode(input: &[u8], out: &mut [u8]) -> Result<usize, InvalidBase64> {
    if input.len() % 4 != 0 {
        return Err(InvalidBase64);
    }
    // The last quad is the only one that may hold padding, so it is decoded apart.
    let Some((body, &[s0, s1, s2, s3])) = input.split_last_chunk::<4>() else {
        // A multiple of 4 with no last quad: the empty input.
        return Ok(0);
    };
    // `xx==` -> 2, `xxx=` -> 1, otherwise 0. A `=` anywhere else is simply not a symbol, so the
    // table rejects it: that covers `=` in the body, `x=x=`, `x===`, `====`.
    let pad = usize::from(s3 == b'=') + usize::from(s3 == b'=' && s2 == b'=');

    let body_out_len = body.len() / 4 * 3;
    let decoded_len = body_out_len + 3 - pad;
    let out = out.get_mut(..decoded_len).ok_or(InvalidBase64)?;
    // Cannot fail (decoded_len >= body_out_len); the checked form keeps this panic-free.
    let (body_out, last_out) = out
        .split_at_mut_checked(body_out_len)
        .ok_or(InvalidBase64)?;

    // OR of every packed quad: bits >= 24 flag an invalid byte (see `INVALID`).
    let mut seen = 0;
    for (quad, bytes) in body.chunks_exact(4).zip(body_out.chunks_exact_mut(3)) {
        let packed = pack(quad[0], quad[1], quad[2], quad[3]);
        seen |= packed;
        // Little-endian only so that taking the low three bytes needs no byte swap.
        let [lo, mid, hi, ..] = packed.to_le_bytes();
        bytes[0] = hi;
        bytes[1] = mid;
        bytes[2] = lo;
    }

    // Padding reads as `A` (value 0) and contributes no output bytes.
    let last = pack(
        s0,
        s1,
        if pad == 2 { b'A' } else { s2 },
        if pad == 0 { s3 } else { b'A' },
    );
    seen |= last;
    // The bits below the last output byte (the last symbol's low 2 bits for `xxx=`, low 4 for
    // `xx==`) must be zero, otherwise `AB==` and `AA==` would both decode to [0].
    let stray_bits = last & ((1 << (8 * pad)) - 1);
    let [lo, mid, hi, ..] = last.to_le_bytes();
    for (dst, byte) in last_out.iter_mut().zip([hi, mid, lo]) {
        *dst = byte;
    }

    if seen >> 24 == 0 && stray_bits == 0 {
        Ok(decoded_len)
    } else {
        // Don't leave a (possibly nearly right) decoded password behind.
        out.fill(0);
        Err(InvalidBase64)
    }
}

#[cfg(test)]
mod tests {
    use super::{InvalidBase64, decode as decode_standard};
    // `::` so that the crate, not a module of that name, is meant.
    use ::base64::Engine as _;
    use ::base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    const ALPHABET_AND_PAD: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";

    /// The buffer size callers use, and the one the differential tests use by default.
    fn out_len_for(input: &[u8]) -> usize {
        input.len() / 4 * 3
    }

    /// Decodes `input` with both decoders into `out_len`-byte buffers and asserts the same
    /// verdict and, on success, the same bytes.
    fn assert_same_as_base64(input: &[u8], out_len: usize) {
        let mut ours = vec![0xAA; out_len];
        let mut theirs = vec![0xAA; out_len];
        let our_result = decode_standard(input, &mut ours);
        let their_result = STANDARD.decode_slice(input, &mut theirs);
        match (our_result, their_result) {
            (Ok(n), Ok(m)) => {
                assert_eq!(n, m, "length for {:?}", input.escape_ascii().to_string());
                assert_eq!(
                    ours[..n],
                    theirs[..m],
                    "bytes for {:?}",
                    input.escape_ascii().to_string()
                );
            }
            (Err(InvalidBase64), Err(_)) => {}
            (ours, theirs) => panic!(
                "{:?} (out {out_len}): ours {ours:?}, base64 {theirs:?}",
                input.escape_ascii().to_string()
            ),
        }
    }

    fn decode(input: &str) -> Result<Vec<u8>, InvalidBase64> {
        let mut out = vec![0; out_len_for(input.as_bytes())];
        let n = decode_standard(input.as_bytes(), &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// A byte likely to matter to a decoder: an alphabet symbol or `=` half the time.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![select(ALPHABET_AND_PAD), any::<u8>()]
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(Index, u8),
        Insert(Index, u8),
        Delete(Index),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<Index>().prop_map(Mutation::Delete),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn same_as_base64_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            assert_same_as_base64(&input, out_len_for(&input));
        }

        #[test]
        fn same_as_base64_on_valid_encodings(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let encoded = STANDARD.encode(&data);
            let mut out = vec![0; out_len_for(encoded.as_bytes())];
            let n = decode_standard(encoded.as_bytes(), &mut out);
            prop_assert_eq!(n, Ok(data.len()));
            prop_assert_eq!(&out[..data.len()], &data[..]);
        }

        #[test]
        fn same_as_base64_on_mutated_encodings(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            mutation in mutation(),
        ) {
            let mut encoded = STANDARD.encode(&data).into_bytes();
            match mutation {
                Mutation::Replace(i, b) if !encoded.is_empty() => {
                    let i = i.index(encoded.len());
                    encoded[i] = b;
                }
                Mutation::Insert(i, b) => encoded.insert(i.index(encoded.len() + 1), b),
                Mutation::Delete(i) if !encoded.is_empty() => {
                    encoded.remove(i.index(encoded.len()));
                }
                _ => {}
            }
            assert_same_as_base64(&encoded, out_len_for(&encoded));
        }

        #[test]
        fn same_as_base64_on_alphabet_strings(
            input in proptest::collection::vec(select(ALPHABET_AND_PAD), 0..40),
        ) {
            assert_same_as_base64(&input, out_len_for(&input));
        }

        /// The last quad is where padding and stray bits live: a valid prefix and a random tail.
        #[test]
        fn same_as_base64_on_random_last_quads(
            data in proptest::collection::vec(any::<u8>(), 0..30),
            tail in proptest::collection::vec(interesting_byte(), 0..=5),
        ) {
            let mut input = STANDARD.encode(&data).into_bytes();
            input.extend_from_slice(&tail);
            assert_same_as_base64(&input, out_len_for(&input));
        }

        /// Any `out` length, including exact and too short: same verdict as `decode_slice`.
        #[test]
        fn same_as_base64_for_any_out_len(
            data in proptest::collection::vec(any::<u8>(), 0..40),
            out_len in 0..40_usize,
        ) {
            let encoded = STANDARD.encode(&data);
            assert_same_as_base64(encoded.as_bytes(), out_len);
        }
    }

    /// Every pair of bytes at every pair of positions in a quad (the others `A` or `=`), alone
    /// and after a full quad: all padding shapes and stray-bit values, exhaustively.
    #[test]
    fn same_as_base64_on_all_byte_pairs_in_a_quad() {
        for prefix in [&b""[..], b"AAAA"] {
            for filler in [b'A', b'='] {
                for i in 0..4 {
                    for j in i + 1..4 {
                        for x in 0..=u8::MAX {
                            for y in 0..=u8::MAX {
                                let mut quad = [filler; 4];
                                quad[i] = x;
                                quad[j] = y;
                                let input = [prefix, &quad].concat();
                                assert_same_as_base64(&input, out_len_for(&input));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(decode(""), Ok(vec![]));
        assert_eq!(decode("="), Err(InvalidBase64));
        assert_eq!(decode("=="), Err(InvalidBase64));
        assert_eq!(decode("===="), Err(InvalidBase64));
        assert_eq!(decode("A"), Err(InvalidBase64));
        assert_eq!(decode("A==="), Err(InvalidBase64));
        assert_eq!(decode("AA=="), Ok(vec![0]));
        assert_eq!(
            decode("AA="),
            Err(InvalidBase64),
            "padding must be complete"
        );
        assert_eq!(decode("AA"), Err(InvalidBase64), "padding is required");
        assert_eq!(decode("AA=A"), Err(InvalidBase64));
        assert_eq!(decode("A=A="), Err(InvalidBase64));
        assert_eq!(decode("AB=="), Err(InvalidBase64), "non-zero stray bits");
        assert_eq!(decode("AAA="), Ok(vec![0, 0]));
        assert_eq!(decode("AAB="), Err(InvalidBase64), "non-zero stray bits");
        assert_eq!(decode("AAAA"), Ok(vec![0, 0, 0]));
        assert_eq!(decode("AAAAA"), Err(InvalidBase64));
        assert_eq!(decode("AAAA===="), Err(InvalidBase64), "a quad of padding");
        assert_eq!(
            decode("AA==AAAA"),
            Err(InvalidBase64),
            "padding before the end"
        );
        assert_eq!(decode("/w=="), Ok(vec![0xFF]));
        assert_eq!(decode("//8="), Ok(vec![0xFF, 0xFF]));
        assert_eq!(decode("////"), Ok(vec![0xFF, 0xFF, 0xFF]));
        assert_eq!(decode("YWxpY2U6czNjcjN0"), Ok(b"alice:s3cr3t".to_vec()));
        assert_eq!(
            decode("YWxpY2U6czNjcjN0"),
            Ok(STANDARD.decode("YWxpY2U6czNjcjN0").unwrap())
        );
        // URL-safe alphabet: `-` and `_` stand for `+` and `/`.
        assert_eq!(decode("-w=="), Err(InvalidBase64));
        assert_eq!(decode("_w=="), Err(InvalidBase64));
        assert_eq!(decode("+w=="), Ok(vec![0xFB]));
        // No whitespace anywhere, including a trailing newline.
        for input in [
            "YWxp Y2U6",
            "YWxpY2U6 ",
            " YWxpY2U6",
            "YWxpY2U6\n",
            "YWxp\r\nY2U6",
            "YW\txpY2U6",
        ] {
            assert_eq!(decode(input), Err(InvalidBase64), "{input:?}");
        }
        // Non-ASCII, including bytes whose low 7 bits are alphabet symbols.
        for input in [
            &b"YWx\xC1"[..],
            b"\xE1AAA",
            b"AA\xBD=",
            b"\0AAA",
            b"AAA\x7F",
        ] {
            let mut out = [0; 3];
            assert_eq!(
                decode_standard(input, &mut out),
                Err(InvalidBase64),
                "{input:?}"
            );
        }
    }

    /// A too-short `out` is an error, not a panic, and `out` is left untouched.
    #[test]
    fn short_out_is_an_error() {
        for data in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"alice:s3cr3t",
            b"bench:bench-password-2f9c41",
        ] {
            let encoded = STANDARD.encode(data);
            for len in 0..data.len() {
                let mut out = vec![0xAA; len];
                assert_eq!(
                    decode_standard(encoded.as_bytes(), &mut out),
                    Err(InvalidBase64)
                );
                assert!(out.iter().all(|&b| b == 0xAA), "out written for {len}");
            }
            // The exact decoded length suffices.
            let mut out = vec![0; data.len()];
            assert_eq!(
                decode_standard(encoded.as_bytes(), &mut out),
                Ok(data.len())
            );
            assert_eq!(out, data);
        }
        // Invalid input and an empty or short `out`: still just an error.
        for input in [&b"===="[..], b"AAAAA", b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF"] {
            assert_eq!(decode_standard(input, &mut []), Err(InvalidBase64));
            assert_eq!(decode_standard(input, &mut [0; 2]), Err(InvalidBase64));
        }
    }

    /// On an error after decoding, the almost-right password is wiped from `out`.
    #[test]
    fn error_leaves_no_decoded_bytes() {
        // Valid up to a stray bit in the last quad.
        let mut out = [0xAA; 15];
        assert_eq!(
            decode_standard(b"YWxpY2U6czNjcjN0AB==", &mut out),
            Err(InvalidBase64)
        );
        assert_eq!(out[..13], [0; 13]);
        assert_eq!(
            out[13..],
            [0xAA; 2],
            "nothing written past the decoded length"
        );
    }
}
