//! Which client a request comes from: the [`ClientKey`] hook and [`IpKey`].

use std::{
    fmt,
    hash::Hash,
    net::{IpAddr, Ipv6Addr, SocketAddr},
};

use http::request::Parts;

/// Tells which client a request comes from, so that its failed logins are counted together.
///
/// Any `Fn(&Parts) -> K` closure is a `ClientKey`. Key by something the client cannot choose:
/// the peer address of the connection, or the address a trusted proxy reports, never a header
/// the client sets itself (it would get a fresh bucket per request). [`IpKey`] groups an
/// IPv6 client's whole /64.
///
/// ```
/// use std::net::SocketAddr;
/// use http::request::Parts;
/// use tower_mlflow_auth::throttle::{ClientKey, IpKey};
///
/// // The peer address, as a server loop puts it into the extensions; unknown peers share
/// // one bucket.
/// let by_peer = |parts: &Parts| parts.extensions.get::<SocketAddr>().map(|peer| IpKey::from(peer.ip()));
///
/// let (mut parts, ()) = http::Request::new(()).into_parts();
/// parts.extensions.insert("[2001:db8::7]:443".parse::<SocketAddr>()?);
/// assert_eq!(by_peer.client_key(&parts).unwrap().to_string(), "2001:db8::/64");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub trait ClientKey: Clone + Send + Sync + 'static {
    /// The key failed logins are counted under. Its `Debug` form is logged when a client is
    /// throttled, so it must not contain a secret.
    type Key: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static;

    /// The key of the client that sent the request with this head.
    fn client_key(&self, parts: &Parts) -> Self::Key;
}

impl<F, K> ClientKey for F
where
    F: Fn(&Parts) -> K + Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    type Key = K;

    fn client_key(&self, parts: &Parts) -> K {
        self(parts)
    }
}

/// An IP address as a throttle key: an IPv4 address as it is (an IPv4-mapped IPv6 address
/// counts as IPv4), an IPv6 address by its /64 network.
///
/// One IPv6 host usually holds a whole /64 (SLAAC, privacy addresses) and can use a new
/// address per connection, so counting per address would give it 2^64 buckets. The price:
/// clients sharing a /64, like clients behind one IPv4 NAT, share their bucket.
///
/// ```
/// use std::net::IpAddr;
/// use tower_mlflow_auth::throttle::IpKey;
///
/// let a = IpKey::from("2001:db8:1:2:aaaa::1".parse::<IpAddr>()?);
/// let b = IpKey::from("2001:db8:1:2:bbbb::2".parse::<IpAddr>()?);
/// assert_eq!(a, b);
/// assert_eq!(IpKey::from("::ffff:10.0.0.7".parse::<IpAddr>()?).to_string(), "10.0.0.7");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey(IpAddr);

impl IpKey {
    /// The address this key stands for: the IPv4 address, or the first address of the /64.
    #[must_use]
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        Self(match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from(network))
            }
            v4 @ IpAddr::V4(_) => v4,
        })
    }
}

impl From<SocketAddr> for IpKey {
    fn from(addr: SocketAddr) -> Self {
        Self::from(addr.ip())
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The same as `Display`, so that log lines read `key=10.0.0.7`.
impl fmt::Debug for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_keys_are_slash_64_and_mapped_ipv4_is_ipv4() {
        let key = |s: &str| IpKey::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff:1"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        assert_eq!(key("::ffff:127.0.0.2"), key("127.0.0.2"));
        assert_ne!(key("127.0.0.2"), key("127.0.0.3"));
        assert_eq!(format!("{:?}", key("2001:db8:0:1::1")), "2001:db8:0:1::/64");
        assert_eq!(key("10.1.2.3").ip().to_string(), "10.1.2.3");
        let from_socket = IpKey::from("[::1]:80".parse::<SocketAddr>().unwrap());
        assert_eq!(from_socket.to_string(), "::/64");
    }
}
