//! The log on stderr: `RUST_LOG` filters it (default `info`), `--log-format` shapes it.
//!
//! The access log is one INFO event a request on the target
//! [`mlflow_gateway::access`](crate::ACCESS_LOG_TARGET), so the same filter controls it.
//!
//! Access lines are buffered, as nginx's `access_log … buffer= flush=`: a write(2) per
//! request cost more than the rest of the line. They are written in one go at most
//! [`LogGuard::FLUSH_INTERVAL`] after the first of a batch, or by the request that fills
//! [`LogGuard::BUFFER_BYTES`], and when the [`LogGuard`] is dropped. No line is ever dropped:
//! a full buffer is written before the request goes on. Every other line (start-up, warnings,
//! errors) is written at once, after the access lines buffered before it, so the order holds.
//!
//! In the text format the access line is also formatted here, byte for byte as
//! tracing-subscriber's default format writes it (a test compares the two), without its
//! `write!` per field and per timestamp digit group.

use std::{
    fmt, io, mem,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::{self, JoinHandle},
    time::{Duration, SystemTime},
};

use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter, format::Writer},
    registry::LookupSpan,
};

use crate::access_log;

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
/// Call it once, before anything logs, and keep the guard until the end of `main`: dropping it
/// writes the access lines still buffered. A second call installs nothing and returns a guard
/// that does nothing.
///
/// ```
/// use mlflow_gateway::{LogFormat, logging};
///
/// let _log = logging::init(LogFormat::Json);
/// // Already installed: this one is ignored, not a panic.
/// let _ignored = logging::init(LogFormat::Text);
/// ```
pub fn init(format: LogFormat) -> LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let stderr = BufferedStderr::default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr.clone());
    // `try_init`: an embedding program may have installed its own.
    let installed = match format {
        LogFormat::Text => builder
            .event_format(TextLines(tracing_subscriber::fmt::format()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if installed.is_err() {
        return LogGuard(None);
    }
    let shared = Arc::clone(&stderr.0);
    // Without the thread, lines would still be written when the buffer fills or the guard
    // is dropped, only later.
    let flusher = thread::Builder::new()
        .name("access-log".into())
        .spawn(move || flush_batches(&shared))
        .ok();
    LogGuard(Some((stderr, flusher)))
}

/// Keeps the access-log buffer written; see the [module docs](self). Dropping it writes what
/// is left and stops the thread that writes the batches.
#[must_use = "dropping the guard at once stops the buffered writing of access lines"]
#[derive(Debug)]
pub struct LogGuard(Option<(BufferedStderr, Option<JoinHandle<()>>)>);

impl LogGuard {
    /// The longest a buffered access line waits before it is written.
    pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
    /// The access lines buffered at most: the request that fills it writes them all.
    pub const BUFFER_BYTES: usize = 64 * 1024;
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some((stderr, flusher)) = self.0.take() else {
            return;
        };
        lock(&stderr.0.pending).stopping = true;
        stderr.0.wake.notify_one();
        if let Some(flusher) = flusher {
            let _ = flusher.join();
        }
        // Lines logged while the thread stopped.
        let _ = stderr.0.write_pending_to_stderr(&[]);
    }
}

/// The shared state of the writer: access lines waiting, and stderr.
#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the thread when the first line of a batch arrives, or to stop.
    wake: Condvar,
    /// Held while writing to stderr, so that batches and other lines keep their order; holds
    /// the spare buffer that is swapped with the pending one.
    out: Mutex<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    stopping: bool,
}

impl Shared {
    /// Appends an access line; whether the buffer is full (the caller writes it then).
    fn buffer(&self, line: &[u8]) -> bool {
        let mut pending = lock(&self.pending);
        let first = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        let full = pending.lines.len() >= LogGuard::BUFFER_BYTES;
        drop(pending);
        if first && !full {
            self.wake.notify_one();
        }
        full
    }

    /// Writes the pending access lines, then `line`, to `sink` (stderr but in tests).
    fn write_pending(&self, line: &[u8], sink: &mut impl io::Write) -> io::Result<()> {
        let mut batch = lock(&self.out);
        mem::swap(&mut *batch, &mut lock(&self.pending).lines);
        let written = sink.write_all(&batch).and_then(|()| sink.write_all(line));
        batch.clear();
        written
    }

    fn write_pending_to_stderr(&self, line: &[u8]) -> io::Result<()> {
        self.write_pending(line, &mut io::stderr().lock())
    }
}

/// The thread's loop: waits for a first line, lets the batch gather, writes it.
fn flush_batches(shared: &Shared) {
    loop {
        let mut pending = lock(&shared.pending);
        while pending.lines.is_empty() && !pending.stopping {
            pending = shared
                .wake
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let stopping = pending.stopping;
        drop(pending);
        if !stopping {
            thread::sleep(LogGuard::FLUSH_INTERVAL);
        }
        // Nowhere to report a failed write to stderr.
        let _ = shared.write_pending_to_stderr(&[]);
        if stopping {
            return;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves bytes, not a broken invariant.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The subscriber's writer: access lines to the buffer, the others straight to stderr.
#[derive(Clone, Debug, Default)]
struct BufferedStderr(Arc<Shared>);

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.0,
            buffered: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: &self.0,
            buffered: meta.target() == access_log::TARGET,
        }
    }
}

/// One event's writer; the subscriber writes a whole line with one `write_all`.
struct LineWriter<'a> {
    shared: &'a Shared,
    buffered: bool,
}

