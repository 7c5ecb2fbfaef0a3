//! The werkzeug hash parser behind `MlflowUsers` (rows of MLflow's `users` table).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mlflow_auth::__fuzz::WerkzeugHash;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // Default limits: parsing alone must never panic, whatever the parameters.
    let default = WerkzeugHash::parse(text);
    if let Err(error) = &default {
        let _ = error.to_string();
    }

    // Tight limits keep verification to microseconds, so it can run on every input.
    if let Ok(hash) = WerkzeugHash::parse_cheap(text) {
        // Anything accepted under tighter limits is accepted under the defaults.
        assert_eq!(default.as_ref().ok(), Some(&hash));
        let method = hash.to_string();
        assert!(
            method.starts_with("scrypt:") || method.starts_with("pbkdf2:"),
            "{method}"
        );
        assert!(!method.contains('$'));
        let _ = format!("{hash:?}");
        let _ = hash.verify(b"password1234");
        let _ = hash.verify(data);
    }
});
