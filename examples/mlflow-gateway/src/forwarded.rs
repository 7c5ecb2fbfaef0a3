//! The forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`): what a client may
//! claim about the connection, and what the gateway tells the upstream instead.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
};

use http::{HeaderMap, HeaderName, HeaderValue, request::Parts};
use ipnet::IpNet;
use tower_mlflow_auth::throttle::{ClientKey, IpKey};

use crate::proxy::PeerAddr;

/// A network whose peers are proxies allowed to pass on the forwarding headers they received
/// (`--trusted-proxies`): a CIDR such as `10.0.0.0/8` or `fd00::/8`, or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

impl TrustedProxy {
    /// Whether `ip` (an IPv4-mapped IPv6 address counts as IPv4) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for TrustedProxy {
    type Err = InvalidTrustedProxy;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let trimmed = entry.trim();
        trimmed
            .parse::<IpNet>()
            .or_else(|_| trimmed.parse::<IpAddr>().map(IpNet::from))
            .map(|net| Self(net.trunc()))
            .map_err(|_| InvalidTrustedProxy {
                entry: entry.to_owned(),
            })
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A `--trusted-proxies` entry that is neither a CIDR nor an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTrustedProxy {
    entry: String,
}

impl fmt::Display for InvalidTrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid trusted proxy {:?}: expected a CIDR such as 10.0.0.0/8 or fd00::/8, or an IP address",
            self.entry
        )
    }
}

impl std::error::Error for InvalidTrustedProxy {}

// The names the gateway writes, as names: a string is parsed into a name on every use.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Who the user is, as the gateway tells the upstream (the default `--user-header`).
pub(crate) const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
/// The principal's `email` attribute, as the gateway tells the upstream.
pub(crate) const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// The principal's `groups` attribute (comma-separated), as the gateway tells the upstream.
pub(crate) const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");

/// The headers through which a client describes the connection, lower case with `-`.
const FORWARDING: [&str; 10] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-proto",
    "x-forwarded-uri",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
];

