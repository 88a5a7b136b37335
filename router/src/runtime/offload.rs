//! Work that must not run on a request executor — blocking name resolution, the admin API
//! (compiles, Parquet reads, fsyncs) — on small pools of plain threads, one pool per kind of
//! work so that one kind cannot starve another (a slow policy compile never delays an
//! upstream's DNS lookup).
//!
//! A job runs under `catch_unwind`: a panic answers its caller with an error and the thread
//! goes on serving. Each pool's queue is bounded; a job beyond it is refused at once
//! (503 `server_busy`) instead of waiting behind the backlog.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use crate::gateway::error::{Error, ErrorKind};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A named pool of threads taking jobs from one bounded queue.
#[derive(Debug)]
pub struct Offload {
    name: &'static str,
    tx: SyncSender<Job>,
}

impl Offload {
    /// Starts `threads` threads named `name` with room for `queue` waiting jobs.
    pub fn start(name: &'static str, threads: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Self { name, tx })
    }

    /// Queues `job` without waiting for it; an error when the pool is full or stopped.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Error> {
        let name = self.name;
        let wrapped: Job = Box::new(move || {
            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!(
                    pool = name,
                    "a job panicked; its caller gets an error, the pool goes on"
                );
            }
        });
        match self.tx.try_send(wrapped) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::new(
                ErrorKind::Overloaded,
                format!("the router's {name} workers are all busy; retry shortly"),
            )
            .with_retry_after(1)),
            Err(TrySendError::Disconnected(_)) => Err(Error::new(
                ErrorKind::Internal,
                format!("the router's {name} workers have stopped"),
            )),
        }
    }

    /// Runs `job` on the pool; resolves to its result, or an error when the pool is full or
    /// the job panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = futures_channel::oneshot::channel();
        // A panic drops `tx` unsent: the receiver sees it as cancelled.
        self.spawn(move || {
            let _ = tx.send(job());
        })?;
        rx.await.map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                format!(
                    "an internal error stopped this {} call; the router's log says where",
                    self.name
                ),
            )
        })
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only to take a job, not while running it.
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test")]
    use super::*;

    #[test]
    fn a_panicking_job_answers_with_an_error_and_the_pool_goes_on() {
        let pool = Offload::start("test", 1, 4).unwrap();
        let e = futures_lite::future::block_on(pool.run(|| -> u32 { panic!("boom") }));
        assert_eq!(e.unwrap_err().kind, ErrorKind::Internal);
        let ok = futures_lite::future::block_on(pool.run(|| 7));
        assert_eq!(ok.unwrap(), 7, "the one thread survived the panic");
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let pool = Offload::start("test", 1, 1).unwrap();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        pool.spawn(move || {
            let _ = wait.recv();
        })
        .unwrap();
        // The thread is busy; one job fits in the queue, the next is refused.
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.spawn(|| {}).unwrap();
        let refused = pool.spawn(|| {}).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Overloaded);
        release.send(()).unwrap();
    }
}
