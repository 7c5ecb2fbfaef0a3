//! "Keep a snapshot, load it once, share the outcome with the waiters."
//!
//! - [`SingleFlight`]: at most one operation per key in flight; every caller that arrives
//!   meanwhile waits for that operation's outcome instead of starting its own. If the caller
//!   running it goes away (its future is dropped), a waiting caller takes over, so a
//!   cancelled request never leaves the others hanging.
//! - [`Reloading`]: a value that is replaced as a whole (a user table, a key set, a secret),
//!   read lock-free from an [`ArcSwapOption`](arc_swap::ArcSwapOption), reloaded through a
//!   [`SingleFlight`], and stamped with tokio's clock so tests can pause time.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::{sync::atomic::{AtomicU32, Ordering}, time::Duration};
//! use tower_mlflow_core::sync::Reloading;
//!
//! let loads = AtomicU32::new(0);
//! let users: Reloading<Vec<&str>, String> = Reloading::new();
//! let load = || async {
//!     loads.fetch_add(1, Ordering::Relaxed);
//!     Ok(vec!["alice", "bob"])
//! };
//! // Ten concurrent callers, one load.
//! let results = futures_join_all(
//!     (0..10).map(|_| users.get_or_reload(Duration::from_secs(5), load)),
//! ).await;
//! assert!(results.iter().all(|r| r.as_ref().is_ok_and(|s| s.value().len() == 2)));
//! assert_eq!(loads.load(Ordering::Relaxed), 1);
//! # }
//! # async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
//! #     let mut set = Vec::new();
//! #     for f in futures { set.push(Box::pin(f)); }
//! #     let mut out = Vec::new();
//! #     // Poll all of them together so that they overlap.
//! #     let mut pending: Vec<_> = set.into_iter().map(Some).collect();
//! #     let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
//! #     std::future::poll_fn(|cx| {
//! #         let mut done = true;
//! #         for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
//! #             if let Some(f) = slot {
//! #                 match f.as_mut().poll(cx) {
//! #                     std::task::Poll::Ready(v) => { *result = Some(v); *slot = None; }
//! #                     std::task::Poll::Pending => done = false,
//! #                 }
//! #             }
//! #         }
//! #         if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
//! #     }).await;
//! #     for r in results { out.extend(r); }
//! #     out
//! # }
//! ```

mod reloading;
mod single_flight;

pub use self::{
    reloading::{Reloading, Snapshot},
    single_flight::{Follower, Join, Leader, SingleFlight},
};
