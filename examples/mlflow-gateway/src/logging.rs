//! The log on stderr: `RUST_LOG` filters it (default `info`), `--log-format` shapes it.
//!
//! The access log is one INFO event a request on the target
//! [`mlflow_gateway::access`](crate::ACCESS_LOG_TARGET), so the same filter controls it.

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// `TIME LEVEL TARGET: field=value …`, for people.
    #[default]
    Text,
    /// One JSON object a line, the event's fields at the top level next to `timestamp`,
    /// `level` and `target`, for log collectors.
    Json,
}

/// Installs the global subscriber: stderr, `RUST_LOG` (default `info`), `format`.
///
/// Call it once, before anything logs; a second call does nothing.
///
/// ```
/// use mlflow_gateway::{LogFormat, logging};
///
/// logging::init(LogFormat::Json);
/// // Already installed: this one is ignored, not a panic.
/// logging::init(LogFormat::Text);
/// ```
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: an embedding program may have installed its own.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
