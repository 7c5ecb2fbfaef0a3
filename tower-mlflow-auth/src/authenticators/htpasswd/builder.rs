use std::{path::PathBuf, sync::Arc, time::Duration};

use super::{Htpasswd, error::HtpasswdBuildError, watch::WatchedFile};

/// Configures a file-backed [`Htpasswd`]; made by [`Htpasswd::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct HtpasswdBuilder {
    path: PathBuf,
    refresh_interval: Duration,
    poll: bool,
}

impl HtpasswdBuilder {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            refresh_interval: Htpasswd::DEFAULT_REFRESH_INTERVAL,
            poll: true,
        }
    }

    /// How often the file is checked for changes (default
    /// [`Htpasswd::DEFAULT_REFRESH_INTERVAL`]). `Duration::ZERO` checks on every request
    /// (one `stat` on the blocking pool per request, while no check is running).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Whether the file is checked for changes on its own (default `true`). With `false`,
    /// only [`Htpasswd::refresh`] reads it again.
    pub fn poll(mut self, poll: bool) -> Self {
        self.poll = poll;
        self
    }

    /// Reads the file now, on the calling thread; call this at startup.
    ///
    /// # Errors
    ///
    /// [`HtpasswdBuildError::Io`] when the file cannot be read,
    /// [`HtpasswdBuildError::TooLarge`] over [`Htpasswd::MAX_FILE_LEN`], and the errors of
    /// [`Htpasswd::parse`].
    pub fn build(self) -> Result<Htpasswd, HtpasswdBuildError> {
        let interval = self.poll.then_some(self.refresh_interval);
        let (file, table) = WatchedFile::open(self.path, interval)?;
        Ok(Htpasswd::from_table(table, Some(Arc::new(file))))
    }
}
