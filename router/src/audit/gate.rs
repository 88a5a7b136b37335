//! Handing records from a core to the writer so that every audited request is written or
//! counted once, through shutdown too.
//!
//! Each core has a [`Gate`]: its batch of `buffered` records (sent when it holds
//! [`BATCH`] records, and by the core's flusher every few milliseconds) and the number of its
//! requests still *due* a record. A request takes a [`Due`] when it starts and gives it back
//! with its record ([`Due::finish`]), without one by design ([`Due::skip`]: a sampled-out
//! unauthenticated refusal), or not at all (the request's task panicked): then the record
//! is counted as failed when the `Due` drops.
//!
//! At shutdown the main thread closes every gate ([`Gate::close`]): it takes the batch (to
//! send before the writer stops) and counts the requests still due as failed — they are cut
//! off by the exit. After that a core sends nothing: a request that was due when its gate
//! closed is already counted; one that began after is counted when it ends. All sends
//! happen under the gate's lock, so everything sent before the close reaches the writer
//! before its stop message.
//!
//! The lock is the core's own (one per core, on its own cache line): uncontended but for the
//! core's flusher and the close.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{AuditSink, AuditStats, Record};

/// Records a core queues before sending them to the writer.
pub const BATCH: usize = 512;

#[derive(Debug, Default)]
struct State {
    batch: Vec<Record>,
    due: u64,
    closed: bool,
}

/// One core's hand-over to the writer.
#[derive(Debug)]
#[repr(align(128))]
pub struct Gate {
    state: Mutex<State>,
    sink: AuditSink,
    stats: Arc<AuditStats>,
}

/// A request's promise of one audit record.
#[derive(Debug)]
#[must_use = "a request due a record must finish or skip it"]
pub struct Due<'g> {
    gate: &'g Gate,
    /// Began after the gate closed: nobody counted it yet.
    orphan: bool,
    done: bool,
}

impl Gate {
    #[must_use]
    pub fn new(sink: AuditSink, stats: Arc<AuditStats>) -> Self {
        Self {
            state: Mutex::new(State {
                batch: sink.empty_batch(),
                ..State::default()
            }),
            sink,
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failed(&self, n: u64) {
        self.stats.records_failed.fetch_add(n, Ordering::Relaxed);
    }

    /// A request starts that will leave a record.
    pub fn begin(&self) -> Due<'_> {
        let mut s = self.lock();
        let orphan = s.closed;
        if !orphan {
            s.due += 1;
        }
        Due {
            gate: self,
            orphan,
            done: false,
        }
    }

    /// Sends the queued records to the writer now (the core's flusher).
    pub fn flush(&self) {
        let mut s = self.lock();
        if !s.batch.is_empty() {
            let batch = std::mem::replace(&mut s.batch, self.sink.empty_batch());
            self.sink.append_batch(batch);
        }
    }

    /// Records queued on this core, not yet sent.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.lock().batch.len()
    }

    /// Shutdown: no more records from this core. Sends what is queued and counts the
    /// requests still due a record as failed; returns how many those were.
    pub fn close(&self) -> u64 {
        let mut s = self.lock();
        s.closed = true;
        let batch = std::mem::take(&mut s.batch);
        if !batch.is_empty() {
            self.sink.append_batch(batch);
        }
        let cut_off = std::mem::take(&mut s.due);
        self.failed(cut_off);
        cut_off
    }
}

impl<'g> Due<'g> {
    /// Settles the promise; `Some(state)` when the record may still go to the writer.
    fn settle(&mut self) -> Option<MutexGuard<'g, State>> {
        self.done = true;
        let gate: &'g Gate = self.gate;
        let mut s = gate.lock();
        if self.orphan {
            // Began after the close: counted here, once.
            self.gate.failed(1);
            return None;
        }
        if s.closed {
            // Due when the gate closed: already counted by the close.
            return None;
        }
        s.due -= 1;
        Some(s)
    }

    /// Queues the request's record (`buffered` durability).
    pub fn finish(mut self, record: Record) {
        let gate = self.gate;
        if let Some(mut s) = self.settle() {
            s.batch.push(record);
            if s.batch.len() >= BATCH {
                let batch = std::mem::replace(&mut s.batch, gate.sink.empty_batch());
                gate.sink.append_batch(batch);
            }
        }
    }

    /// Sends the request's record on its own (`strict` durability); the receiver says when
    /// it is durable. `None`: the gate is closed (shutdown), the record is counted failed.
    pub fn finish_durable(
        mut self,
        record: Record,
    ) -> Option<futures_channel::oneshot::Receiver<bool>> {
        let gate = self.gate;
        let _held = self.settle()?;
        Some(gate.sink.append_durable(record))
    }

    /// The request leaves no record by design.
    pub fn skip(mut self) {
        let _ = self.settle();
    }
}

impl Drop for Due<'_> {
    fn drop(&mut self) {
        if !self.done && self.settle().is_some() {
            // Ended without a record (its task panicked, or was dropped): counted, and said.
            self.gate.failed(1);
            tracing::error!("a request ended without its audit record; counted as failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    fn gate() -> (
        Gate,
        Arc<AuditStats>,
        super::super::Receiver<super::super::Msg>,
    ) {
        let stats = Arc::new(AuditStats::default());
        let (sink, rx) = AuditSink::detached(Arc::clone(&stats));
        (Gate::new(sink, Arc::clone(&stats)), stats, rx)
    }

    fn received(rx: &super::super::Receiver<super::super::Msg>) -> usize {
        rx.try_iter().map(|m| m.records()).sum()
    }

    #[test]
    fn every_record_is_sent_or_counted_once_through_a_close() {
        let (gate, stats, rx) = gate();
        gate.begin().finish(Record::default());
        let in_flight = gate.begin();
        let cut_off = gate.begin();
        gate.begin().skip();
        // The close sends the queued record and counts the two still due.
        assert_eq!(gate.close(), 2);
        assert_eq!(received(&rx), 1);
        assert_eq!(stats.records_failed.load(Ordering::Relaxed), 2);
        // They end after the close: not counted again, not sent.
        in_flight.finish(Record::default());
        drop(cut_off);
        assert_eq!(stats.records_failed.load(Ordering::Relaxed), 2);
        // One that begins after the close is counted when it ends.
        gate.begin().finish(Record::default());
        assert_eq!(stats.records_failed.load(Ordering::Relaxed), 3);
        assert_eq!(received(&rx), 0);
    }

    #[test]
    fn a_request_that_ends_without_a_record_is_counted() {
        let (gate, stats, rx) = gate();
        drop(gate.begin());
        assert_eq!(stats.records_failed.load(Ordering::Relaxed), 1);
        for _ in 0..BATCH {
            gate.begin().finish(Record::default());
        }
        assert_eq!(received(&rx), BATCH, "a full batch is sent at once");
        assert_eq!(gate.close(), 0);
    }
}
