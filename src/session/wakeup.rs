//! A session's wakeup for a `KILL CONNECTION` or a shutdown while it waits for its client.
//!
//! Hand-written on `atomic-waker` rather than `tokio::sync::Notify`: the session waits on it
//! once per statement, and a `Notify` waiter is linked into and out of a list under the
//! notifier's mutex each time (about 300 instructions a statement). One session is the only
//! waiter, so a flag and one registered waker do.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;

#[derive(Debug, Default)]
pub struct Wakeup {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl Wakeup {
    /// Wakes the session's current or next [`Wakeup::woken`], once (as `Notify::notify_one`:
    /// a wakeup given while the session is not waiting is kept for its next wait).
    pub fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Resolves once after each [`Wakeup::wake`] (several before it count as one). For the
    /// session only: one waiter at a time.
    pub fn woken(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            // Registered before the look: a wake before it is seen by the look, one after it
            // wakes this waker.
            self.waker.register(cx.waker());
            self.take()
        })
    }

    fn take(&self) -> Poll<()> {
        if self.pending.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wake_reaches_a_waiting_session_and_one_given_before_the_wait_is_kept() {
        let w = Arc::new(Wakeup::default());
        // Nothing given: the wait does not end.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), w.woken())
                .await
                .is_err()
        );
        // Given while waiting, from another task.
        let waker = w.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waker.wake();
        });
        tokio::time::timeout(Duration::from_secs(5), w.woken())
            .await
            .expect("woken while waiting");
        t.await.expect("task");
        // Given before the wait: kept for it; two count as one.
        w.wake();
        w.wake();
        tokio::time::timeout(Duration::from_secs(5), w.woken())
            .await
            .expect("a wake given before the wait is kept");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), w.woken())
                .await
                .is_err(),
            "one wake ends one wait"
        );
    }

    /// Counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_wakes_the_latest_wait_only() {
        let w = Wakeup::default();
        let (a, b) = (Arc::new(Count(0.into())), Arc::new(Count(0.into())));
        let (wa, wb) = (
            std::task::Waker::from(a.clone()),
            std::task::Waker::from(b.clone()),
        );
        // A wait polled once and dropped (as `select!` drops it when the client speaks first),
        // then the next wait.
        let mut first = std::pin::pin!(w.woken());
        let pending = first
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&wa));
        assert!(pending.is_pending());
        let mut next = std::pin::pin!(w.woken());
        let mut cx = std::task::Context::from_waker(&wb);
        assert!(next.as_mut().poll(&mut cx).is_pending());
        w.wake();
        assert_eq!(
            b.0.load(Ordering::SeqCst),
            1,
            "the waiting session is woken"
        );
        assert_eq!(a.0.load(Ordering::SeqCst), 0, "not the wait dropped before");
        assert!(next.as_mut().poll(&mut cx).is_ready());
        // Taken: the wait after it waits again.
        let mut after = std::pin::pin!(w.woken());
        assert!(after.as_mut().poll(&mut cx).is_pending());
    }
}
