//! The command line, parsed by clap (as the gateway's).

use std::ffi::OsString;

use clap::{Parser, Subcommand};

/// Inspect, check and use the mlflow-secrets-auth configuration read from the environment.
#[derive(Debug, Parser)]
#[command(
    name = "mlflow-secrets",
    version,
    after_help = "Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error; \
                  exec: the command's own status (128 + signal when it was killed)."
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
        /// Send one GET to URL; fail on 401, 403 or a network error.
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
