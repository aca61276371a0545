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
use std::sync::atomic::{AtomicUsize, Ordering};
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
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs `fut` on the next worker (round robin).
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(fut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    #[test]
    fn resolves_auto_to_the_cores() {
        assert_eq!(Workers::resolve(3), 3);
        assert!(Workers::resolve(0) >= 1);
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
