use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header::COOKIE};
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};

use super::*;

const LINE_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LINE_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn keys(secret: &str) -> SessionKeys {
    SessionKeys::from_secret(&SecretString::from(secret)).unwrap()
}

fn cookie(secret: &str) -> SessionCookie {
    SessionCookie::builder("s", keys(secret)).build().unwrap()
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn hour() -> SystemTime {
    now() + Duration::from_secs(3600)
}

/// A request whose `Cookie` header carries the name=value part of each `Set-Cookie`.
fn request_from(set_cookies: &[HeaderValue]) -> HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|h| h.to_str().unwrap().split(';').next().unwrap())
        .collect();
    request(&pairs.join("; "))
}

fn request(cookie_header: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.append(COOKIE, HeaderValue::from_str(cookie_header).unwrap());
    headers
}

fn opened(c: &SessionCookie, headers: &HeaderMap) -> Option<Vec<u8>> {
    c.open(headers, now()).map(|p| p.expose_secret().to_vec())
}

#[test]
fn short_line_is_refused_by_number_without_its_content() {
    let secret = format!("{LINE_A}\n\nshort-secret\n");
    let err = SessionKeys::from_secret(&SecretString::from(secret)).unwrap_err();
    assert_eq!(err, SessionKeysError::ShortLine { line: 3 });
    let text = err.to_string();
    assert!(
        text.contains("line 3") && !text.contains("short-secret"),
        "{text}"
    );
}

#[test]
fn empty_and_oversized_secrets_are_refused() {
    let empty = SessionKeys::from_secret(&SecretString::from(" \n\n")).unwrap_err();
    assert_eq!(empty, SessionKeysError::NoKeys);
    let many = vec![LINE_A; SessionKeys::MAX_KEYS + 1].join("\n");
    let err = SessionKeys::from_secret(&SecretString::from(many)).unwrap_err();
    assert_eq!(err, SessionKeysError::TooManyKeys);
}

#[test]
fn debug_shows_no_key_material() {
    let k = keys(&format!("{LINE_A}\r\n{LINE_B}\r\n"));
    assert_eq!(k.len(), 2);
    let debug = format!("{:?}", SessionCookie::builder("s", k).build().unwrap());
    assert!(
        debug.contains("keys: 2") && !debug.contains("aaaa"),
        "{debug}"
    );
}

#[test]
fn rotation_seals_with_the_first_line_and_opens_with_any() {
    let old = keys(LINE_A);
    let rotated = keys(&format!("{LINE_B}\n{LINE_A}"));
    let sealed_old = old.seal("s", b"x", hour()).unwrap();
    assert!(rotated.open("s", &sealed_old, now()).is_some());
    let sealed_new = rotated.seal("s", b"x", hour()).unwrap();
    assert!(old.open("s", &sealed_new, now()).is_none());
    assert!(keys(LINE_B).open("s", &sealed_new, now()).is_some());
}

#[test]
fn other_name_other_key_and_expiry_open_nothing() {
    let k = keys(LINE_A);
    let sealed = k.seal("s", b"x", hour()).unwrap();
    assert!(k.open("s", &sealed, now()).is_some());
    assert!(k.open("t", &sealed, now()).is_none());
    assert!(keys(LINE_B).open("s", &sealed, now()).is_none());
    assert!(k.open("s", &sealed, hour()).is_none());
    assert!(
        k.open("s", &sealed.replacen("v1.", "v2.", 1), now())
            .is_none()
    );
}

#[test]
fn nonces_differ_between_seals() {
    let k = keys(LINE_A);
    assert_ne!(
        k.seal("s", b"x", hour()).unwrap(),
        k.seal("s", b"x", hour()).unwrap()
    );
}

#[test]
fn every_truncation_and_bit_flip_opens_nothing() {
    let k = keys(LINE_A);
    let sealed = k.seal("s", b"payload", hour()).unwrap();
    for end in 0..sealed.len() {
        assert!(
            k.open("s", &sealed[..end], now()).is_none(),
            "truncated at {end}"
        );
    }
    let bytes = sealed.as_bytes();
    for i in 3..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        assert!(k.open("s", &changed, now()).is_none(), "changed at {i}");
    }
}

