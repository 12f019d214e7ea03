//! Micro-batching of hot-path recommend requests onto the batched scan.
//!
//! Handlers send their [`ScanJob`] to a batcher task and await the answer.
//! A batcher takes the first waiting job, yields once so that connections
//! whose requests are already readable can enqueue theirs, then drains
//! whatever is waiting (up to [`MAX_JOBS`]) and answers each model's group
//! with one `recommend_users` call — one pass over the items per 8 queries
//! instead of one per query. An idle server answers a lone request without
//! waiting for company: batching only happens when requests are already
//! queued, so it adds no timer and no latency floor.
//!
//! One batcher per runtime worker thread; jobs are dealt round-robin.

use crate::api::ScanJob;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};
use vitrine_core::scan::ScoredItem;

/// Most jobs answered by one drain (4 passes of 8 queries).
pub const MAX_JOBS: usize = 8;

type Job = (ScanJob, oneshot::Sender<(ScanJob, Vec<ScoredItem>)>);

#[derive(Debug)]
pub struct Batcher {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Batcher {
    /// Starts `workers` batcher tasks on the current runtime.
    pub fn start(workers: usize) -> Arc<Self> {
        let senders = (0..workers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(rx));
                tx
            })
            .collect();
        Arc::new(Self {
            senders,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `job` in a batch; returns it with its items.
    pub async fn scan(&self, job: ScanJob) -> (ScanJob, Vec<ScoredItem>) {
        let (tx, rx) = oneshot::channel();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        match self.senders[i].send((job, tx)) {
            Ok(()) => rx.await.expect("batcher answers every job"),
            // The batcher is gone (runtime shutting down): answer inline.
            Err(mpsc::error::SendError((job, _))) => {
                let items = job
                    .model
                    .recommend_users(std::slice::from_ref(&job.query))
                    .pop()
                    .unwrap_or_default();
                (job, items)
            }
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        tokio::task::yield_now().await;
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Group by served model version (requests may span models and a
        // version swap); keep arrival order within a group.
        while !jobs.is_empty() {
            let model = jobs[0].0.model.clone();
            let (group, rest): (Vec<Job>, Vec<Job>) = jobs
                .into_iter()
                .partition(|(j, _)| Arc::ptr_eq(&j.model, &model));
            jobs = rest;
            let queries: Vec<_> = group.iter().map(|(j, _)| j.query.clone()).collect();
            let results = model.recommend_users(&queries);
            for ((job, reply), items) in group.into_iter().zip(results) {
                let _ = reply.send((job, items));
            }
        }
    }
}
