//! [`WerkzeugLimits`]: the most work a stored hash may ask for.

/// Bounds on the cost a stored hash may ask for, so that a hostile or corrupt row cannot make
/// one verification take minutes or gigabytes. A hash above a bound fails to parse.
///
/// The defaults leave room for several times today's werkzeug defaults (scrypt `32768:8:1`,
/// 32 MiB and 2^18 block mixes; PBKDF2 1,000,000 iterations):
///
/// - scrypt memory, counted as `128 · r · (N + p)` bytes: at most 256 MiB;
/// - scrypt work, counted as `N · r · p`: at most 2^22 (16 times the default);
/// - PBKDF2 iterations: at most 4,000,000.
///
/// ```
/// use tower_mlflow_auth::authenticators::{MlflowUsers, UserRecord, WerkzeugLimits};
///
/// let strict = WerkzeugLimits::default().max_pbkdf2_iterations(100_000);
/// let hash = "pbkdf2:sha256:600000$abcdefghijklmnop$4006a4e16079d6a3714ff8d7afe8a3c3272207e2d0206aa5f1e2d81261a34690";
/// let users = || [UserRecord::new("alice", hash)];
/// assert!(MlflowUsers::from_users(users()).is_ok());
/// assert!(MlflowUsers::builder().limits(strict).users(users()).build().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WerkzeugLimits {
    pub(super) max_scrypt_memory: u64,
    pub(super) max_scrypt_work: u64,
    pub(super) max_pbkdf2_iterations: u32,
}

impl WerkzeugLimits {
    /// Largest scrypt memory use accepted, in bytes (`128 · r · (N + p)`).
    #[must_use]
    pub fn max_scrypt_memory(mut self, bytes: u64) -> Self {
        self.max_scrypt_memory = bytes;
        self
    }

    /// Largest scrypt work accepted, as `N · r · p`.
    #[must_use]
    pub fn max_scrypt_work(mut self, work: u64) -> Self {
        self.max_scrypt_work = work;
        self
    }

    /// Largest PBKDF2 iteration count accepted.
    #[must_use]
    pub fn max_pbkdf2_iterations(mut self, iterations: u32) -> Self {
        self.max_pbkdf2_iterations = iterations;
        self
    }
}

impl Default for WerkzeugLimits {
    fn default() -> Self {
        Self {
            max_scrypt_memory: 256 << 20,
            max_scrypt_work: 1 << 22,
            max_pbkdf2_iterations: 4_000_000,
        }
    }
}
