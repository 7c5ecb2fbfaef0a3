//! Parsing `[scheme://]host[:port]` patterns and matching origins against them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tower_mlflow_core::net::{is_loopback_host, is_loopback_ip};

use super::{
    error::{HostAllowlistBuildError, HostAllowlistBuildErrorKind},
    origin::{Host, Origin, Scheme},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    pub(super) pattern: String,
    scheme: Option<Scheme>,
    host: HostPattern,
    port: PortPattern,
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

impl Rule {
    pub(super) fn matches(&self, origin: &Origin) -> bool {
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

/// Parses one pattern; a pattern without a port allows the scheme's default port, or any
/// port with `any_port_unless_given`.
pub(super) fn parse_rule(
    pattern: &str,
    allow_plain_http: bool,
    any_port_unless_given: bool,
) -> Result<Rule, HostAllowlistBuildError> {
    use HostAllowlistBuildErrorKind as K;
    let err = |kind| HostAllowlistBuildError::new(pattern, kind);
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
        None if any_port_unless_given => PortPattern::Any,
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
            HostPattern::Exact(name) => is_loopback_host(name),
            HostPattern::Ip(ip) => is_loopback_ip(*ip),
            // Every name under `localhost.` is loopback.
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
pub(super) fn normalise_name(name: &str) -> Result<String, HostAllowlistBuildErrorKind> {
    if !name.is_ascii() {
        return Err(HostAllowlistBuildErrorKind::NonAsciiHost);
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
        return Err(HostAllowlistBuildErrorKind::InvalidHost);
    }
    Ok(name)
}
