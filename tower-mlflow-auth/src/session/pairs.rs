//! Reading `name=value` pairs from a request's `Cookie` headers.

use http::{HeaderMap, HeaderValue, header::COOKIE};

/// Every `name=value` pair of every `Cookie` header, in order. Pairs without `=`, with an
/// empty name, or that are not UTF-8 are skipped, so one junk cookie hides no other.
pub(super) fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            let (name, value) = pair.split_once('=')?;
            let name = name.trim_matches([' ', '\t']);
            let value = value.trim_matches([' ', '\t']);
            // RFC 6265 §4.1.1 allows the value in double quotes.
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (!name.is_empty()).then_some((name, value))
        })
}

/// Removes from `headers`' `Cookie` headers every pair whose name `drop` matches, keeping the
/// others (junk included) byte for byte; a header left empty is removed.
pub(super) fn remove_pairs(headers: &mut HeaderMap, drop: impl Fn(&str) -> bool) {
    let dropped = |pair: &[u8]| {
        std::str::from_utf8(pair)
            .ok()
            .and_then(|pair| pair.split_once('='))
            .is_some_and(|(name, _)| drop(name.trim_matches([' ', '\t'])))
    };
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| {
            let pairs: Vec<&[u8]> = value
                .as_bytes()
                .split(|&b| b == b';')
                .filter(|pair| !dropped(pair))
                .map(<[u8]>::trim_ascii)
                .filter(|pair| !pair.is_empty())
                .collect();
            let mut kept = HeaderValue::from_bytes(&pairs.join(&b"; "[..])).ok()?;
            kept.set_sensitive(true);
            (!pairs.is_empty()).then_some(kept)
        })
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        headers.append(COOKIE, value);
    }
}
