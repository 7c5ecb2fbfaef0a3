//! `info` and `doctor`: print the configuration and check it, never the secret.

use std::{process::ExitCode, time::Duration};

use bytes::Bytes;
use http::{Request, Uri};
use secrecy::ExposeSecret;
use tower_mlflow_core::http::{HttpClient, error_chain};
use tower_mlflow_secrets::{
    config::{Config, Provider, VaultAuthConfig},
    source::Fetched,
};

/// Prints the secret's fingerprint and length, and its lifetime when the source gave one.
#[allow(clippy::print_stdout)]
pub(crate) fn print_secret(secret: &Fetched) {
    let bytes = secret.secret().expose_secret().as_bytes();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let hex: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("secret: sha256:{hex} ({} bytes)", bytes.len());
    if let Some(expiry) = secret.expires_in() {
        println!("secret expires in: {}s", expiry.as_secs());
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
        Ok(status) if status == 401 || status == 403 => {
            eprintln!("dry run: FAILED: the server answered {status} (credential rejected)");
            ExitCode::from(1)
        }
        Ok(status) => {
            println!("dry run: ok (HTTP {status})");
            println!("doctor: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dry run: FAILED: {e}");
            ExitCode::from(1)
        }
    }
}

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
                println!("  address: {}", v.address);
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
                println!("  vault url: {}", z.vault_url);
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
) -> Result<u16, String> {
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
    Ok(response.status().as_u16())
}
