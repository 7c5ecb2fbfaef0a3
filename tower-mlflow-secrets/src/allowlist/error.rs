use std::fmt;

/// A pattern that [`HostAllowlistBuilder::build`](super::HostAllowlistBuilder::build)
/// could not parse. The pattern is shown (it is not secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAllowlistBuildError {
    pattern: String,
    kind: HostAllowlistBuildErrorKind,
}

/// What is wrong with an allowlist pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostAllowlistBuildErrorKind {
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
    /// [`allow_plain_http`](super::HostAllowlistBuilder::allow_plain_http).
    PlainHttp,
}

impl HostAllowlistBuildError {
    pub(super) fn new(pattern: &str, kind: HostAllowlistBuildErrorKind) -> Self {
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
    pub fn kind(&self) -> HostAllowlistBuildErrorKind {
        self.kind
    }
}

impl fmt::Display for HostAllowlistBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.kind {
            HostAllowlistBuildErrorKind::Empty => "the pattern is empty",
            HostAllowlistBuildErrorKind::UnsupportedScheme => "the scheme must be http or https",
            HostAllowlistBuildErrorKind::NotAnOrigin => {
                "only [scheme://]host[:port] is allowed (no path, query or userinfo)"
            }
            HostAllowlistBuildErrorKind::InvalidHost => "the host is not a valid name or address",
            HostAllowlistBuildErrorKind::NonAsciiHost => {
                "non-ASCII host names must be written as xn--"
            }
            HostAllowlistBuildErrorKind::InvalidPort => "the port must be 1-65535 or *",
            HostAllowlistBuildErrorKind::InvalidWildcard => {
                "`*` is only allowed as `*.` at the start"
            }
            HostAllowlistBuildErrorKind::WildcardTooBroad => {
                "a wildcard needs at least two labels after `*.` and cannot cover an address"
            }
            HostAllowlistBuildErrorKind::PlainHttp => {
                "plain http to a host that is not loopback needs allow_plain_http"
            }
        };
        write!(f, "invalid allowed-host pattern {:?}: {why}", self.pattern)
    }
}

impl std::error::Error for HostAllowlistBuildError {}
