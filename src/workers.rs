//! Session worker threads.
//!
//! Owns the threads client sessions run on: `[server] worker_threads`
//! single-threaded tokio runtimes, one OS thread each. The accept loop hands
//! every new client to the next worker in turn, and the session then lives
//! on that thread: its socket reads, backend round trips and replies are
//! all driven by one thread's event loop, with no work stealing and no
//! cross-thread wake-ups between the two halves of a query. On a small
//! machine that shares its cores with MySQL this is measurably cheaper than
//! tokio's work-stealing scheduler (see `bench/README.md`).
//!
//! The control plane (monitor, admin endpoint, accept loop, reloads) stays on
//! the main runtime. Backend connections are pooled across workers: a
//! connection opened on one worker keeps being driven by that worker's
//! event loop when a session on another worker uses it, which is correct,
//! only less cheap.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Errors starting the workers.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    /// A runtime or its thread could not be created.
    #[error("cannot start session worker thread {index}: {source}")]
    Start {
        /// Worker index.
        index: usize,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A fixed set of single-threaded runtimes that run client sessions.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropping these stops the workers (their runtimes drop the tasks).
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// The number of workers `configured` asks for: itself, or for 0 one
    /// per available core. (One thread per core measured better than fewer
    /// under many concurrent clients: the kernel shares CPU time per thread.)
    pub fn resolve(configured: usize) -> usize {
        if configured > 0 {
            return configured;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Starts `n` (≥ 1) worker threads named `causeway-worker-<i>`.
    pub fn start(n: usize) -> Result<Workers, WorkersError> {
        let mut handles = Vec::with_capacity(n);
        let mut stop = Vec::with_capacity(n);
        for index in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| WorkersError::Start { index, source })?;
            handles.push(rt.handle().clone());
            let (tx, rx) = oneshot::channel::<()>();
            stop.push(tx);
            std::thread::Builder::new()
                .name(format!("causeway-worker-{index}"))
                .spawn(move || {
                    // runs spawned sessions until the stop sender is dropped
                    let _ = rt.block_on(rx);
                })
                .map_err(|source| WorkersError::Start { index, source })?;
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// How many workers there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.handles.len()
    }

    /// Runs `fut` on the next worker (round robin).
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len().max(1);
        if let Some(h) = self.handles.get(i) {
            h.spawn(fut);
        }
    }
}

/// Wraps a client's task so that a panic inside it ends only that task:
/// the panic is caught where the task meets its worker, logged at error
/// level with the connection id, and the future (with every guard it
/// holds) is dropped. The worker's event loop runs on.
pub fn catch_panic<F>(id: u32, fut: F) -> CatchPanic<F>
where
    F: Future<Output = ()>,
{
    CatchPanic {
        id,
        fut: Some(Box::pin(fut)),
    }
}

/// See [`catch_panic`].
#[derive(Debug)]
pub struct CatchPanic<F> {
    id: u32,
    fut: Option<Pin<Box<F>>>,
}

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Ready(());
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                self.fut = None;
                Poll::Ready(())
            }
            Err(payload) => {
                // release the task's guards before saying so
                self.fut = None;
                let cause = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(
                    conn = self.id,
                    %cause,
                    "session task hit a bug and was stopped; its client is closed, the proxy runs on"
                );
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_panic_ends_only_its_task() {
        let w = Workers::start(1).unwrap();
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Flag(Arc::clone(&dropped));
        w.spawn(catch_panic(1, async move {
            let _flag = flag;
            tokio::task::yield_now().await;
            panic!("boom");
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        w.spawn(catch_panic(2, async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.send(()).unwrap();
        }));
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn resolves_auto_to_the_cores() {
        assert_eq!(Workers::resolve(3), 3);
        // one per core this process may run on (affinity and cgroup quota)
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(Workers::resolve(0), cores);
        assert_eq!(Workers::start(Workers::resolve(0)).unwrap().len(), cores);
    }

    #[test]
    fn spawns_round_robin_on_named_threads() {
        let w = Workers::start(2).unwrap();
        assert_eq!(w.len(), 2);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let (seen, tx) = (Arc::clone(&seen), tx.clone());
            w.spawn(async move {
                let name = std::thread::current().name().unwrap().to_string();
                seen.lock().unwrap().push(name);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..4 {
            rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        }
        let names: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
        let want: HashSet<String> = ["causeway-worker-0", "causeway-worker-1"]
            .map(String::from)
            .into();
        assert_eq!(names, want);
    }
}