impl io::Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if !self.buffered {
            self.shared.write_pending_to_stderr(line)?;
        } else if self.shared.buffer(line) {
            self.shared.write_pending_to_stderr(&[])?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The text format: access lines written here, every other event by `default`
/// (tracing-subscriber's `Full` format with its defaults: time, level, target, no ANSI).
#[derive(Debug)]
struct TextLines<F>(F);

impl<S, N, F> FormatEvent<S, N> for TextLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // Inside a span (its name would lead the line), with colours or a message (written
        // differently), the default does it.
        if meta.target() != access_log::TARGET
            || *meta.level() != Level::INFO
            || meta.fields().field("message").is_some()
            || writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
        {
            return self.0.format_event(ctx, writer, event);
        }
        let time = access_log::rfc3339_micros(SystemTime::now());
        // ASCII digits and punctuation only.
        writer.write_str(std::str::from_utf8(&time).map_err(|_| fmt::Error)?)?;
        writer.write_str("  INFO ")?;
        writer.write_str(access_log::TARGET)?;
        writer.write_str(": ")?;
        let mut fields = TextFields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The fields of an access line as tracing-subscriber's `DefaultVisitor` writes them:
/// `name=value` separated by spaces, strings quoted and escaped as `Debug` does (plain ASCII
/// needs no escape, so it is copied), everything else by its `Debug`.
struct TextFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl TextFields<'_, '_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }
}

impl Visit for TextFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let plain = value
            .bytes()
            .all(|byte| (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'\\');
        self.result = self.name(field).and_then(|()| {
            if plain {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            } else {
                write!(self.writer, "{value:?}")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = self
            .name(field)
            .and_then(|()| write!(self.writer, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_lines_follow_the_buffered_access_lines_and_a_full_buffer_is_written() {
        let shared = Shared::default();
        let mut stderr = Vec::new();
        assert!(!shared.buffer(b"access 1\n"));
        assert!(!shared.buffer(b"access 2\n"));
        assert!(stderr.is_empty());
        // A direct line is written after the pending ones.
        shared.write_pending(b"warning\n", &mut stderr).unwrap();
        assert_eq!(stderr, b"access 1\naccess 2\nwarning\n");
        assert!(lock(&shared.pending).lines.is_empty());

        let line = [b'x'; 1000];
        let fit = LogGuard::BUFFER_BYTES / line.len();
        assert!((0..fit).all(|_| !shared.buffer(&line)));
        // This one fills it.
        assert!(shared.buffer(&line));
        stderr.clear();
        shared.write_pending(&[], &mut stderr).unwrap();
        assert_eq!(stderr.len(), (fit + 1) * line.len());
    }

    /// What a subscriber with `format` writes for the events `emit` sends.
    fn text_of<F>(format: F, emit: impl Fn()) -> String
    where
        F: FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&captured);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&sink)))
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(lock(&captured).clone()).unwrap()
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn access_lines_are_written_as_the_default_text_format_writes_them() {
        let client = std::net::IpAddr::from([203, 0, 113, 7]);
        let emit = || {
            for (path, bytes, reason) in [
                ("/api/2.0/mlflow/runs/get", Some(512_u64), "-"),
                // Debug escapes the quote, the backslash and the control character, not the
                // printable non-ASCII one.
                ("/a\"b\\c\u{1b}d\u{e9}", None, "invalid basic credentials"),
            ] {
                tracing::info!(
                    target: access_log::TARGET,
                    time = "2026-12-01T13:04:23.123Z",
                    client = %client,
                    method = "GET",
                    path,
                    version = "HTTP/1.1",
                    status = 401_u16,
                    bytes,
                    duration_ms = 1.25_f64,
                    user = "-",
                    authenticator = "-",
                    reason,
                );
            }
            // Other targets and levels are the default's own.
            tracing::warn!(target: access_log::TARGET, reason = "other level");
            tracing::info!(user = "alice", "a message");
        };
        let ours = text_of(TextLines(tracing_subscriber::fmt::format()), emit);
        let default = text_of(tracing_subscriber::fmt::format(), emit);
        let (ours, default): (Vec<&str>, Vec<&str>) =
            (ours.lines().collect(), default.lines().collect());
        assert_eq!(ours.len(), 4, "{ours:?}");
        assert_eq!(ours.len(), default.len());
        for (ours, default) in ours.iter().zip(&default) {
            // The timestamps differ by the time between the two; their shape does not.
            let (ours_time, ours_rest) = ours.split_at(27);
            let (default_time, default_rest) = default.split_at(27);
            assert_eq!(ours_rest, default_rest);
            let shape = |time: &str| time.replace(|c: char| c.is_ascii_digit(), "0");
            assert_eq!(shape(ours_time), "0000-00-00T00:00:00.000000Z");
            assert_eq!(shape(default_time), shape(ours_time));
        }
        assert!(
            ours[1].contains(r#"path="/a\"b\\c\u{1b}dé""#),
            "{}",
            ours[1]
        );
        assert!(!ours[1].contains("bytes="), "{}", ours[1]);
    }
}
