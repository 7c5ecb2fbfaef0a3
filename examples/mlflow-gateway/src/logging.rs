//! The log on stderr: `RUST_LOG` filters it (default `info`), `--log-format` shapes it.
//!
//! The access log is one INFO line a request on the target
//! [`mlflow_gateway::access`](crate::ACCESS_LOG_TARGET), so the same filter controls it.
//!
//! Access lines are buffered, as nginx's `access_log … buffer= flush=`: a write(2) per
//! request cost more than the rest of the line. They are written in one go at most
//! [`LogGuard::FLUSH_INTERVAL`] after the first of a batch, or by the request that fills
//! [`LogGuard::BUFFER_BYTES`], and when the [`LogGuard`] is dropped. No line is ever dropped:
//! a full buffer is written before the request goes on. Every other line (start-up, warnings,
//! errors) is written at once, after the access lines buffered before it, so the order holds.
//!
//! With this subscriber installed, access lines skip tracing's formatters: the access log
//! writes them into the buffer itself, through its `AccessSink`, byte for byte as the format
//! chosen here would (see `access_log::line`).

use std::{
    io, mem,
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError},
    thread::{self, JoinHandle},
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;
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
        LogFormat::Text => builder.try_init(),
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
    let _ = ACCESS_SINK.set(AccessSink {
        shared: Arc::clone(&stderr.0),
        format,
    });
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
    /// Appends an access line written by `write`; whether the buffer is full (the caller
    /// writes it then). `write` runs under the lock: it must not log.
    fn buffer(&self, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut pending = lock(&self.pending);
        let first = pending.lines.is_empty();
        write(&mut pending.lines);
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

/// The subscriber's writer: every line it formats goes to stderr, after the access lines
/// buffered before it.
#[derive(Clone, Debug, Default)]
struct BufferedStderr(Arc<Shared>);

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(&self.0)
    }
}

/// One event's writer; the subscriber writes a whole line with one `write_all`.
struct LineWriter<'a>(&'a Shared);

impl io::Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.0.write_pending_to_stderr(line)?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The access-log buffer of the subscriber [`init`] installed, and its format.
static ACCESS_SINK: OnceLock<AccessSink> = OnceLock::new();

/// Where the access log writes its lines when [`init`] installed the subscriber.
#[derive(Debug)]
pub(crate) struct AccessSink {
    shared: Arc<Shared>,
    format: LogFormat,
}

impl AccessSink {
    /// The sink of the installed subscriber, if [`init`] installed it.
    pub(crate) fn installed() -> Option<&'static Self> {
        ACCESS_SINK.get()
    }

    /// The installed subscriber's format, which access lines follow.
    pub(crate) fn format(&self) -> LogFormat {
        self.format
    }

    /// Appends the line `write` writes (a whole line, with its newline; it runs under the
    /// buffer's lock, so it must not log), and writes the buffer out if that filled it.
    pub(crate) fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.shared.buffer(write) {
            // Nowhere to report a failed write to stderr.
            let _ = self.shared.write_pending_to_stderr(&[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_lines_follow_the_buffered_access_lines_and_a_full_buffer_is_written() {
        let shared = Shared::default();
        let mut stderr = Vec::new();
        assert!(!shared.buffer(|out| out.extend_from_slice(b"access 1\n")));
        assert!(!shared.buffer(|out| out.extend_from_slice(b"access 2\n")));
        assert!(stderr.is_empty());
        // A direct line is written after the pending ones.
        shared.write_pending(b"warning\n", &mut stderr).unwrap();
        assert_eq!(stderr, b"access 1\naccess 2\nwarning\n");
        assert!(lock(&shared.pending).lines.is_empty());

        let line = [b'x'; 1000];
        let fit = LogGuard::BUFFER_BYTES / line.len();
        assert!((0..fit).all(|_| !shared.buffer(|out| out.extend_from_slice(&line))));
        // This one fills it.
        assert!(shared.buffer(|out| out.extend_from_slice(&line)));
        stderr.clear();
        shared.write_pending(&[], &mut stderr).unwrap();
        assert_eq!(stderr.len(), (fit + 1) * line.len());
    }
}
