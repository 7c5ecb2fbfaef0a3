//! The htpasswd parser: one line, and a whole file (duplicates, decoy selection).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mlflow_auth::authenticators::{Htpasswd, HtpasswdHashFormat, parse_htpasswd_line};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(Some(entry)) = parse_htpasswd_line(text) {
        assert!(!entry.username().is_empty());
        assert!(!entry.username().contains(':'));
        let _ = format!("{entry:?}");
        // Only the fast formats: bcrypt and SHA-crypt costs come from the input and could
        // take minutes per run.
        if matches!(
            entry.format(),
            HtpasswdHashFormat::Apr1 | HtpasswdHashFormat::Md5Crypt | HtpasswdHashFormat::Sha1
        ) {
            let _ = entry.verify_blocking(b"mlflow-pass");
            let _ = entry.verify_blocking(data);
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
