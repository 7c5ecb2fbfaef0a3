use http::Uri;

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
    use HostAllowlistBuildErrorKind as K;
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

#[test]
fn any_port_unless_given_is_the_plugins_port_rule() {
    let plugin = HostAllowlist::builder()
        .hosts_from_list("127.0.0.1, mlflow.example.com, *.corp.example, api.example.com:8443")
        .any_port_unless_given()
        .build()
        .unwrap();
    let strict = HostAllowlist::builder()
        .hosts_from_list("127.0.0.1, mlflow.example.com, *.corp.example, api.example.com:8443")
        .build()
        .unwrap();
    // (uri, plugin rule, builder rule)
    let cases = [
        ("http://127.0.0.1:43503/api", true, false),
        ("http://127.0.0.1/api", true, true),
        ("https://mlflow.example.com:5000/", true, false),
        ("https://mlflow.example.com/", true, true),
        ("https://a.b.corp.example:8443/", true, false),
        // A port that is given stays the only one.
        ("https://api.example.com:8443/", true, true),
        ("https://api.example.com/", false, false),
        ("https://api.example.com:9443/", false, false),
        // Still https off loopback, still label wildcards, still exact hosts.
        ("http://mlflow.example.com:5000/", false, false),
        ("https://corp.example:5000/", false, false),
        ("https://mlflow.example.com.evil.net:5000/", false, false),
        ("https://127.0.0.2:5000/", false, false),
    ];
    for (uri, want_plugin, want_strict) in cases {
        assert_eq!(allows(&plugin, uri), want_plugin, "plugin rule, {uri}");
        assert_eq!(allows(&strict, uri), want_strict, "builder rule, {uri}");
    }
}

#[test]
fn the_plugin_port_rule_keeps_schemes_wildcard_ports_and_any_port() {
    let plugin = HostAllowlist::builder()
        .hosts_from_list(
            "https://secure.example.com, http://localhost, *.corp.example:8443, any.example.com:*",
        )
        .any_port_unless_given()
        .build()
        .unwrap();
    let cases = [
        // An explicit scheme without a port: that scheme, any port.
        ("https://secure.example.com:9443/", true),
        ("http://secure.example.com:9443/", false),
        ("http://localhost:5000/", true),
        ("https://localhost:5000/", false),
        // A wildcard with a port: labels as always, only that port.
        ("https://a.corp.example:8443/", true),
        ("https://a.b.corp.example:8443/", true),
        ("https://a.corp.example/", false),
        ("https://corp.example:8443/", false),
        ("https://a.corp.example.evil.net:8443/", false),
        // `:*` is any port under both rules.
        ("https://any.example.com:1/", true),
        ("http://any.example.com:1/", false),
    ];
    for (uri, want) in cases {
        assert_eq!(allows(&plugin, uri), want, "{uri}");
    }
    // Explicit plain http off loopback stays refused under the plugin rule too.
    let err = HostAllowlist::builder()
        .host("http://mlflow.example.com")
        .any_port_unless_given()
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), HostAllowlistBuildErrorKind::PlainHttp);
}
