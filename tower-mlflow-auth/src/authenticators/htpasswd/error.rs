//! What can go wrong: loading a file ([`HtpasswdBuildError`]) and at run time
//! ([`HtpasswdError`]). No variant ever shows a hash or a password.

use std::{error::Error, fmt, io, path::PathBuf, sync::Arc};

use super::{Htpasswd, line::HtpasswdLineError};

/// An htpasswd file or text that cannot be loaded, from [`HtpasswdBuilder::build`],
/// [`Htpasswd::from_file`] and [`Htpasswd::parse`].
///
/// [`HtpasswdBuilder::build`]: super::HtpasswdBuilder::build
#[derive(Debug)]
#[non_exhaustive]
pub enum HtpasswdBuildError {
    /// The file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is larger than [`Htpasswd::MAX_FILE_LEN`].
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A line was refused.
    InvalidLine {
        /// The file, unless the text was given directly.
        path: Option<PathBuf>,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        error: HtpasswdLineError,
    },
    /// A user is listed twice.
    DuplicateUser {
        /// The file, unless the text was given directly.
        path: Option<PathBuf>,
        /// The line number of the second entry, from 1.
        line: usize,
        /// The line number of the first entry.
        first_line: usize,
    },
}

impl fmt::Display for HtpasswdBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |path: &Option<PathBuf>| match path {
            Some(path) => format!("{}: ", path.display()),
            None => String::new(),
        };
        match self {
            Self::Io { path, source } => {
                write!(f, "cannot read htpasswd file {}: {source}", path.display())
            }
            Self::TooLarge { path } => write!(
                f,
                "htpasswd file {} is larger than {} bytes",
                path.display(),
                Htpasswd::MAX_FILE_LEN
            ),
            Self::InvalidLine { path, line, error } => {
                write!(f, "{}line {line}: {error}", at(path))
            }
            Self::DuplicateUser {
                path,
                line,
                first_line,
            } => write!(
                f,
                "{}line {line}: user already defined on line {first_line}",
                at(path)
            ),
        }
    }
}

impl Error for HtpasswdBuildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::InvalidLine { error, .. } => Some(error),
            Self::TooLarge { .. } | Self::DuplicateUser { .. } => None,
        }
    }
}

/// A check or a [`refresh`](Htpasswd::refresh) that could not complete.
#[derive(Debug)]
#[non_exhaustive]
pub enum HtpasswdError {
    /// A password check or a reload on the blocking pool did not complete (the runtime is
    /// shutting down, or the task panicked). A request is answered with 503.
    Interrupted,
    /// [`Htpasswd::refresh`] found a file that does not load; the previous table stays in use
    /// (unless the file cannot be read at all: see [`Unavailable`](Self::Unavailable)).
    Reload(HtpasswdBuildError),
    /// The file cannot be read (deleted, no permission): every user is refused with a 503
    /// until it can be read again. Holds the read error, shared by every refused request.
    Unavailable(Arc<HtpasswdBuildError>),
}

impl fmt::Display for HtpasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Interrupted => f.write_str("the password check or reload did not complete"),
            Self::Reload(error) => write!(f, "htpasswd file not reloaded: {error}"),
            Self::Unavailable(error) => {
                write!(f, "{error}; its users are refused until it can be read")
            }
        }
    }
}

impl Error for HtpasswdError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Interrupted => None,
            Self::Reload(error) => Some(error),
            Self::Unavailable(error) => Some(&**error),
        }
    }
}
