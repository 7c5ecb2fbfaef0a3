//! `info` and `doctor`: print the configuration and check it, never the secret.
//!
//! What is printed about the secret cannot confirm a guess offline: its length, and a
//! fingerprint keyed with a random key made for this run (HMAC-SHA256, 48 bits shown). Two
//! fingerprints printed by the same run are equal when the secrets are; fingerprints from
//! different runs cannot be compared, and without the key (never printed, never stored)
//! nobody can test a candidate secret against one. URLs are printed without userinfo,
//! query or fragment.

use std::{process::ExitCode, sync::OnceLock, time::Duration};

use aws_lc_rs::{hmac, rand::SecureRandom};
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use secrecy::ExposeSecret;
use tower_mlflow_core::http::{HttpClient, error_chain};
use tower_mlflow_secrets::{
    config::{Config, Provider, VaultAuthConfig},
    source::Fetched,
};

/// Prints the secret's length and keyed fingerprint, and its lifetime when the source gave
/// one.
#[allow(clippy::print_stdout)]
pub(crate) fn print_secret(secret: &Fetched) {
    let bytes = secret.secret().expose_secret().as_bytes();
    println!(
        "secret: {} bytes, fingerprint {} (keyed per run: comparable only within this run)",
        bytes.len(),
        fingerprint(bytes)
    );
    if let Some(expiry) = secret.expires_in() {
        println!("secret expires in: {}s", expiry.as_secs());
    }
}

/// `hmac:` and 12 hex digits of HMAC-SHA256(`run key`, `secret`), the key drawn once per
/// process from the system's random source.
pub(crate) fn fingerprint(secret: &[u8]) -> String {
    static RUN_KEY: OnceLock<Option<hmac::Key>> = OnceLock::new();
    let key = RUN_KEY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut bytes)
            .ok()
            .map(|()| hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    });
    // Without randomness there is no safe fingerprint; the length alone still helps.
    let Some(key) = key else {
        return "unavailable".to_owned();
    };
    let tag = hmac::sign(key, secret);
    let hex: String = tag.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("hmac:{hex}")
}

/// `url` with userinfo, query and fragment removed, for printing; a value that is not a URL
/// is not printed at all (it might be a secret pasted into the wrong variable).
pub(crate) fn printable_url(url: &str) -> String {
    match url.trim().parse::<Uri>() {
        Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => {
            format!("{}{}", origin(&uri), uri.path().trim_end_matches('/'))
        }
        _ => "(not a valid URL)".to_owned(),
    }
}

