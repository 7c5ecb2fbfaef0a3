//! [`OnWake`]: a future polled only after its own waker has fired.
//!
//! A task that `select!`s over a busy future and a few rare ones (a connection, over its
//! shutdown signals and its idle timer) polls every branch each time it wakes, and the busy
//! one wakes it several times a request. Polling a timer or a `watch` wait that has not fired
//! is not free: each registers its waker again (a lock for a `watch` wait). `OnWake` hands the
//! rare future a waker of its own and polls it again only once that waker has been woken.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

pin_project_lite::pin_project! {
    /// Polls `future` on its first poll and then only after the waker it was given has been
    /// woken; between, a poll answers `Pending` at the cost of an atomic swap. The task's
    /// waker is passed on when it changes, so a wake-up is never lost.
    pub(crate) struct OnWake<F> {
        #[pin]
        future: F,
        signal: Arc<Signal>,
        // The waker that `future` is polled with.
        waker: Waker,
        // The task's waker last stored in `signal`, to see whether it changed.
        task: Option<Waker>,
    }
}

/// Shared between [`OnWake`] and the waker it gives its future.
#[derive(Debug)]
struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> OnWake<F> {
    pub(crate) fn new(future: F) -> Self {
        let signal = Arc::new(Signal {
            // The first poll polls `future`, which registers its waker.
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Self {
            future,
            waker: Waker::from(Arc::clone(&signal)),
            signal,
            task: None,
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Stored before the flag is read: a wake-up after the read finds this waker.
        if !this
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()))
        {
            let mut task = this
                .signal
                .task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *task = Some(cx.waker().clone());
            *this.task = Some(cx.waker().clone());
        }
        if !this.signal.woken.swap(false, Ordering::SeqCst) {
            return Poll::Pending;
        }
        this.future.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        cell::Cell,
        pin::pin,
        rc::Rc,
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    /// Counts the task's wake-ups.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Counts its polls; ready once `ready` is set, and wakes its last waker when asked.
    struct Probe {
        polls: Rc<Cell<usize>>,
        ready: Rc<Cell<bool>>,
        waker: Rc<Cell<Option<Waker>>>,
    }

    impl Probe {
        /// The probe, and its poll count, readiness and registered waker.
        #[allow(clippy::type_complexity)]
        fn new() -> (
            Self,
            Rc<Cell<usize>>,
            Rc<Cell<bool>>,
            Rc<Cell<Option<Waker>>>,
        ) {
            let (polls, ready, waker) = (Rc::default(), Rc::default(), Rc::default());
            let probe = Self {
                polls: Rc::clone(&polls),
                ready: Rc::clone(&ready),
                waker: Rc::clone(&waker),
            };
            (probe, polls, ready, waker)
        }
    }

    /// A task waker and its count of wake-ups.
    fn counting_waker() -> (Waker, Arc<CountingWaker>) {
        let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (Waker::from(Arc::clone(&count)), count)
    }

    impl Future for Probe {
        type Output = &'static str;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            self.polls.set(self.polls.get() + 1);
            if self.ready.get() {
                return Poll::Ready("done");
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }

    #[test]
    fn the_inner_future_is_polled_first_then_only_after_its_own_wake_up() {
        let (probe, polls, ready, waker) = Probe::new();
        let mut gated = pin!(OnWake::new(probe));
        let (task_waker, task) = counting_waker();
        let mut cx = Context::from_waker(&task_waker);

        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 1, "the first poll reaches the future");
        // The task woken by something else: the future is not polled again.
        for _ in 0..3 {
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.get(), 1);

        // The future's own waker fires: the task is woken, and the next poll reaches it.
        let inner = waker.take().expect("the future registered a waker");
        inner.wake_by_ref();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 2);
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 2);

        ready.set(true);
        waker.take().expect("registered again").wake();
        assert_eq!(gated.as_mut().poll(&mut cx), Poll::Ready("done"));
        assert_eq!(polls.get(), 3);
    }

    #[test]
    fn a_new_task_waker_is_the_one_woken() {
        let (probe, _, _, waker) = Probe::new();
        let mut gated = pin!(OnWake::new(probe));
        let (first_waker, first) = counting_waker();
        let (second_waker, second) = counting_waker();
        assert!(
            gated
                .as_mut()
                .poll(&mut Context::from_waker(&first_waker))
                .is_pending()
        );
        assert!(
            gated
                .as_mut()
                .poll(&mut Context::from_waker(&second_waker))
                .is_pending()
        );
        waker.take().expect("registered").wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gated_timer_still_fires() {
        let sleep = OnWake::new(tokio::time::sleep(Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        sleep.await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
