//! [`HostAllowlist`]: the origins (scheme, host, port) a secret may be sent to.
//!
//! Patterns are `[scheme://]host[:port]`:
//!
//! - **host**: an exact name (`mlflow.example.com`), a wildcard of one or more leading labels
//!   (`*.example.com` matches `a.example.com` and `a.b.example.com`, never the apex
//!   `example.com` and never `example.com.evil.net`), an IPv4 address or a bracketed IPv6
//!   address (`[::1]`). Names are compared in lower case with one trailing dot removed;
//!   non-ASCII names must be written in their `xn--` form.
//! - **scheme**: `https` by default. A pattern without a scheme also allows `http` when the
//!   host is loopback (`localhost`, `127.0.0.0/8`, `[::1]`). An explicit `http://` pattern
//!   for any other host is refused unless [`HostAllowlistBuilder::allow_plain_http`] is set.
//! - **port**: the scheme's default port (443 or 80) unless given; `:*` allows any port.
//!
//! ```
//! use http::Uri;
//! use tower_mlflow_secrets::HostAllowlist;
//!
//! let allowlist = HostAllowlist::builder()
//!     .host("*.example.com")
//!     .host("localhost:5000")
//!     .build()
//!     .unwrap();
//!
//! let allowed = |uri: &str| allowlist.allows(&uri.parse::<Uri>().unwrap());
//! assert!(allowed("https://mlflow.example.com/api/2.0/mlflow/experiments/create"));
//! assert!(allowed("https://A.B.Example.COM./x"));
//! assert!(allowed("http://localhost:5000/"));
//! assert!(!allowed("https://example.com/")); // the apex
//! assert!(!allowed("https://example.com.evil.net/")); // a suffix trick
//! assert!(!allowed("http://mlflow.example.com/")); // plain http
//! assert!(!allowed("https://mlflow.example.com:8443/")); // another port
//! ```

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use http::Uri;

/// The origins a secret may be sent to. Empty means "nowhere".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HostAllowlist {
    rules: Vec<Rule>,
}

/// Builds a [`HostAllowlist`]; errors are reported by [`build`](Self::build).
#[derive(Clone, Debug, Default)]
pub struct HostAllowlistBuilder {
    patterns: Vec<String>,
    allow_plain_http: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    pattern: String,
    scheme: Option<Scheme>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else if s.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else {
            None
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`: the suffix without the leading dot.
    Wildcard(String),
    Ip(IpAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortPattern {
    Default,
    Exact(u16),
    Any,
}

/// A normalised host: an IP address or a lower-case name without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    fn is_loopback(&self) -> bool {
        match self {
            Self::Name(name) => name == "localhost" || name.ends_with(".localhost"),
            Self::Ip(IpAddr::V4(ip)) => ip.is_loopback(),
            Self::Ip(IpAddr::V6(ip)) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// The origin of a request, normalised: what the allowlist compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: Scheme,
    host: Host,
    port: u16,
}

impl Origin {
    /// The origin of an absolute `http`/`https` URI; `None` for relative URIs, other
    /// schemes and hosts that are not valid names or addresses.
    pub fn of(uri: &Uri) -> Option<Self> {
        let scheme = Scheme::parse(uri.scheme_str()?)?;
        let host = normalise_request_host(uri.host()?)?;
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        Some(Self { scheme, host, port })
    }

    /// Whether the host is loopback (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        self.host.is_loopback()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

impl HostAllowlist {
    /// A builder with no hosts.
    pub fn builder() -> HostAllowlistBuilder {
        HostAllowlistBuilder::default()
    }

    /// Whether a secret may be sent to `uri` (absolute URIs only).
    pub fn allows(&self, uri: &Uri) -> bool {
        Origin::of(uri).is_some_and(|origin| self.allows_origin(&origin))
    }

    /// Whether a secret may be sent to `origin`.
    pub fn allows_origin(&self, origin: &Origin) -> bool {
        self.rules.iter().any(|rule| rule.matches(origin))
    }

    /// Whether the list is empty (allows nothing).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl fmt::Debug for HostAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| &r.pattern))
            .finish()
    }
}

impl HostAllowlistBuilder {
    /// Adds one pattern (see the [module docs](self)).
    #[must_use]
    pub fn host(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Adds a comma-separated list of patterns, as in `MLFLOW_SECRETS_ALLOWED_HOSTS`; empty
    /// items are skipped.
    #[must_use]
    pub fn hosts_from_list(mut self, list: &str) -> Self {
        self.patterns.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        self
    }

    /// Allows explicit `http://` patterns for hosts that are not loopback. Off by default:
    /// a secret sent over plain http can be read by anyone on the path.
    #[must_use]
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Parses every pattern.
    pub fn build(self) -> Result<HostAllowlist, AllowlistError> {
        let rules = self
            .patterns
            .iter()
            .map(|p| parse_rule(p, self.allow_plain_http))
            .collect::<Result<_, _>>()?;
        Ok(HostAllowlist { rules })
    }
}

impl Rule {
    fn matches(&self, origin: &Origin) -> bool {
        let scheme_ok = match self.scheme {
            Some(scheme) => scheme == origin.scheme,
            None => origin.scheme == Scheme::Https || origin.host.is_loopback(),
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(port) => port == origin.port,
            PortPattern::Default => origin.scheme.default_port() == origin.port,
        };
        let host_ok = match (&self.host, &origin.host) {
            (HostPattern::Exact(want), Host::Name(name)) => want == name,
            (HostPattern::Wildcard(suffix), Host::Name(name)) => name
                .strip_suffix(suffix.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|labels| !labels.is_empty()),
            (HostPattern::Ip(want), Host::Ip(ip)) => want == ip,
            _ => false,
        };
        scheme_ok && port_ok && host_ok
    }
}

/// A pattern that could not be parsed. The pattern is shown (it is not secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowlistError {
    pattern: String,
    kind: AllowlistErrorKind,
}

