use std::convert::Infallible;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use tower::{ServiceBuilder, ServiceExt};

use super::{
    OriginCheckLayer, OriginRejection, OriginRejectionKind,
    parse::Origin,
    service::{Verdict, carries_browser_credentials, verdict},
};

const BASIC: &str = "Basic YWxpY2U6czNjcjN0";

fn allowed() -> Vec<Origin> {
    ["https://mlflow.example.com", "http://127.0.0.1:5000"]
        .iter()
        .map(|s| Origin::parse(s, false).unwrap())
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

fn post(pairs: &[(&str, &str)]) -> Verdict {
    verdict(&allowed(), &Method::POST, &headers(pairs))
}

fn refused(kind: OriginRejectionKind) -> Verdict {
    Verdict::Refuse(kind)
}

#[test]
fn safe_methods_are_never_checked() {
    for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
        let h = headers(&[("origin", "https://evil.example"), ("authorization", BASIC)]);
        assert_eq!(verdict(&allowed(), &method, &h), Verdict::Pass, "{method}");
    }
}

#[test]
fn every_unsafe_method_is_checked() {
    let h = headers(&[("origin", "https://evil.example"), ("cookie", "s=1")]);
    for method in ["POST", "PUT", "PATCH", "DELETE", "PROPFIND"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let got = verdict(&allowed(), &method, &h);
        assert_eq!(got, refused(OriginRejectionKind::ForeignOrigin), "{method}");
    }
}

#[test]
fn an_allowed_origin_is_verified_in_any_spelling() {
    for origin in [
        "https://mlflow.example.com",
        "HTTPS://MLFLOW.example.com",
        "https://mlflow.example.com.",
        "https://mlflow.example.com:443",
        "http://127.0.0.1:5000",
    ] {
        let got = post(&[("origin", origin), ("authorization", BASIC)]);
        assert_eq!(got, Verdict::Verified, "{origin}");
        // Verified (and so removed) without credentials too.
        assert_eq!(post(&[("origin", origin)]), Verdict::Verified, "{origin}");
    }
}

#[test]
fn foreign_null_and_malformed_origins_with_credentials_are_refused() {
    use OriginRejectionKind::*;
    for (origin, kind) in [
        ("https://evil.example", ForeignOrigin),
        ("http://mlflow.example.com", ForeignOrigin),
        ("https://mlflow.example.com:8443", ForeignOrigin),
        ("https://mlflow.example.com.evil.example", ForeignOrigin),
        ("http://127.0.0.1:5001", ForeignOrigin),
        ("null", NullOrigin),
        ("NULL", NullOrigin),
        ("https://mlflow.example.com/", MalformedOrigin),
        ("mlflow.example.com", MalformedOrigin),
        ("https://u@mlflow.example.com", MalformedOrigin),
    ] {
        for credentials in [("authorization", BASIC), ("cookie", "session=1")] {
            let got = post(&[("origin", origin), credentials]);
            assert_eq!(got, refused(kind), "{origin} {credentials:?}");
        }
        // A matching Referer never overrules a present Origin.
        let got = post(&[
            ("origin", origin),
            ("referer", "https://mlflow.example.com/"),
            ("authorization", BASIC),
        ]);
        assert_eq!(got, refused(kind), "{origin} with referer");
    }
    let twice = post(&[
        ("origin", "https://mlflow.example.com"),
        ("origin", "https://mlflow.example.com"),
        ("authorization", BASIC),
    ]);
    assert_eq!(twice, refused(MalformedOrigin));
}

#[test]
fn non_ambient_requests_pass_whatever_their_origin() {
    for origin in ["https://evil.example", "null", "garbage"] {
        assert_eq!(post(&[("origin", origin)]), Verdict::Pass, "{origin}");
        let bearer = post(&[("origin", origin), ("authorization", "Bearer t0ken")]);
        assert_eq!(bearer, Verdict::Pass, "{origin}");
    }
}

#[test]
fn referer_is_the_fallback_only_without_origin() {
    let with = |referer: &str| post(&[("referer", referer), ("authorization", BASIC)]);
    let page = "https://mlflow.example.com/#/experiments/1?x=y";
    assert_eq!(with(page), Verdict::Pass);
    assert_eq!(
        with("https://evil.example/mlflow.example.com"),
        refused(OriginRejectionKind::ForeignReferer)
    );
    assert_eq!(
        with("/relative"),
        refused(OriginRejectionKind::MalformedReferer)
    );
    let twice = post(&[("referer", page), ("referer", page), ("cookie", "s=1")]);
    assert_eq!(twice, refused(OriginRejectionKind::MalformedReferer));
}

#[test]
fn sec_fetch_site_decides_when_nothing_else_is_there() {
    for (site, expected) in [
        ("cross-site", refused(OriginRejectionKind::CrossSite)),
        ("Same-Site", refused(OriginRejectionKind::CrossSite)),
        ("same-origin", Verdict::Pass),
        ("none", Verdict::Pass),
    ] {
        let got = post(&[("sec-fetch-site", site), ("cookie", "s=1")]);
        assert_eq!(got, expected, "{site}");
    }
    assert_eq!(post(&[("authorization", BASIC)]), Verdict::Pass);
    assert_eq!(post(&[]), Verdict::Pass);
}

#[test]
fn browser_credentials_are_cookies_and_remembered_schemes() {
    for ambient in [
        ("cookie", "a=b"),
        ("authorization", BASIC),
        ("authorization", "basic x"),
        ("authorization", "Digest username=\"a\""),
        ("authorization", "Negotiate abc"),
        ("authorization", "NTLM abc"),
    ] {
        assert!(
            carries_browser_credentials(&headers(&[ambient])),
            "{ambient:?}"
        );
    }
    for not_ambient in [
        ("authorization", "Bearer t0ken"),
        ("authorization", "Basicx"),
        ("x-api-key", "k"),
    ] {
        let h = headers(&[not_ambient]);
        assert!(!carries_browser_credentials(&h), "{not_ambient:?}");
    }
    let both = headers(&[("authorization", "Bearer t"), ("authorization", BASIC)]);
    assert!(carries_browser_credentials(&both));
}

#[tokio::test]
async fn the_service_strips_a_verified_origin_and_refuses_without_calling_inner() {
    let layer = OriginCheckLayer::builder()
        .allowed_origin("https://mlflow.example.com")
        .build()
        .unwrap();
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(|request: Request<String>| async move {
                let origin = request.headers().get(header::ORIGIN).cloned();
                let referer = request.headers().get(header::REFERER).cloned();
                Ok::<_, Infallible>(Response::new(format!("{origin:?} {referer:?}")))
            });
    let request = |origin: &str| {
        Request::post("/x")
            .header(header::ORIGIN, origin)
            .header(header::REFERER, "https://mlflow.example.com/")
            .header(header::COOKIE, "s=1")
            .body(String::new())
            .unwrap()
    };

    let ok = service
        .clone()
        .oneshot(request("https://mlflow.example.com"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.body(), r#"None Some("https://mlflow.example.com/")"#);

    let refused = service.oneshot(request("null")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.body().starts_with("Cross-origin request refused"));
    let rejection = refused.extensions().get::<OriginRejection>().unwrap();
    assert_eq!(rejection.kind(), OriginRejectionKind::NullOrigin);
}

#[test]
fn traits() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<OriginCheckLayer>();
    assert_send_sync::<super::OriginCheck<()>>();
    assert_send_sync::<OriginRejection>();
}
