//! Host checks shared by every client in the workspace.
//!
//! ```
//! use tower_mlflow_core::net::is_loopback_host;
//!
//! assert!(is_loopback_host("127.0.0.1"));
//! assert!(is_loopback_host("[::1]"));
//! assert!(is_loopback_host("LocalHost."));
//! assert!(!is_loopback_host("mlflow.example.com"));
//! ```

use std::net::IpAddr;

/// Whether `host` (as in a URI's authority, without the port) always names this machine:
/// `localhost` and names under `.localhost` (RFC 6761 §6.3), `127.0.0.0/8`, `::1`, and
/// IPv4-mapped `::ffff:127.x.y.z`. Case-insensitive; a trailing dot and IPv6 brackets are
/// ignored. Anything else, including names that merely resolve to loopback today, is not.
#[must_use]
pub fn is_loopback_host(host: &str) -> bool {
    // Brackets belong to IPv6 literals only.
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| is_loopback_ip(IpAddr::V6(ip)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return is_loopback_ip(ip);
    }
    // Compared in place, without lower-casing a copy: this runs on request paths.
    let name = host.strip_suffix('.').unwrap_or(host).as_bytes();
    let suffix = b".localhost";
    name.eq_ignore_ascii_case(&suffix[1..])
        || (name.len() > suffix.len()
            && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

/// Whether `ip` is a loopback address, counting IPv4-mapped IPv6 loopback addresses.
#[must_use]
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "api.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "::ffff:127.0.0.2",
        ] {
            assert!(is_loopback_host(host), "{host} is loopback");
        }
    }

    #[test]
    fn other_hosts() {
        for host in [
            "",
            ".localhost",
            "localhost.example.com",
            "notlocalhost",
            "128.0.0.1",
            "0.0.0.0",
            "::",
            "[::2]",
            "[::ffff:10.0.0.1]",
            "127.0.0.1.nip.io",
            "[localhost]",
            "[127.0.0.1",
            "é.localhos",
            "localhosté",
        ] {
            assert!(!is_loopback_host(host), "{host} is not loopback");
        }
    }

    #[test]
    fn non_ascii_names_are_compared_bytewise_without_panicking() {
        assert!(is_loopback_host("é.LOCALHOST"));
        assert!(is_loopback_host("ü.api.localhost."));
        assert!(!is_loopback_host("éé"));
        assert!(!is_loopback_host("localhoßt"));
    }
}
