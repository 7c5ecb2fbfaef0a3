//! Serialised origins (`scheme://host[:port]`), parsed and normalised so that two spellings of
//! the same origin compare equal: scheme and host lower-cased, one trailing dot dropped from
//! the host, the scheme's default port made explicit.

use std::fmt;

/// One normalised origin. Only `http` and `https`: the UI is served over nothing else.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// Why a string is not an origin; a fixed text, so that no input is echoed where it should
/// not be.
pub(super) type Problem = &'static str;

impl Origin {
    /// Parses `scheme://host[:port]`; with `path_allowed`, anything after the authority (a
    /// path, a query) is accepted and ignored, as in a `Referer` or a public URL.
    pub(super) fn parse(input: &str, path_allowed: bool) -> Result<Self, Problem> {
        let (scheme, rest) = input.split_once("://").ok_or("no scheme (`https://…`)")?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err("the scheme is neither http nor https");
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !tail.is_empty() && !path_allowed {
            return Err("an origin has no path, query or fragment");
        }
        if authority.contains('@') {
            return Err("user information is not allowed in an origin");
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => default_port(https),
            Some(port) => parse_port(port)?,
        };
        Ok(Self {
            https,
            host: normalise_host(host)?,
            port,
        })
    }
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), Problem> {
    if authority.starts_with('[') {
        let close = authority.find(']').ok_or("an IPv6 address without `]`")?;
        let (host, rest) = authority.split_at(close + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => rest
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or("characters after the IPv6 address"),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_port(port: &str) -> Result<u16, Problem> {
    const BAD: Problem = "the port is not a number from 1 to 65535";
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(BAD),
        Ok(port) => Ok(port),
    }
}

fn normalise_host(host: &str) -> Result<String, Problem> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && !host.starts_with('.')
            && !host.ends_with('.')
            && !host.contains("..")
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if !valid {
        return Err("the host is empty or not a host name (IDNs in their xn-- form)");
    }
    Ok(host.to_ascii_lowercase())
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host)?;
        if self.port != default_port(self.https) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Origin;

    fn origin(s: &str) -> Origin {
        Origin::parse(s, false).unwrap()
    }

    #[test]
    fn spellings_of_one_origin_compare_equal() {
        let canonical = origin("https://mlflow.example.com");
        for spelling in [
            "HTTPS://MLflow.Example.COM",
            "https://mlflow.example.com.",
            "https://mlflow.example.com:443",
            "https://mlflow.example.com.:443",
        ] {
            assert_eq!(origin(spelling), canonical, "{spelling}");
        }
        assert_eq!(origin("http://a.test:80"), origin("http://a.test"));
        assert_eq!(origin("http://[::1]:8080").to_string(), "http://[::1]:8080");
        assert_eq!(canonical.to_string(), "https://mlflow.example.com");
    }

    #[test]
    fn different_origins_differ() {
        let canonical = origin("https://mlflow.example.com");
        for other in [
            "http://mlflow.example.com",
            "https://mlflow.example.com:8443",
            "https://evil.mlflow.example.com",
            "https://mlflow.example.com.evil",
            "https://mlflow.example.co",
        ] {
            assert_ne!(origin(other), canonical, "{other}");
        }
        assert_ne!(origin("http://a.test:443"), origin("https://a.test"));
    }

    #[test]
    fn malformed_origins_are_refused() {
        for bad in [
            "null",
            "",
            "mlflow.example.com",
            "ftp://a.test",
            "https://",
            "https://:443",
            "https://a.test:",
            "https://a.test:0",
            "https://a.test:65536",
            "https://a.test:+1",
            "https://a.test:1:2",
            "https://user:pw@a.test",
            "https://a.test/",
            "https://a.test/path",
            "https://a.test?x",
            "https://a test",
            "https://a.test..",
            "https://.",
            "https://a%2etest",
            "https://[::1",
            "https://[not-ip]",
            "https://[::1]x",
            "https://bücher.test",
        ] {
            assert!(Origin::parse(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_path_is_ignored_where_allowed() {
        let with_path = Origin::parse("https://a.test:443/mlflow/#/experiments?x=1", true);
        assert_eq!(with_path.unwrap(), origin("https://a.test"));
        assert!(Origin::parse("https://a.test?x", true).is_ok());
        assert!(Origin::parse("https://u@a.test/", true).is_err());
    }
}
