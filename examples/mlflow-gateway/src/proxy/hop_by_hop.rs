//! Hop-by-hop headers (RFC 9110 §7.6.1): what a proxy must not pass on, in either direction.

use http::{HeaderMap, HeaderName, header};

// Names, not strings: a string is parsed into a name on every call.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop headers of RFC 9110 §7.6.1 (with `Keep-Alive` and `Proxy-Connection`,
/// which clients still send), besides those a `Connection` header names.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    KEEP_ALIVE,
    PROXY_CONNECTION,
];

/// Where `name` is in [`HOP_BY_HOP`], if it is. Names are lowercase, and few have the length
/// of a hop-by-hop one, so most headers (`host`, `accept`, `content-type`, …) are told apart by
/// their length alone, without comparing them with nine names.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let name = name.as_str();
    let candidates: &[usize] = match name.len() {
        2 => &[1],     // te
        7 => &[2, 4],  // trailer, upgrade
        10 => &[0, 7], // connection, keep-alive
        16 => &[8],    // proxy-connection
        17 => &[3],    // transfer-encoding
        18 => &[6],    // proxy-authenticate
        19 => &[5],    // proxy-authorization
        _ => return None,
    };
    candidates
        .iter()
        .copied()
        .find(|&at| HOP_BY_HOP[at].as_str() == name)
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1, including those named in `Connection`.
///
/// This runs on every request and response, so it looks before it removes: one pass over
/// the few names a message carries (most are told apart by their length) finds which
/// of [`HOP_BY_HOP`] are there, and only those are removed (a removal hashes the name even
/// when it finds nothing). A `Connection` option is matched against the names present,
/// case-insensitively, so `Connection: keep-alive` costs no allocation; only an option naming
/// some other header that is present collects it.
pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    /// `Connection` options matched against the names present; later ones are parsed.
    const MATCHED_OPTIONS: usize = 8;
    let mut present = 0_u16;
    for name in headers.keys() {
        if let Some(at) = hop_by_hop_index(name) {
            present |= 1 << at;
        }
    }
    if present == 0 {
        return;
    }
    // HOP_BY_HOP[0] is `Connection`.
    let mut named: Vec<HeaderName> = Vec::new();
    if present & 1 != 0 {
        let options = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim);
        for (index, option) in options.enumerate() {
            // Past a few options, parse each into a name instead, as the removal needs: a
            // scan of the names per option would let a long `Connection` cost its length
            // times the number of headers.
            if index >= MATCHED_OPTIONS {
                named.extend(HeaderName::try_from(option).ok());
                continue;
            }
            let Some(name) = headers
                .keys()
                .find(|name| name.as_str().eq_ignore_ascii_case(option))
            else {
                continue;
            };
            match hop_by_hop_index(name) {
                Some(at) => present |= 1 << at,
                None => named.push(name.clone()),
            }
        }
    }
    for (at, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << at) != 0 {
            headers.remove(name);
        }
    }
    for name in named {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn hop_by_hop_index_finds_each_hop_by_hop_name_and_nothing_else() {
        for (at, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(at), "{name}");
            // Parsed from the wire in any case, as a custom or a standard name.
            let parsed = HeaderName::from_bytes(name.as_str().to_uppercase().as_bytes()).unwrap();
            assert_eq!(hop_by_hop_index(&parsed), Some(at), "{name}");
        }
        // Names of the same lengths that are not hop-by-hop, standard and custom ones.
        for name in [
            "tk",
            "x-a",
            "referer",
            "expires",
            "user-agent",
            "keep-alivf",
            "connectiom",
            "content-location",
            "proxy-connectiox",
            "transfer-encodinh",
            "x-forwarded-proto",
            "proxy-authenticatf",
            "proxy-authorizatiom",
            "access-control-allow-origin",
            "host",
            "accept",
            "authorization",
            "content-type",
            "content-length",
            "date",
            "x",
        ] {
            let name = HeaderName::from_static(name);
            assert_eq!(hop_by_hop_index(&name), None, "{name}");
        }
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_options_go_in_any_case_and_spacing_and_others_stay() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" Keep-Alive ,X-Named\t, close,, x-absent"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("X-OTHER"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-named", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("2"));
        h.insert("close", HeaderValue::from_static("3"));
        h.insert("x-kept", HeaderValue::from_static("4"));
        h.insert(header::HOST, HeaderValue::from_static("gw"));
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-kept"]);
        // A `Connection` option may name a header the gateway must keep hop to hop as well.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("host"));
        h.insert(header::HOST, HeaderValue::from_static("gw"));
        remove_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn a_long_connection_header_still_names_what_goes() {
        let mut h = HeaderMap::new();
        let options: Vec<String> = (0..40).map(|i| format!("X-Opt-{i}")).collect();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_str(&options.join(", ")).unwrap(),
        );
        for i in (0..40).step_by(3) {
            h.insert(
                HeaderName::try_from(format!("x-opt-{i}")).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        h.insert("x-opt-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-opt-kept"]);
    }

    #[test]
    fn each_hop_by_hop_header_goes_alone_and_with_every_value() {
        for name in &HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.append(name, HeaderValue::from_static("a"));
            h.append(name, HeaderValue::from_static("b"));
            h.insert("x-kept", HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut h);
            assert!(!h.contains_key(name), "{name} kept");
            assert_eq!(h.len(), 1, "{name}");
        }
        // Spelled in capitals by the client, as `Keep-Alive` usually is: names are lower case.
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(b"Keep-Alive").unwrap(),
            HeaderValue::from_static("timeout=5"),
        );
        remove_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }
}