/// What is wrong with an allowlist pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowlistErrorKind {
    /// The pattern is empty.
    Empty,
    /// The scheme is neither `http` nor `https`.
    UnsupportedScheme,
    /// The pattern has a path, query, fragment or userinfo; only origins are allowed.
    NotAnOrigin,
    /// The host is not a valid DNS name, IPv4 address or bracketed IPv6 address.
    InvalidHost,
    /// The host has non-ASCII characters; write its `xn--` form.
    NonAsciiHost,
    /// The port is not a number in 1..=65535 or `*`.
    InvalidPort,
    /// `*` appears other than as the whole first label.
    InvalidWildcard,
    /// A wildcard over a single label (`*.com`) or an address.
    WildcardTooBroad,
    /// An `http://` pattern for a host that is not loopback, without
    /// [`allow_plain_http`](HostAllowlistBuilder::allow_plain_http).
    PlainHttp,
}

impl AllowlistError {
    fn new(pattern: &str, kind: AllowlistErrorKind) -> Self {
        Self {
            pattern: pattern.to_owned(),
            kind,
        }
    }

    /// The offending pattern.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// What is wrong with it.
    pub fn kind(&self) -> AllowlistErrorKind {
        self.kind
    }
}

impl fmt::Display for AllowlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.kind {
            AllowlistErrorKind::Empty => "the pattern is empty",
            AllowlistErrorKind::UnsupportedScheme => "the scheme must be http or https",
            AllowlistErrorKind::NotAnOrigin => {
                "only [scheme://]host[:port] is allowed (no path, query or userinfo)"
            }
            AllowlistErrorKind::InvalidHost => "the host is not a valid name or address",
            AllowlistErrorKind::NonAsciiHost => "non-ASCII host names must be written as xn--",
            AllowlistErrorKind::InvalidPort => "the port must be 1-65535 or *",
            AllowlistErrorKind::InvalidWildcard => "`*` is only allowed as `*.` at the start",
            AllowlistErrorKind::WildcardTooBroad => {
                "a wildcard needs at least two labels after `*.` and cannot cover an address"
            }
            AllowlistErrorKind::PlainHttp => {
                "plain http to a host that is not loopback needs allow_plain_http"
            }
        };
        write!(f, "invalid allowed-host pattern {:?}: {why}", self.pattern)
    }
}

impl std::error::Error for AllowlistError {}

fn parse_rule(pattern: &str, allow_plain_http: bool) -> Result<Rule, AllowlistError> {
    use AllowlistErrorKind as K;
    let err = |kind| AllowlistError::new(pattern, kind);
    let text = pattern.trim();
    if text.is_empty() {
        return Err(err(K::Empty));
    }
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (
            Some(Scheme::parse(scheme).ok_or(err(K::UnsupportedScheme))?),
            rest,
        ),
        None => (None, text),
    };
    // Allow one trailing `/` (people paste origins), nothing else after the authority.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(err(K::InvalidHost));
    }
    if rest.contains(['/', '?', '#', '@', '\\']) {
        return Err(err(K::NotAnOrigin));
    }
    let (host_text, port_text) = split_host_port(rest).ok_or(err(K::InvalidHost))?;
    let port = match port_text {
        None => PortPattern::Default,
        Some("*") => PortPattern::Any,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => PortPattern::Exact(n),
            _ => return Err(err(K::InvalidPort)),
        },
    };
    let host = if let Some(inner) = host_text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(err(K::InvalidHost))?;
        HostPattern::Ip(IpAddr::V6(
            inner.parse::<Ipv6Addr>().map_err(|_| err(K::InvalidHost))?,
        ))
    } else if let Some(suffix) = host_text.strip_prefix("*.") {
        let suffix = normalise_name(suffix).map_err(err)?;
        if !suffix.contains('.') || suffix.parse::<Ipv4Addr>().is_ok() {
            return Err(err(K::WildcardTooBroad));
        }
        HostPattern::Wildcard(suffix)
    } else if host_text.contains('*') {
        return Err(err(K::InvalidWildcard));
    } else if let Ok(ip) = host_text.parse::<IpAddr>() {
        HostPattern::Ip(ip)
    } else {
        HostPattern::Exact(normalise_name(host_text).map_err(err)?)
    };
    if scheme == Some(Scheme::Http) && !allow_plain_http {
        let loopback = match &host {
            HostPattern::Exact(name) => Host::Name(name.clone()).is_loopback(),
            HostPattern::Ip(ip) => Host::Ip(*ip).is_loopback(),
            HostPattern::Wildcard(suffix) => suffix == "localhost",
        };
        if !loopback {
            return Err(err(K::PlainHttp));
        }
    }
    Ok(Rule {
        pattern: text.to_owned(),
        scheme,
        host,
        port,
    })
}