/// Whether two header names are the same once `_` is read as `-` (WSGI/ASGI environ) and
/// case is ignored. Compared byte by byte: this runs for every header of every request.
fn same_spelling(a: &str, b: &str) -> bool {
    let fold = |byte: u8| {
        if byte == b'_' {
            b'-'
        } else {
            byte.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Removes every header whose name equals one of `names` once `_` is read as `-` and case is
/// ignored, in one pass over the headers.
pub(crate) fn remove_all_spellings(headers: &mut HeaderMap, names: &[&str]) {
    remove_matching(headers, |candidate| {
        names.iter().any(|name| same_spelling(candidate, name))
    });
}

/// Removes every header whose name `matches`; allocates only when there is one to remove.
fn remove_matching(headers: &mut HeaderMap, matches: impl Fn(&str) -> bool) {
    if !headers.keys().any(|candidate| matches(candidate.as_str())) {
        return;
    }
    let matching: Vec<HeaderName> = headers
        .keys()
        .filter(|candidate| matches(candidate.as_str()))
        .cloned()
        .collect();
    for candidate in matching {
        headers.remove(candidate);
    }
}

/// What the gateway knows about the connection it accepted.
pub(crate) struct Hop<'a> {
    /// The peer's address as `X-Forwarded-For` writes it ([`peer_text`]).
    pub(crate) peer: Option<&'a HeaderValue>,
    /// Whether the peer is a trusted proxy.
    pub(crate) trusted: bool,
    /// `http` or `https`, as accepted.
    pub(crate) proto: &'a HeaderValue,
    /// The authority the client asked for (`:authority`, absolute-form or `Host`).
    pub(crate) host: Option<HeaderValue>,
}

/// Rewrites the forwarding headers. From an untrusted peer every client copy goes (in every
/// spelling) and the gateway's own replace them; from a trusted proxy its exact-spelled
/// headers stay, the peer is appended to `X-Forwarded-For`, and proto and host are set only
/// when the proxy did not.
pub(crate) fn rewrite(headers: &mut HeaderMap, hop: &Hop<'_>) {
    let mut kept = HeaderMap::new();
    if hop.trusted {
        for name in FORWARDING {
            for value in headers.get_all(name) {
                kept.append(HeaderName::from_static(name), value.clone());
            }
        }
    }
    // One pass over the headers for all ten names.
    remove_matching(headers, |candidate| {
        FORWARDING.iter().any(|name| same_spelling(candidate, name))
    });
    let earlier: Vec<&str> = kept
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let chain = match (hop.peer, earlier.is_empty()) {
        // The common case, a client straight from the internet: the peer's text as it is.
        (Some(peer), true) => Some(peer.clone()),
        (None, true) => None,
        (peer, false) => {
            let mut chain = earlier.join(", ");
            if let Some(peer) = peer {
                chain.push_str(", ");
                chain.push_str(&String::from_utf8_lossy(peer.as_bytes()));
            }
            HeaderValue::try_from(chain).ok()
        }
    };
    kept.remove(X_FORWARDED_FOR);
    for (name, value) in kept.iter() {
        headers.append(name.clone(), value.clone());
    }
    if let Some(value) = chain {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, hop.proto.clone());
    }
    if !headers.contains_key(X_FORWARDED_HOST)
        && let Some(host) = &hop.host
    {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
}

/// The peer `ip` as `X-Forwarded-For` names it (an IPv4-mapped IPv6 address as IPv4), for
/// [`Hop::peer`]. The proxy keeps it for the connection's later requests.
pub(crate) fn peer_text(ip: IpAddr) -> HeaderValue {
    let text = ip_text(ip.to_canonical());
    // An address's text is always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An address as `Display` writes it, IPv4 without the formatting machinery (`to_string` on
/// an `Ipv4Addr` costs more than the whole header rewrite: ~2,000 instructions under
/// callgrind, against ~100).
fn ip_text(ip: IpAddr) -> String {
    let mut text = Vec::with_capacity(IPV6_TEXT_MAX);
    write_ip(&mut text, ip);
    String::from_utf8(text).unwrap_or_default()
}

/// The longest text of an address: an IPv6 address with an embedded IPv4 one.
const IPV6_TEXT_MAX: usize = 45;

/// `ip` as `Display` writes it, IPv4 digit by digit (`fmt`'s integer and padding machinery
/// costs more than the rest of the header rewrite, or of an access line).
pub(crate) fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        // Writing to a Vec cannot fail.
        let _ = std::io::Write::write_fmt(out, format_args!("{ip}"));
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// The client's address after `--trusted-proxies`: the peer's, unless the peer is a trusted
/// proxy; then, walking its `X-Forwarded-For` from the right (the hop it added last), the
/// first address that is not a trusted proxy. An entry that is not an address stops the walk
/// at the hop that passed it on, so a client never gets to choose. Without a peer (a service
/// called outside the server loop): `0.0.0.0`.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[TrustedProxy],
) -> IpAddr {
    let Some(mut client) = peer.map(|ip| ip.to_canonical()) else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let hops: Vec<&[u8]> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .collect();
    for hop in hops.into_iter().rev() {
        if !is_trusted(client) {
            break;
        }
        match parse_hop(hop) {
            Some(ip) => client = ip.to_canonical(),
            None => break,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

/// The failed-login throttle's key: the [`client_ip`] of the request, IPv6 by its /64.
#[derive(Clone, Debug)]
pub(crate) struct ClientIpKey {
    trusted: Arc<[TrustedProxy]>,
}

impl ClientIpKey {
    pub(crate) fn new(trusted: &[TrustedProxy]) -> Self {
        Self {
            trusted: trusted.into(),
        }
    }
}

impl ClientKey for ClientIpKey {
    type Key = IpKey;

    fn client_key(&self, parts: &Parts) -> IpKey {
        let peer = parts
            .extensions
            .get::<PeerAddr>()
            .map(|PeerAddr(peer)| peer.ip());
        IpKey::from(client_ip(peer, &parts.headers, &self.trusted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, forwarded_for: &[&str]) -> String {
        let trusted: Vec<TrustedProxy> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        for value in forwarded_for {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        client_ip(Some(peer.parse().unwrap()), &headers, &trusted).to_string()
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        // An untrusted peer's claims are ignored.
        assert_eq!(client("192.0.2.9", &["1.2.3.4"]), "192.0.2.9");
        assert_eq!(client("::ffff:192.0.2.9", &[]), "192.0.2.9");
        // Behind trusted proxies: the last address they did not add themselves.
        assert_eq!(client("10.0.0.1", &["1.2.3.4, 192.0.2.9"]), "192.0.2.9");
        assert_eq!(
            client("10.0.0.1", &["6.6.6.6, 192.0.2.9, 10.0.0.2"]),
            "192.0.2.9"
        );
        assert_eq!(
            client("10.0.0.1", &["6.6.6.6", "192.0.2.9:4711"]),
            "192.0.2.9"
        );
        // Garbage stops the walk at the proxy that passed it on.
        assert_eq!(client("10.0.0.1", &["1.2.3.4, nonsense"]), "10.0.0.1");
        assert_eq!(
            client("10.0.0.1", &["1.2.3.4, 10.0.0.2, junk, 10.0.0.3"]),
            "10.0.0.3"
        );
        // Only trusted hops, or none: the nearest trusted one.
        assert_eq!(client("10.0.0.1", &["10.0.0.5"]), "10.0.0.5");
        assert_eq!(client("10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(
            client_ip(None, &HeaderMap::new(), &[]).to_string(),
            "0.0.0.0"
        );
    }

    #[test]
    fn the_throttle_key_reads_the_peer_from_the_extensions() {
        let key = ClientIpKey::new(&["10.0.0.0/8".parse().unwrap()]);
        let (mut parts, ()) = http::Request::get("/")
            .header("x-forwarded-for", "2001:db8::1")
            .body(())
            .unwrap()
            .into_parts();
        parts
            .extensions
            .insert(PeerAddr("10.0.0.7:5000".parse().unwrap()));
        assert_eq!(key.client_key(&parts).to_string(), "2001:db8::/64");
    }

    fn spoofed() -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_for", "5.5.5.5"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-prefix", "/evil"),
            ("x-forwarded-proto", "https"),
            ("x-original-url", "/admin"),
            ("x-kept", "1"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    /// The peer of these tests, `::ffff:10.0.0.7`, as [`Hop::peer`].
    fn peer() -> HeaderValue {
        peer_text("::ffff:10.0.0.7".parse().unwrap())
    }

    fn hop<'a>(trusted: bool, proto: &'a HeaderValue, peer: &'a HeaderValue) -> Hop<'a> {
        Hop {
            peer: Some(peer),
            trusted,
            proto,
            host: Some(HeaderValue::from_static("gw.example")),
        }
    }

    #[test]
    fn an_untrusted_peer_claims_nothing() {
        let proto = HeaderValue::from_static("http");
        let mut headers = spoofed();
        rewrite(&mut headers, &hop(false, &proto, &peer()));
        let mut seen: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        seen.sort();
        let expected = [
            ("x-forwarded-for", "10.0.0.7"),
            ("x-forwarded-host", "gw.example"),
            ("x-forwarded-proto", "http"),
            ("x-kept", "1"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_trusted_proxy_keeps_its_chain() {
        let proto = HeaderValue::from_static("http");
        let mut headers = spoofed();
        headers.append("x-forwarded-for", HeaderValue::from_static("9.9.9.9"));
        rewrite(&mut headers, &hop(true, &proto, &peer()));
        assert_eq!(
            headers["x-forwarded-for"], "1.2.3.4, 9.9.9.9, 10.0.0.7",
            "the underscore spelling never counts"
        );
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "evil.example");
        assert_eq!(headers["forwarded"], "for=6.6.6.6");
        assert!(!headers.contains_key("x_forwarded_for"));
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_addresses() {
        let v4: TrustedProxy = "127.0.0.0/8".parse().unwrap();
        assert!(v4.contains("127.1.2.3".parse().unwrap()));
        assert!(v4.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!v4.contains("10.0.0.1".parse().unwrap()));
        let v6: TrustedProxy = " fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("::1".parse().unwrap()));
        let one: TrustedProxy = "10.1.2.3".parse().unwrap();
        assert_eq!(one.to_string(), "10.1.2.3/32");
        assert_eq!(
            "10.1.2.3/8".parse::<TrustedProxy>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in ["10.0.0.0/33", "nope", "", "::1/129"] {
            let error = bad.parse::<TrustedProxy>().unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let samples = (0..=255_u8).flat_map(|octet| {
            [
                Ipv4Addr::new(octet, 0, 0, 0),
                Ipv4Addr::new(1, octet, 10, 100),
                Ipv4Addr::new(255, 99, octet, 9),
                Ipv4Addr::new(127, 0, 0, octet),
            ]
        });
        for v4 in samples {
            assert_eq!(ip_text(IpAddr::V4(v4)), v4.to_string());
        }
        for v6 in ["::1", "2001:db8::8a2e:370:7334", "fe80::1"] {
            let ip: IpAddr = v6.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
            assert_eq!(peer_text(ip), ip.to_string().as_str());
        }
        // An IPv4 client on a dual-stack listener is named as IPv4.
        assert_eq!(peer_text("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[test]
    fn underscore_spellings_are_the_same_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x_remote_user", HeaderValue::from_static("a"));
        headers.insert("x-remote-user", HeaderValue::from_static("b"));
        headers.insert("x-remote-users", HeaderValue::from_static("c"));
        headers.insert("x-forwarded-email", HeaderValue::from_static("d"));
        headers.insert("x_forwarded_email", HeaderValue::from_static("e"));
        headers.insert("x-forwarded-emails", HeaderValue::from_static("f"));
        remove_all_spellings(&mut headers, &["X_Remote_User", "x-forwarded-email"]);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-forwarded-emails", "x-remote-users"]);
    }
}