#[test]
fn set_cookie_has_the_attributes() {
    let c = cookie(LINE_A);
    let headers = c
        .set_cookies(&HeaderMap::new(), b"x", hour(), now())
        .unwrap();
    assert_eq!(headers.len(), 1);
    assert!(headers[0].is_sensitive());
    let text = headers[0].to_str().unwrap();
    assert!(text.starts_with("s=v1."));
    assert!(
        text.ends_with("; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax; Secure"),
        "{text}"
    );
    assert!(!text.to_ascii_lowercase().contains("domain"));
    assert_eq!(opened(&c, &request_from(&headers)).unwrap(), b"x");
}

#[test]
fn insecure_only_on_loopback_and_prefixes_need_secure() {
    let b = |name: &str| SessionCookie::builder(name, keys(LINE_A));
    let c = b("s").insecure_loopback_http("127.0.0.1").build().unwrap();
    let header = c
        .set_cookies(&HeaderMap::new(), b"x", hour(), now())
        .unwrap();
    assert!(!header[0].to_str().unwrap().contains("Secure"));
    let err = b("s")
        .insecure_loopback_http("mlflow.example.com")
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        SessionCookieBuildError::NotLoopback("mlflow.example.com".into())
    );
    let err = b("__Host-s")
        .insecure_loopback_http("localhost")
        .build()
        .unwrap_err();
    assert_eq!(err, SessionCookieBuildError::PrefixRules("__Host-s".into()));
    assert!(matches!(
        b("__Host-s").path("/cb").build(),
        Err(SessionCookieBuildError::PrefixRules(_))
    ));
    assert!(matches!(
        b("a;b").build(),
        Err(SessionCookieBuildError::InvalidName(_))
    ));
    assert!(matches!(
        b("").build(),
        Err(SessionCookieBuildError::InvalidName(_))
    ));
    assert!(matches!(
        b("s").path("x").build(),
        Err(SessionCookieBuildError::InvalidPath(_))
    ));
    assert!(matches!(
        b("s").max_chunks(11).build(),
        Err(SessionCookieBuildError::MaxChunks(11))
    ));
}

#[test]
fn expiry_must_be_in_the_future() {
    let c = cookie(LINE_A);
    let err = c
        .set_cookies(&HeaderMap::new(), b"x", now(), now())
        .unwrap_err();
    assert_eq!(err, SessionSealError::Expiry);
}

#[test]
fn large_values_split_and_join() {
    let c = cookie(LINE_A);
    let big = vec![7_u8; 10_000];
    let headers = c
        .set_cookies(&HeaderMap::new(), &big, hour(), now())
        .unwrap();
    assert_eq!(headers.len(), 4);
    for (i, h) in headers.iter().enumerate() {
        assert!(h.len() <= SessionCookie::MAX_SET_COOKIE_LEN);
        assert!(h.to_str().unwrap().starts_with(&format!("s.{i}=")));
    }
    assert_eq!(opened(&c, &request_from(&headers)).unwrap(), big);
    // Pairs spread over several Cookie headers, in another order, with junk between.
    let mut spread = HeaderMap::new();
    for h in headers.iter().rev() {
        let pair = h.to_str().unwrap().split(';').next().unwrap();
        spread.append(
            COOKIE,
            HeaderValue::from_str(&format!("junk; ={pair}; x=1; {pair}")).unwrap(),
        );
    }
    assert_eq!(opened(&c, &spread).unwrap(), big);
}

#[test]
fn too_large_for_the_chunk_bound_is_an_error() {
    let c = SessionCookie::builder("s", keys(LINE_A))
        .max_chunks(2)
        .build()
        .unwrap();
    let err = c
        .set_cookies(&HeaderMap::new(), &[0; 9000], hour(), now())
        .unwrap_err();
    assert_eq!(err, SessionSealError::TooLarge);
}