/// Splits `host[:port]`, keeping brackets on IPv6 hosts; a bare IPv6 address (no brackets)
/// is accepted as a host without a port.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, after) = text.split_at(end + 1);
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        // Written without brackets, as mlflow-secrets-auth wants it.
        return Some((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((text, None)),
    }
}

/// Lower-cases a DNS name, removes one trailing dot and checks its labels.
fn normalise_name(name: &str) -> Result<String, AllowlistErrorKind> {
    if !name.is_ascii() {
        return Err(AllowlistErrorKind::NonAsciiHost);
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(AllowlistErrorKind::InvalidHost);
    }
    Ok(name)
}

fn normalise_request_host(host: &str) -> Option<Host> {
    if let Some(inner) = host.strip_prefix('[') {
        let ip = inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?;
        return Some(Host::Ip(IpAddr::V6(ip)));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(ip)));
    }
    normalise_name(host).ok().map(Host::Name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> HostAllowlist {
        patterns
            .iter()
            .fold(HostAllowlist::builder(), |b, p| b.host(*p))
            .build()
            .unwrap()
    }

    fn allows(list: &HostAllowlist, uri: &str) -> bool {
        list.allows(&uri.parse::<Uri>().unwrap())
    }

    #[test]
    fn table() {
        // (patterns, uri, allowed)
        let cases: &[(&[&str], &str, bool)] = &[
            (
                &["mlflow.example.com"],
                "https://mlflow.example.com/x",
                true,
            ),
            (
                &["mlflow.example.com"],
                "https://MLFLOW.Example.Com/x",
                true,
            ),
            (
                &["mlflow.example.com"],
                "https://mlflow.example.com./x",
                true,
            ),
            (
                &["MLflow.Example.com."],
                "https://mlflow.example.com/x",
                true,
            ),
            (
                &["mlflow.example.com"],
                "https://mlflow.example.com:443/x",
                true,
            ),
            (
                &["mlflow.example.com"],
                "https://mlflow.example.com:8443/x",
                false,
            ),
            (
                &["mlflow.example.com"],
                "http://mlflow.example.com/x",
                false,
            ),
            (
                &["mlflow.example.com"],
                "https://user:pw@mlflow.example.com/x",
                true,
            ),
            (
                &["mlflow.example.com"],
                "https://mlflow.example.com.evil.net/x",
                false,
            ),
            (
                &["mlflow.example.com"],
                "https://evilmlflow.example.com/x",
                false,
            ),
            (
                &["mlflow.example.com"],
                "https://mlflow.example.co/x",
                false,
            ),
            (
                &["mlflow.example.com"],
                "https://xmlflow.example.com/x",
                false,
            ),
            (&["*.example.com"], "https://a.example.com/", true),
            (&["*.example.com"], "https://a.b.example.com/", true),
            (&["*.example.com"], "https://example.com/", false),
            (&["*.example.com"], "https://.example.com/", false),
            (&["*.example.com"], "https://a..example.com/", false),
            (&["*.example.com"], "https://example.com.evil.net/", false),
            (&["*.example.com"], "https://a.example.com.evil.net/", false),
            (&["*.example.com"], "https://aexample.com/", false),
            (&["*.example.com"], "https://evil-example.com/", false),
            (&["*.example.com"], "https://A.EXAMPLE.COM./", true),
            (&["*.example.com:8443"], "https://a.example.com:8443/", true),
            (&["*.example.com:8443"], "https://a.example.com/", false),
            (&["example.com:*"], "https://example.com:1234/", true),
            (&["example.com:*"], "http://example.com:1234/", false),
            (&["[::1]:5000"], "http://[::1]:5000/", true),
            (&["[::1]:5000"], "https://[::1]:5000/", true),
            (&["[::1]:5000"], "http://[::1]:5001/", false),
            (&["::1"], "https://[::1]/", true),
            (&["[2001:db8::1]"], "https://[2001:DB8:0::1]/", true),
            (&["[2001:db8::1]"], "https://[2001:db8::2]/", false),
            (&["127.0.0.1:8080"], "http://127.0.0.1:8080/", true),
            (&["127.0.0.1:8080"], "http://127.0.0.2:8080/", false),
            (&["localhost:5000"], "http://localhost:5000/", true),
            (&["localhost:5000"], "http://LOCALHOST.:5000/", true),
            (&["localhost:5000"], "http://localhost:5001/", false),
            (&["https://localhost:5000"], "http://localhost:5000/", false),
            (&["http://localhost:5000"], "https://localhost:5000/", false),
            (&["10.0.0.1"], "https://10.0.0.1/", true),
            (&["10.0.0.1"], "http://10.0.0.1/", false),
            (&["10.0.0.1"], "https://10.0.0.1.evil.net/", false),
            (&["a.com", "b.com"], "https://b.com/", true),
            (&[], "https://a.com/", false),
        ];
        for (patterns, uri, want) in cases {
            assert_eq!(allows(&list(patterns), uri), *want, "{patterns:?} {uri}");
        }
    }

    #[test]
    fn relative_and_odd_uris_are_never_allowed() {
        let l = list(&["localhost:*", "*.example.com"]);
        for uri in [
            "/api/x",
            "ftp://a.example.com/",
            "https://a.example.com%2e/",
        ] {
            if let Ok(parsed) = uri.parse::<Uri>() {
                assert!(!l.allows(&parsed), "{uri}");
            }
        }
    }

    #[test]
    fn parse_errors_are_typed() {
        use AllowlistErrorKind as K;
        let cases = [
            ("", K::Empty),
            ("   ", K::Empty),
            ("ftp://a.com", K::UnsupportedScheme),
            ("https://a.com/path", K::NotAnOrigin),
            ("https://user@a.com", K::NotAnOrigin),
            ("a.com:0", K::InvalidPort),
            ("a.com:99999", K::InvalidPort),
            ("a.com:+1", K::InvalidPort),
            ("a.com:", K::InvalidPort),
            ("a..com", K::InvalidHost),
            ("[::1", K::InvalidHost),
            ("[zz::1]", K::InvalidHost),
            ("a b.com", K::InvalidHost),
            ("exämple.com", K::NonAsciiHost),
            ("mlflow.*.com", K::InvalidWildcard),
            ("*example.com", K::InvalidWildcard),
            ("*", K::InvalidWildcard),
            ("*.com", K::WildcardTooBroad),
            ("*.1.2.3.4", K::WildcardTooBroad),
            ("http://mlflow.example.com", K::PlainHttp),
            ("http://10.0.0.1", K::PlainHttp),
        ];
        for (pattern, kind) in cases {
            let err = HostAllowlist::builder().host(pattern).build().unwrap_err();
            assert_eq!(err.kind(), kind, "{pattern:?}");
            assert!(err.to_string().contains(pattern.trim()), "{err}");
        }
    }

    #[test]
    fn plain_http_needs_opt_in() {
        let l = HostAllowlist::builder()
            .allow_plain_http(true)
            .host("http://mlflow.internal:5000")
            .build()
            .unwrap();
        assert!(allows(&l, "http://mlflow.internal:5000/"));
        assert!(!allows(&l, "https://mlflow.internal:5000/"));
    }

    #[test]
    fn loopback_patterns_allow_http_without_opt_in() {
        for pattern in ["http://localhost:1", "http://127.0.0.1:1", "http://[::1]:1"] {
            assert!(
                HostAllowlist::builder().host(pattern).build().is_ok(),
                "{pattern}"
            );
        }
    }

    #[test]
    fn list_syntax_and_debug() {
        let l = HostAllowlist::builder()
            .hosts_from_list(" a.example.com, ,*.b.example.com:8443 ")
            .build()
            .unwrap();
        assert!(allows(&l, "https://a.example.com/"));
        assert!(allows(&l, "https://x.b.example.com:8443/"));
        assert_eq!(
            format!("{l:?}"),
            r#"["a.example.com", "*.b.example.com:8443"]"#
        );
    }

    #[test]
    fn origin_display() {
        let o = Origin::of(&"http://[::1]:5000/x".parse().unwrap()).unwrap();
        assert_eq!(o.to_string(), "http://[::1]:5000");
        assert!(o.is_loopback());
        let o = Origin::of(&"https://Example.COM./x".parse().unwrap()).unwrap();
        assert_eq!(o.to_string(), "https://example.com:443");
    }
}
