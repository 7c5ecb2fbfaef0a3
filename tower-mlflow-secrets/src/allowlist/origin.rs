//! The normalised origin of a request: what the allowlist compares.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use http::Uri;
use tower_mlflow_core::net::{is_loopback_host, is_loopback_ip};

use super::pattern::normalise_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(super) fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else if s.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else {
            None
        }
    }

    pub(super) fn default_port(self) -> u16 {
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

/// A normalised host: an IP address or a lower-case name without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    pub(super) fn is_loopback(&self) -> bool {
        match self {
            Self::Name(name) => is_loopback_host(name),
            Self::Ip(ip) => is_loopback_ip(*ip),
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
    pub(super) scheme: Scheme,
    pub(super) host: Host,
    pub(super) port: u16,
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

    /// Whether the host is loopback: `localhost` and names under `.localhost`,
    /// `127.0.0.0/8`, `::1` and `::ffff:127.0.0.0/104`.
    pub fn is_loopback(&self) -> bool {
        self.host.is_loopback()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

pub(super) fn normalise_request_host(host: &str) -> Option<Host> {
    if let Some(inner) = host.strip_prefix('[') {
        let ip = inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?;
        return Some(Host::Ip(IpAddr::V6(ip)));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(ip)));
    }
    normalise_name(host).ok().map(Host::Name)
}
