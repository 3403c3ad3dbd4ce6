//! The submission desk: drafts sent at the same moment are committed together (group commit).
//!
//! Every "Conferma e invia" of this process goes through one queue. A single task takes what is
//! waiting — one draft when the portal is quiet, up to [`BATCH`] on a click day — and sends it in
//! one transaction ([`store::submit_all`]): one lock on SQLite's writer, one counter update per
//! ente, one commit, instead of as many as there are citizens. Nobody waits for a batch to fill:
//! a batch is whatever arrived while the previous one was being written.
//!
//! Several processes (a region's web processes on PostgreSQL) each have their desk; the counter
//! rows keep their numbers gapless between them. If a batch fails, its drafts are sent again one by
//! one, so that one bad draft cannot refuse the others.

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use super::store::{self, Sending, Submitted};
use crate::db::Db;

/// The most drafts sent in one transaction.
pub const BATCH: usize = 64;

pub type Answer = Result<Option<Submitted>, sqlx::Error>;

struct Request {
    sending: Sending,
    answer: oneshot::Sender<Answer>,
}

#[derive(Debug, Clone)]
pub struct Desk {
    queue: mpsc::Sender<Request>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("the submission desk has stopped")]
    Stopped,
}

impl Desk {
    /// Starts the desk's task on the current runtime; it ends when every handle is dropped.
    /// `batch_sizes` observes how many drafts each transaction sent.
    /// `peak` counts what is sent, for the job lanes that leave the cores to a peak.
    pub fn start(db: Db, batch_sizes: Histogram, peak: crate::jobs::Peak) -> Desk {
        let (queue, waiting) = mpsc::channel(16 * BATCH);
        tokio::spawn(run(db, waiting, batch_sizes, peak));
        Desk { queue }
    }

    /// Sends a draft with the others waiting, and answers as [`store::submit`] does.
    pub async fn submit(&self, sending: Sending) -> Result<Option<Submitted>, DeskError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Request { sending, answer })
            .await
            .map_err(|_| DeskError::Stopped)?;
        Ok(answered.await.map_err(|_| DeskError::Stopped)??)
    }
}

async fn run(
    db: Db,
    mut waiting: mpsc::Receiver<Request>,
    batch_sizes: Histogram,
    peak: crate::jobs::Peak,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while waiting.recv_many(&mut batch, BATCH).await > 0 {
        batch_sizes.observe(batch.len() as f64);
        peak.record(batch.len());
        let (sendings, answers): (Vec<Sending>, Vec<oneshot::Sender<Answer>>) =
            batch.drain(..).map(|r| (r.sending, r.answer)).unzip();
        let sent = send_together(&db, &sendings).await;
        if sent
            .iter()
            .any(|s| matches!(s, Ok(Some(Submitted::New(_)))))
        {
            // The outbox events and the receipts' jobs are committed: the relay and the job
            // runners of this process may look now (on PostgreSQL every process also hears it).
            crate::db::wake::ring_outbox();
            crate::db::wake::ring_jobs(Some(crate::alerts::DELIVER_JOB));
        }
        for (answer, sent) in answers.into_iter().zip(sent) {
            let _ = answer.send(sent);
        }
    }
}

/// Sends `sendings` in one transaction; if it fails, each again on its own, so that each gets its
/// own answer (in their order) and a bad one does not refuse the others.
pub async fn send_together(db: &Db, sendings: &[Sending]) -> Vec<Answer> {
    match store::submit_all(db, sendings).await {
        Ok(sent) => sent.into_iter().map(Ok).collect(),
        Err(e) if sendings.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, drafts = sendings.len(), "a batch of submissions failed: sent one by one");
            let mut answers = Vec::with_capacity(sendings.len());
            for sending in sendings {
                answers.push(
                    store::submit_all(db, std::slice::from_ref(sending))
                        .await
                        .map(|mut sent| sent.pop().flatten()),
                );
            }
            answers
        }
    }
}