/// The `doctor` checks after a successful fetch: the header renders, and with `--dry-run`
/// the URL is allowed and the server accepts the credential.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub(crate) async fn doctor(
    config: &Config,
    secret: &Fetched,
    dry_run_url: Option<String>,
) -> ExitCode {
    let header = match config.template().render(secret.secret()) {
        Ok(value) => value,
        Err(e) => {
            eprintln!("header: FAILED: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "header: ok ({} with {} bytes)",
        config.template().name(),
        header.len()
    );
    let Some(url) = dry_run_url else {
        println!("doctor: ok");
        return ExitCode::SUCCESS;
    };
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(_) => {
            eprintln!("error: --dry-run URL is not a valid URL");
            return ExitCode::from(2);
        }
    };
    if !config.allowlist().allows(&uri) {
        eprintln!(
            "allowlist: FAILED: {} is not allowed (https required unless loopback); allowed: {}",
            origin(&uri),
            config.allowed_hosts()
        );
        return ExitCode::from(1);
    }
    println!("allowlist: ok ({})", origin(&uri));
    match dry_run(uri, config.template().name().clone(), header).await {
        Ok(status) if status.is_success() => {
            println!("dry run: ok (HTTP {})", status.as_u16());
            println!("doctor: ok");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!(
                "dry run: FAILED: the server answered {} ({})",
                status.as_u16(),
                failed_status_reason(status)
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("dry run: FAILED: network error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Why a dry run that got `status` (not 2xx) proves nothing good.
fn failed_status_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        // Not followed: a redirect is often a sign-in page for requests without credentials.
        300..=399 => "a redirect: dry-run the URL it points to",
        401 | 403 => "credential rejected",
        404 => "not found: dry-run a URL the credential may read, such as the server's root",
        407 => "a proxy on the way wants its own credentials",
        500..=599 => "server error: the credential could not be checked",
        _ => "request refused: the credential could not be checked",
    }
}

/// `scheme://host[:port]`, without userinfo.
pub(crate) fn origin(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority()
            .map_or("?", |a| a.as_str().rsplit('@').next().unwrap_or("?"))
    )
}

#[allow(clippy::print_stdout)]
pub(crate) fn print_config(config: &Config, verbose: bool) {
    for (i, provider) in config.providers().iter().enumerate() {
        println!("provider[{i}]: {}", provider.slug());
        match provider {
            Provider::Vault(v) => {
                println!("  address: {}", printable_url(&v.address));
                let auth = match &v.auth {
                    VaultAuthConfig::AppRole { mount, .. } => format!("approle (mount {mount})"),
                    _ => "token".to_owned(),
                };
                println!("  auth: {auth}");
                println!("  path: {}", v.path);
                if verbose {
                    println!("  mount: {}", v.mount.as_deref().unwrap_or("(detected)"));
                    println!(
                        "  kv version: {}",
                        v.kv_version
                            .map_or("(detected)".to_owned(), |n| n.to_string())
                    );
                    println!(
                        "  secret version: {}",
                        v.version.map_or("latest".to_owned(), |n| n.to_string())
                    );
                    println!(
                        "  namespace: {}",
                        v.namespace.as_deref().unwrap_or("(none)")
                    );
                    println!("  custom CA: {}", v.ca_cert.is_some());
                    println!("  client certificate: {}", v.client_cert.is_some());
                }
            }
            Provider::Aws(a) => {
                println!("  secret id: {}", a.secret_id);
                println!("  region: {}", a.region.as_deref().unwrap_or("(SDK chain)"));
                if verbose {
                    println!(
                        "  version: {}",
                        a.version_id
                            .as_deref()
                            .or(a.version_stage.as_deref())
                            .unwrap_or("AWSCURRENT")
                    );
                }
            }
            Provider::Azure(z) => {
                println!("  vault url: {}", printable_url(&z.vault_url));
                println!("  secret name: {}", z.secret_name);
                if verbose {
                    println!("  version: {}", z.version.as_deref().unwrap_or("latest"));
                }
            }
            _ => {}
        }
    }
    println!("fallback: {}", config.fallback());
    println!("ttl: {}s", config.ttl().as_secs());
    println!(
        "header: {} ({:?}, {:?})",
        config.template().name(),
        config.template().mode(),
        config.template().format()
    );
    println!("allowed hosts: {}", config.allowed_hosts());
    if verbose {
        println!("on disallowed host: {:?}", config.on_disallowed_host());
    }
}

async fn dry_run(
    uri: Uri,
    name: http::HeaderName,
    value: http::HeaderValue,
) -> Result<StatusCode, String> {
    let client = HttpClient::builder()
        .timeout(Duration::from_secs(30))
        // Only the status matters; the body is read and dropped, whatever its size.
        .max_body_len(usize::MAX)
        .build()
        .map_err(|e| e.to_string())?;
    let request = Request::get(uri)
        .header(name, value)
        .body(Bytes::new())
        .map_err(|_| "invalid request".to_owned())?;
    let response = client.send(request).await.map_err(|e| error_chain(&e))?;
    Ok(response.status())
}

#[cfg(test)]
mod tests {
    use super::{failed_status_reason, fingerprint, printable_url};

    #[test]
    fn urls_are_printed_without_userinfo_query_or_fragment() {
        assert_eq!(
            printable_url("https://user:hunter2@vault.example.com:8200/?token=abc#x"),
            "https://vault.example.com:8200"
        );
        assert_eq!(
            printable_url("https://kv.vault.azure.net/"),
            "https://kv.vault.azure.net"
        );
        assert_eq!(
            printable_url("https://h.example/sub/path?sig=s3cr3t"),
            "https://h.example/sub/path"
        );
        assert_eq!(printable_url("hvs.not-a-url"), "(not a valid URL)");
    }

    #[test]
    fn the_fingerprint_is_keyed_not_a_plain_hash() {
        let secret = b"admin:password1234";
        let first = fingerprint(secret);
        assert_eq!(first, fingerprint(secret), "stable within one run");
        assert_ne!(first, fingerprint(b"admin:password1235"));
        let plain = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        let plain: String = plain.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            first.starts_with("hmac:") && !first.contains(&plain),
            "{first}"
        );
    }

    #[test]
    fn every_failed_status_has_a_reason() {
        for (status, word) in [
            (302, "redirect"),
            (401, "rejected"),
            (404, "not found"),
            (503, "server error"),
        ] {
            let status = http::StatusCode::from_u16(status).unwrap();
            assert!(failed_status_reason(status).contains(word), "{status}");
        }
    }
}
