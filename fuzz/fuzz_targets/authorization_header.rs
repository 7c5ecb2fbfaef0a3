//! `Credentials::from_authorization_header` on arbitrary bytes; a `\n` in the input splits it
//! into several `Authorization` headers.
#![no_main]

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret as _;
use tower_mlflow_auth::Credentials;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for value in data.split(|&b| b == b'\n') {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        headers.append(AUTHORIZATION, value);
    }

    let Ok(credentials) = Credentials::from_authorization_header(&headers) else {
        return;
    };
    let debug = format!("{credentials:?}");
    match credentials {
        Credentials::Basic { username, password } => {
            assert!(!username.is_empty() && !username.contains(':'));
            // Debug shows the username and nothing of the password.
            assert_eq!(
                debug,
                format!("Basic {{ username: {username:?}, password: \"[redacted]\" }}")
            );
            // What was parsed is what a client would have sent.
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose_secret()));
            let mut again = HeaderMap::new();
            again.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
            );
            match Credentials::from_authorization_header(&again) {
                Ok(Credentials::Basic {
                    username: u,
                    password: p,
                }) => {
                    assert_eq!(u, username);
                    assert_eq!(p.expose_secret(), password.expose_secret());
                }
                other => panic!("re-encoded credentials did not parse back: {other:?}"),
            }
        }
        Credentials::Bearer { token } => {
            assert!(!token.expose_secret().is_empty());
            assert_eq!(debug, "Bearer { token: \"[redacted]\" }");
        }
        other => panic!("unexpected credentials from an Authorization header: {other:?}"),
    }
});
