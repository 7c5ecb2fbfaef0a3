//! `SessionCookie::open` on arbitrary `Cookie` headers (a `\n` in the input splits it into
//! several) never panics and opens nothing; arbitrary plaintext seals and opens to the same
//! bytes; any change to a sealed value opens nothing.
#![no_main]

use std::{
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderValue, header::COOKIE};
use libfuzzer_sys::fuzz_target;
use secrecy::{ExposeSecret as _, SecretString};
use tower_mlflow_auth::session::{SessionCookie, SessionKeys, SessionSealError};

static COOKIE_JAR: LazyLock<SessionCookie> = LazyLock::new(|| {
    let secret = SecretString::from("a-fuzzing-session-secret-of-at-least-32-bytes");
    let keys = SessionKeys::from_secret(&secret).unwrap();
    SessionCookie::builder("session", keys)
        .max_chunks(SessionCookie::MAX_CHUNKS)
        .build()
        .unwrap()
});

/// A fixed wall-clock time, so that a run does not depend on when it happens.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// The request `Cookie` header a browser sends back for these `Set-Cookie` headers.
fn sent_back(set_cookies: &[HeaderValue]) -> HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|header| header.to_str().unwrap().split(';').next().unwrap())
        .collect();
    let mut request = HeaderMap::new();
    request.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
    request
}

fuzz_target!(|data: &[u8]| {
    let cookie = &*COOKIE_JAR;

    // Arbitrary Cookie headers: never a panic, and nothing a fuzzer can forge opens.
    let mut request = HeaderMap::new();
    for value in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request.append(COOKIE, value);
        }
    }
    assert!(cookie.open(&request, now()).is_none());
    let removals = cookie.removal_cookies(&request);
    assert!(!removals.is_empty(), "the bare name is always removed");
    let mut stripped = request.clone();
    cookie.remove_from(&mut stripped);
    assert!(cookie.removal_cookies(&stripped).len() == 1);

    // The input as plaintext: it opens to the same bytes, until it expires.
    let expires_at = now() + Duration::from_secs(3600);
    let set_cookies = match cookie.set_cookies(&HeaderMap::new(), data, expires_at, now()) {
        Ok(set_cookies) => set_cookies,
        Err(SessionSealError::TooLarge) => {
            assert!(
                data.len() > 3 * SessionCookie::MAX_SET_COOKIE_LEN,
                "{}",
                data.len()
            );
            return;
        }
        Err(error) => panic!("sealing failed: {error}"),
    };
    assert!(
        set_cookies
            .iter()
            .all(|h| h.len() <= SessionCookie::MAX_SET_COOKIE_LEN)
    );
    let request = sent_back(&set_cookies);
    let opened = cookie.open(&request, now()).expect("a fresh value opens");
    assert_eq!(opened.expose_secret(), data);
    assert!(cookie.open(&request, expires_at).is_none(), "expired");

    // One byte of the sealed value changed (position and change from the input): nothing.
    if let [at, flip, ..] = *data
        && flip != 0
        && set_cookies.len() == 1
    {
        let pair = set_cookies[0].to_str().unwrap().split(';').next().unwrap();
        let value_start = "session=".len();
        let mut tampered = pair.as_bytes().to_vec();
        let index = value_start + usize::from(at) % (tampered.len() - value_start);
        tampered[index] ^= flip;
        if let Ok(value) = HeaderValue::from_bytes(&tampered) {
            let mut request = HeaderMap::new();
            request.insert(COOKIE, value);
            assert!(
                cookie.open(&request, now()).is_none(),
                "tampered at {index}"
            );
        }
    }
});
