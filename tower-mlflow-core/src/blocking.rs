//! Slow synchronous work (password hashes, SQLite reads) kept off the async workers.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tower_mlflow_core::blocking::run_blocking;
//!
//! let sum = run_blocking(|| (1..=10u32).sum::<u32>()).await;
//! assert_eq!(sum.ok(), Some(55));
//! # }
//! ```

use std::{error::Error, fmt};

/// Runs `work` on tokio's blocking pool, or inline when no tokio runtime is running (a
/// caller on another executor then waits for it, as it would for any blocking call).
///
/// # Errors
///
/// [`BlockingTaskFailed`] when the task panicked or the runtime shut down before it ran.
pub async fn run_blocking<T, F>(work: F) -> Result<T, BlockingTaskFailed>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(work)
            .await
            .map_err(|_| BlockingTaskFailed(())),
        Err(_) => Ok(work()),
    }
}

/// A blocking task panicked or was cancelled by the runtime shutting down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockingTaskFailed(());

impl fmt::Display for BlockingTaskFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("a blocking task panicked or was cancelled")
    }
}

impl Error for BlockingTaskFailed {}

#[cfg(test)]
mod tests {
    use super::run_blocking;

    #[test]
    fn inline_outside_a_runtime() {
        let thread = std::thread::current().id();
        let ran_on = futures_lite_block_on(run_blocking(move || std::thread::current().id()));
        assert_eq!(ran_on, Ok(thread));
    }

    #[tokio::test]
    async fn on_the_blocking_pool_inside_a_runtime() {
        let thread = std::thread::current().id();
        let ran_on = run_blocking(move || std::thread::current().id()).await;
        assert_ne!(ran_on, Ok(thread));
    }

    #[tokio::test]
    async fn a_panic_is_an_error() {
        let outcome = run_blocking(|| -> u8 { panic!("boom") }).await;
        assert!(outcome.is_err());
    }

    /// Polls a future that never waits (the inline path) to completion without a runtime.
    fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
    }
}