#[test]
fn missing_extra_duplicate_or_mixed_chunks_open_nothing() {
    let c = cookie(LINE_A);
    let headers = c
        .set_cookies(&HeaderMap::new(), &[1; 10_000], hour(), now())
        .unwrap();
    let pairs: Vec<String> = headers
        .iter()
        .map(|h| h.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let with = |pairs: &[String]| opened(&c, &request(&pairs.join("; ")));
    assert!(with(&pairs).is_some());
    assert!(with(&pairs[1..]).is_none(), "first missing");
    assert!(with(&pairs[..3]).is_none(), "last missing");
    assert!(
        with(&[pairs[0].clone(), pairs[2].clone(), pairs[3].clone()]).is_none(),
        "gap"
    );
    let mut extra = pairs.clone();
    extra.push("s.4=v1.AAAA".into());
    assert!(with(&extra).is_none(), "extra chunk");
    let mut dup = pairs.clone();
    dup.push(pairs[1].clone());
    assert!(with(&dup).is_none(), "duplicate chunk");
    let mut swapped = pairs.clone();
    swapped.swap(1, 2);
    let renamed: Vec<String> = swapped
        .iter()
        .enumerate()
        .map(|(i, p)| format!("s.{i}={}", p.split_once('=').unwrap().1))
        .collect();
    assert!(with(&renamed).is_none(), "reordered");
    let small = c
        .set_cookies(&HeaderMap::new(), b"x", hour(), now())
        .unwrap();
    let mut mixed = pairs;
    mixed.push(
        small[0]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned(),
    );
    assert!(with(&mixed).is_none(), "whole and chunks");
}

#[test]
fn a_smaller_session_removes_the_stale_chunks() {
    let c = cookie(LINE_A);
    let large = c
        .set_cookies(&HeaderMap::new(), &[1; 10_000], hour(), now())
        .unwrap();
    let headers = c
        .set_cookies(&request_from(&large), b"x", hour(), now())
        .unwrap();
    let texts: Vec<&str> = headers.iter().map(|h| h.to_str().unwrap()).collect();
    assert_eq!(texts.len(), 5, "{texts:?}");
    assert!(texts[0].starts_with("s=v1."));
    for (i, removal) in texts[1..].iter().enumerate() {
        assert!(
            removal.starts_with(&format!("s.{i}=; Max-Age=0; Path=/;")),
            "{removal}"
        );
    }
}

#[test]
fn logout_removes_every_chunk_present() {
    let c = cookie(LINE_A);
    let removals = c.removal_cookies(&request("other=1; s.0=a; s.1=b; s.7=c; s.x=d; s=e"));
    let names: Vec<&str> = removals
        .iter()
        .map(|h| h.to_str().unwrap().split('=').next().unwrap())
        .collect();
    assert_eq!(names, ["s", "s.0", "s.1", "s.7"]);
    assert!(c.is_own("s.3") && !c.is_own("s.x") && !c.is_own("so"));
}

#[test]
fn remove_from_keeps_only_the_other_cookies() {
    let c = cookie(LINE_A);
    let mut headers = request("a=1; s=x;junk; s.0=y ;b=2");
    headers.append(COOKIE, HeaderValue::from_static("s.1=z"));
    headers.append(COOKIE, HeaderValue::from_static("so=3; s.x=4"));
    c.remove_from(&mut headers);
    let left: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(left, ["a=1; junk; b=2", "so=3; s.x=4"]);
}

#[test]
fn a_value_moved_to_another_cookie_name_opens_nothing() {
    let c = cookie(LINE_A);
    let other = SessionCookie::builder("t", keys(LINE_A)).build().unwrap();
    let headers = c
        .set_cookies(&HeaderMap::new(), b"x", hour(), now())
        .unwrap();
    let value = headers[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("s=")
        .unwrap()
        .to_owned();
    assert!(opened(&other, &request(&format!("t={value}"))).is_none());
    assert!(
        opened(&c, &request(&format!("s=\"{value}\""))).is_some(),
        "quoted value"
    );
}

proptest! {
    #[test]
    fn random_values_never_open_or_panic(value in "\\PC{0,300}", raw in proptest::collection::vec(any::<u8>(), 0..400)) {
        let k = keys(LINE_A);
        prop_assert!(k.open("s", &value, now()).is_none());
        let encoded = format!("v1.{}", base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw));
        prop_assert!(k.open("s", &encoded, now()).is_none());
        if let Ok(header) = HeaderValue::from_bytes(&raw) {
            let mut headers = HeaderMap::new();
            headers.append(COOKIE, header);
            prop_assert!(cookie(LINE_A).open(&headers, now()).is_none());
        }
    }
}
