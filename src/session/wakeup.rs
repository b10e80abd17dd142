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
            if self.take().is_ready() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A wake between the first look and the registration woke no one: look again.
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

    #[test]
    fn wakes_from_other_threads_racing_the_wait_each_end_it() {
        // Many rounds of a wake racing the wait from another thread: each wait ends. (The
        // narrowest window, a wake between the first look and the registration, is closed by
        // the second look, as `atomic-waker` documents; rounds here rarely hit it.)
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let w = Arc::new(Wakeup::default());
            for _ in 0..2000 {
                let waker = w.clone();
                let t = std::thread::spawn(move || waker.wake());
                tokio::time::timeout(Duration::from_secs(5), w.woken())
                    .await
                    .expect("a wake from another thread was lost");
                t.join().expect("thread");
            }
        });
    }
}
