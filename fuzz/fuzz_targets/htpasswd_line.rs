//! The htpasswd parser: one line, and a whole file (duplicates, decoy selection).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mlflow_auth::{__fuzz::HtpasswdLine, authenticators::Htpasswd};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(Some(entry)) = HtpasswdLine::parse(text) {
        assert!(!entry.username().is_empty());
        assert!(!entry.username().contains(':'));
        let _ = format!("{entry:?}");
        // Only the fast formats: bcrypt and SHA-crypt costs come from the input and could
        // take minutes per run.
        if entry.is_cheap_to_verify() {
            let _ = entry.verify(b"mlflow-pass");
            let _ = entry.verify(data);
        }
    }

    match Htpasswd::parse(text) {
        Ok(users) => {
            let _ = format!("{users:?}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
