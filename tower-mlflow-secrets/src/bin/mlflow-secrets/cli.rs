//! The command line, parsed by clap (as the gateway's).

use std::{ffi::OsString, net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

/// Inspect, check and use the mlflow-secrets-auth configuration read from the environment.
#[derive(Debug, Parser)]
#[command(
    name = "mlflow-secrets",
    version,
    after_help = "Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error; \
                  exec: the command's own status (128 + signal when it was killed); \
                  proxy: 0 after a clean stop on SIGTERM or SIGINT."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// More detail (never the secret).
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print the resolved configuration and the secret's fingerprint.
    Info,
    /// Validate, fetch, build the header, check the allowlist.
    Doctor {
        /// Send one GET to URL; fail unless it answers 2xx (401, 403, 3xx, 5xx, network errors).
        #[arg(long, value_name = "URL")]
        dry_run: Option<String>,
    },
    /// Run CMD with MLflow's credential variables set from the secret
    /// (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD).
    Exec {
        /// The command and its arguments (`--` before them is optional).
        #[arg(
            value_name = "CMD",
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        command: Vec<OsString>,
    },
    /// Serve a local HTTP proxy for MLFLOW_TRACKING_URI that adds the credential to every
    /// request (refreshed ahead of expiry, fetched again after a 401); point any MLflow
    /// client's MLFLOW_TRACKING_URI at it. Prints `listening on http://ADDR` first; stops
    /// on SIGTERM or SIGINT after the requests under way.
    Proxy(ProxyArgs),
}

/// The options of `proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The address to listen on, IP:PORT; port 0 picks a free one (printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5001")]
    pub(crate) listen: SocketAddr,
    /// Accept a --listen address that is not loopback: whoever can reach it gets the
    /// credential's access to the tracking server.
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// Request bodies of a known length up to BYTES are held so that they can be sent again
    /// after a 401; longer or chunked ones stream through and get the 401 as it came.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub(crate) max_replay_body: u64,
    /// PEM bundle of the CAs trusted for an https tracking server, instead of the public
    /// (webpki) roots [default: $MLFLOW_TRACKING_SERVER_CERT_PATH, as the MLflow client].
    #[arg(long, value_name = "FILE")]
    pub(crate) upstream_ca: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, error::ErrorKind};

    use super::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mlflow-secrets").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verbose_is_accepted_before_and_after_the_command() {
        assert!(parse(&["-v", "info"]).unwrap().verbose);
        assert!(parse(&["doctor", "--verbose"]).unwrap().verbose);
        assert!(!parse(&["info"]).unwrap().verbose);
    }

    #[test]
    fn dry_run_is_a_doctor_option() {
        let cli = parse(&["doctor", "--dry-run", "https://x.example/"]).unwrap();
        assert!(
            matches!(cli.command, Command::Doctor { dry_run: Some(url) } if url == "https://x.example/")
        );
        assert!(parse(&["info", "--dry-run", "https://x.example/"]).is_err());
        assert!(parse(&["doctor", "--dry-run"]).is_err());
    }

    #[test]
    fn exec_takes_the_rest_with_or_without_a_double_dash() {
        for args in [
            &["exec", "sh", "-c", "exit 3", "--verbose"][..],
            &["exec", "--", "sh", "-c", "exit 3", "--verbose"][..],
        ] {
            let Command::Exec { command } = parse(args).unwrap().command else {
                panic!("not exec: {args:?}");
            };
            assert_eq!(command, ["sh", "-c", "exit 3", "--verbose"]);
        }
        assert_eq!(
            parse(&["exec"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn proxy_defaults_to_a_loopback_port_and_parses_its_options() {
        let Command::Proxy(args) = parse(&["proxy"]).unwrap().command else {
            panic!("not proxy");
        };
        assert_eq!(args.listen, "127.0.0.1:5001".parse().unwrap());
        assert!(!args.allow_remote);
        assert_eq!(args.max_replay_body, 1 << 20);
        assert!(args.upstream_ca.is_none());
        let cli = parse(&[
            "proxy",
            "--listen",
            "[::]:0",
            "--allow-remote",
            "--max-replay-body",
            "0",
            "--upstream-ca",
            "/ca.pem",
        ])
        .unwrap();
        let Command::Proxy(args) = cli.command else {
            panic!("not proxy");
        };
        assert_eq!(args.listen, "[::]:0".parse().unwrap());
        assert!(args.allow_remote);
        assert_eq!(args.max_replay_body, 0);
        assert_eq!(args.upstream_ca.unwrap(), std::path::Path::new("/ca.pem"));
        let err = parse(&["proxy", "--listen", "localhost"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn every_proxy_flag_is_in_the_help() {
        let help = Cli::command()
            .find_subcommand_mut("proxy")
            .unwrap()
            .render_long_help()
            .to_string();
        for flag in [
            "--listen",
            "--allow-remote",
            "--max-replay-body",
            "--upstream-ca",
            "[default: 127.0.0.1:5001]",
            "[default: 1048576]",
        ] {
            assert!(help.contains(flag), "{flag} missing from:\n{help}");
        }
    }

    #[test]
    fn unknown_commands_and_help_and_version() {
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&[]).is_err());
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
    }
}
