//! `ReturnPath::parse` on arbitrary text: whatever it accepts is a path on the gateway's own
//! origin, by the crate's rules and by a WHATWG URL parser (what a browser does with a
//! `Location`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mlflow_auth::session::ReturnPath;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(candidate) = std::str::from_utf8(data) else {
        return;
    };
    let Some(path) = ReturnPath::parse(candidate) else {
        return;
    };
    let path = path.as_str();
    assert_eq!(path, candidate, "accepted paths are kept as given");
    assert!(path.len() <= ReturnPath::MAX_LEN);
    assert!(path.starts_with('/'));
    assert!(!path.starts_with("//") && !path.starts_with("/\\"));
    assert!(!path.contains('\\'));
    // No control character, whitespace or non-ASCII byte.
    assert!(path.bytes().all(|b| b.is_ascii_graphic()), "{path:?}");
    let before_query = path.split('?').next().unwrap_or(path).to_ascii_lowercase();
    assert!(!before_query.contains("//"), "{path:?}");
    assert!(
        !before_query.contains("%2f") && !before_query.contains("%5c"),
        "{path:?}"
    );

    let base = Url::parse("https://mlflow.example.com/#/experiments").unwrap();
    let landed = base.join(path).unwrap();
    assert_eq!(landed.origin(), base.origin(), "{path:?} leaves the origin");
});
