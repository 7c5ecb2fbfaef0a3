//! Provider endpoints that come from configuration (`AWS_ENDPOINT_URL*`,
//! `AZURE_AUTHORITY_HOST`, `IDENTITY_ENDPOINT`): credentials go there and secrets come back,
//! so they must be `https`, except on loopback (a local emulator, App Service's identity
//! endpoint on `http://localhost:…`).

use http::Uri;
use tower_mlflow_core::net::is_loopback_host;

/// Whether `url` is an absolute `https` URL, or plain `http` to a loopback host.
pub(crate) fn is_https_or_loopback(url: &str) -> bool {
    let Ok(uri) = url.trim().parse::<Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => is_loopback_host(host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_https_or_loopback;

    #[test]
    fn https_anywhere_plain_http_only_on_loopback() {
        for ok in [
            "https://secretsmanager.eu-west-1.amazonaws.com",
            "https://login.microsoftonline.us/",
            "http://127.0.0.1:5000",
            "http://localhost:41741/msi/token/",
            "http://[::1]:4566",
        ] {
            assert!(is_https_or_loopback(ok), "{ok}");
        }
        for bad in [
            "http://secretsmanager.internal:4566",
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "http://127.0.0.1.example.com",
            "ftp://127.0.0.1",
            "127.0.0.1:5000",
            "",
        ] {
            assert!(!is_https_or_loopback(bad), "{bad}");
        }
    }
}
