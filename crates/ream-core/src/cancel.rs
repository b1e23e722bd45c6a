//! A run's cancellation token. Cancelling is idempotent; callbacks registered with
//! [`CancelToken::on_cancel`] run once, on the cancelling thread, so a source can
//! interrupt a statement that is blocked inside the database (e.g. sorting before its
//! first row) rather than waiting for its next row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    callbacks: Mutex<Vec<Callback>>,
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
}
