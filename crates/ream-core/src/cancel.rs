//! A run's cancellation token. Cancelling is idempotent; callbacks registered with
//! [`CancelToken::on_cancel`] run once, on the cancelling thread, so a source can
//! interrupt a statement that is blocked inside the database (e.g. sorting before its
//! first row) rather than waiting for its next row.
//!
//! A stop that must talk to the database (a PostgreSQL cancel request, a MySQL
//! `KILL QUERY`) opens a connection of its own, so it runs on a thread of its own:
//! [`CancelToken::on_cancel_in_background`]. A process about to exit waits for those
//! with [`CancelToken::settle`]; otherwise Ctrl-C could end the process before the
//! request left, and the statement would run on in the database.
//!
//! ```
//! use ream_core::cancel::CancelToken;
//! let t = CancelToken::new();
//! let (tx, rx) = std::sync::mpsc::channel();
//! t.on_cancel_in_background(move || tx.send("stopped").unwrap());
//! t.cancel();
//! assert!(t.settle(std::time::Duration::from_secs(5)));
//! assert_eq!(rx.try_recv(), Ok("stopped"));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    callbacks: Mutex<Vec<Callback>>,
    /// Background stops still running, and a signal each time one ends.
    running: Arc<(Mutex<usize>, Condvar)>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CancelToken({})", self.is_cancelled())
    }
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        // Counted as background work until the callbacks have run (and started theirs):
        // a thread that sees the flag and settles at once still waits for them.
        let _firing = Busy::start(&self.inner.running);
        if self.inner.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        let callbacks = std::mem::take(&mut *self.inner.callbacks.lock().unwrap_or_else(|p| p.into_inner()));
        for cb in callbacks {
            cb();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// Run `f` when the token is cancelled (at once if it already is).
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) {
        let mut cbs = self.inner.callbacks.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_cancelled() {
            drop(cbs);
            f();
        } else {
            cbs.push(Box::new(f));
        }
    }

    /// Run `f` on a thread of its own when the token is cancelled; [`settle`](Self::settle)
    /// waits for it.
    pub fn on_cancel_in_background(&self, f: impl FnOnce() + Send + 'static) {
        let running = self.inner.running.clone();
        self.on_cancel(move || {
            let busy = Busy::start(&running);
            std::thread::spawn(move || {
                // Counted down even if `f` panics.
                let _busy = busy;
                f();
            });
        });
    }

    /// Wait up to `limit` for the background stops to finish; false if some still run.
    pub fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (count, ended) = &*self.inner.running;
        let mut n = count.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = ended.wait_timeout(n, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}

/// One piece of background work, counted from `start` until dropped.
struct Busy(Arc<(Mutex<usize>, Condvar)>);

impl Busy {
    fn start(running: &Arc<(Mutex<usize>, Condvar)>) -> Self {
        *running.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Busy(running.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0 .1.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn callbacks_run_once_even_when_registered_late() {
        let n = Arc::new(AtomicUsize::new(0));
        let t = CancelToken::new();
        let n1 = n.clone();
        t.on_cancel(move || {
            n1.fetch_add(1, Ordering::SeqCst);
        });
        t.cancel();
        t.cancel();
        let n2 = n.clone();
        t.on_cancel(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 2);
        assert!(t.is_cancelled());
    }

    #[test]
    fn settle_waits_for_a_slow_background_stop_and_gives_up_at_its_limit() {
        let t = CancelToken::new();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        t.on_cancel_in_background(move || {
            let _ = wait.recv();
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert!(t.settle(Duration::ZERO), "nothing runs before the cancel");
        t.cancel();
        assert!(!t.settle(Duration::from_millis(50)), "the stop is still blocked");
        go.send(()).unwrap();
        assert!(t.settle(Duration::from_secs(10)));
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
