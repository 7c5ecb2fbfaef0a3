use std::{
    fmt,
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use super::{Fetched, SecretSource, SourceError};

/// A secret read from a file (a Kubernetes secret volume, a Docker secret, a file written
/// by a sidecar). The file is re-read only when it changes (its length, modification time
/// or, on Unix, inode differ from the last read), so frequent fetches cost one `stat`.
///
/// One trailing line break (`\n` or `\r\n`) is removed; other whitespace is kept, because
/// it may be part of the secret. An empty file is a transient error (a writer may be
/// between truncating and writing; write the file atomically by renaming a temporary file
/// into place). A missing file or a permission error is permanent. Errors name the path,
/// never the content.
#[derive(Clone)]
pub struct File {
    path: PathBuf,
    last: Arc<Mutex<Option<(Stamp, SecretString)>>>,
}

/// What identifies one version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }
}

impl File {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, what: &str, err: std::io::Error) -> SourceError {
        let message = format!("cannot {what} secret file {}", self.path.display());
        match err.kind() {
            ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::IsADirectory => {
                SourceError::permanent(message).with_source(err)
            }
            _ => SourceError::transient(message).with_source(err),
        }
    }

    fn remembered(&self, stamp: Stamp) -> Option<SecretString> {
        let last = self.last.lock().ok()?;
        match &*last {
            Some((seen, secret)) if *seen == stamp => {
                Some(SecretString::from(secret.expose_secret().to_owned()))
            }
            _ => None,
        }
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("path", &self.path).finish()
    }
}

impl SecretSource for File {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| self.io_error("stat", e))?;
        let stamp = Stamp::of(&meta);
        if let Some(secret) = self.remembered(stamp) {
            tracing::trace!(path = %self.path.display(), "secret file unchanged");
            return Ok(Fetched::new(secret));
        }
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| self.io_error("read", e))?;
        let mut text = String::from_utf8(bytes).map_err(|e| {
            let mut bytes = e.into_bytes();
            bytes.zeroize();
            SourceError::permanent(format!(
                "secret file {} is not valid UTF-8",
                self.path.display()
            ))
        })?;
        let trimmed = trim_line_break(&text);
        if trimmed.is_empty() {
            text.zeroize();
            return Err(SourceError::transient(format!(
                "secret file {} is empty",
                self.path.display()
            )));
        }
        let secret = SecretString::from(trimmed.to_owned());
        text.zeroize();
        tracing::debug!(path = %self.path.display(), "secret file read");
        if let Ok(mut last) = self.last.lock() {
            *last = Some((stamp, SecretString::from(secret.expose_secret().to_owned())));
        }
        Ok(Fetched::new(secret))
    }
}

/// Removes one trailing `\n` or `\r\n`.
fn trim_line_break(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tower-mlflow-secrets-file-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::create_dir_all(&dir);
        dir.join("secret")
    }

    fn write_atomically(path: &Path, content: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn trims_one_line_break_only() {
        assert_eq!(trim_line_break("tok\n"), "tok");
        assert_eq!(trim_line_break("tok\r\n"), "tok");
        assert_eq!(trim_line_break("tok\n\n"), "tok\n");
        assert_eq!(trim_line_break(" tok "), " tok ");
    }

    #[tokio::test]
    async fn reads_and_trims() {
        let path = temp_path("reads");
        write_atomically(&path, "admin:password1234\n");
        let fetched = File::new(&path).fetch().await.unwrap();
        assert_eq!(fetched.secret().expose_secret(), "admin:password1234");
    }

    #[tokio::test]
    async fn rereads_after_the_file_changes() {
        let path = temp_path("rotate");
        write_atomically(&path, "first-secret\n");
        let source = File::new(&path);
        assert_eq!(
            source.fetch().await.unwrap().secret().expose_secret(),
            "first-secret"
        );
        assert_eq!(
            source.fetch().await.unwrap().secret().expose_secret(),
            "first-secret"
        );
        // Same length on purpose: the inode (rename) still tells the versions apart.
        write_atomically(&path, "other-secret\n");
        assert_eq!(
            source.fetch().await.unwrap().secret().expose_secret(),
            "other-secret"
        );
    }

    #[tokio::test]
    async fn missing_file_is_permanent_and_names_the_path() {
        let path = temp_path("missing").with_file_name("does-not-exist");
        let err = File::new(&path).fetch().await.unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("does-not-exist"));
    }

    #[tokio::test]
    async fn empty_file_is_transient() {
        let path = temp_path("empty");
        write_atomically(&path, "\n");
        let err = File::new(&path).fetch().await.unwrap_err();
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn errors_never_show_the_content() {
        let path = temp_path("utf8");
        std::fs::write(&path, b"hunter2\xff").unwrap();
        let err = File::new(&path).fetch().await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
}
