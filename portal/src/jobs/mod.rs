//! Durable background jobs. A job is a row; runners claim due rows with a lease (PostgreSQL:
//! `FOR UPDATE SKIP LOCKED`; SQLite: one atomic `UPDATE … RETURNING`), run the handler for its kind,
//! and mark it done only after the handler succeeded. A failure is retried with exponential backoff
//! until `max_attempts`, then marked failed. A lease that runs out (a crashed process) makes the job
//! claimable again, so handlers must be idempotent. On shutdown runners stop claiming, let running
//! jobs finish within a grace period, and release the ones that did not.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sqlx::{Any, Executor};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::config::{Backend, JobsConfig};
use crate::db::Db;
use crate::telemetry::{JobLabels, Metrics};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// Including this one.
    pub attempts: i64,
    pub max_attempts: i64,
}

/// Why a job failed; the text is stored on the job row, so it must not carry personal data.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

/// What a handler may use.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub db: Db,
    pub clock: SharedClock,
}

pub trait JobHandler: Send + Sync {
    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>>;
}

pub type Handlers = HashMap<&'static str, Arc<dyn JobHandler>>;

/// A job to schedule.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
    pub run_at_ms: i64,
    /// At most one job ever exists with a given key: scheduling it again does nothing.
    pub idempotency_key: Option<String>,
    pub max_attempts: i64,
}

impl NewJob {
    pub fn new(kind: &str, payload: serde_json::Value, run_at_ms: i64) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload,
            run_at_ms,
            idempotency_key: None,
            max_attempts: 8,
        }
    }
    pub fn idempotency_key(mut self, key: impl Into<String>) -> NewJob {
        self.idempotency_key = Some(key.into());
        self
    }
    pub fn max_attempts(mut self, n: i64) -> NewJob {
        self.max_attempts = n;
        self
    }
}

/// Schedules a job, inside the caller's transaction when given one. Returns false when a job with
/// the same idempotency key already exists.
pub async fn enqueue<'e, E>(executor: E, now_ms: i64, job: &NewJob) -> Result<bool, sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    Ok(enqueue_all(executor, now_ms, std::slice::from_ref(job)).await? == 1)
}

/// Schedules `jobs` with one statement; returns how many were new (the others' keys existed).
pub async fn enqueue_all<'e, E>(
    executor: E,
    now_ms: i64,
    jobs: &[NewJob],
) -> Result<u64, sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    if jobs.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "INSERT INTO jobs (kind, payload, idempotency_key, run_at, max_attempts, created_at, updated_at) \
         VALUES {} ON CONFLICT (idempotency_key) DO NOTHING",
        crate::db::value_rows(jobs.len(), 7)
    );
    let mut query = sqlx::query(&sql);
    for job in jobs {
        query = query
            .bind(&job.kind)
            .bind(job.payload.to_string())
            .bind(job.idempotency_key.as_deref())
            .bind(job.run_at_ms)
            .bind(job.max_attempts)
            .bind(now_ms)
            .bind(now_ms);
    }
    Ok(query.execute(executor).await?.rows_affected())
}

/// Claims the next due job (or one whose lease ran out) for `runner`.
pub async fn claim(
    db: &Db,
    runner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Option<Job>, sqlx::Error> {
    let lock = match db.backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET status = 'running', locked_by = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM jobs \
                      WHERE (status = 'pending' AND run_at <= $3) OR (status = 'running' AND lease_until < $3) \
                      ORDER BY run_at, id LIMIT 1 {lock}) \
         RETURNING id, kind, payload, attempts, max_attempts"
    );
    let row: Option<(i64, String, String, i64, i64)> = sqlx::query_as(&sql)
        .bind(runner)
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|(id, kind, payload, attempts, max_attempts)| Job {
        id,
        kind,
        payload,
        attempts,
        max_attempts,
    }))
}

/// The delay before attempt `attempts + 1`: 5 s doubling, capped at one hour, with 20 % jitter.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 20) - 1;
    let base = (5_000i64 << exp).min(3_600_000);
    base + rand::rng().random_range(0..=base / 5)
}

async fn finish(
    db: &Db,
    job: &Job,
    runner: &str,
    now_ms: i64,
    result: &Result<(), JobError>,
) -> Result<(), sqlx::Error> {
    match result {
        Ok(()) => {
            sqlx::query("UPDATE jobs SET status = 'done', lease_until = NULL, last_error = NULL, updated_at = $1 WHERE id = $2 AND locked_by = $3")
                .bind(now_ms)
                .bind(job.id)
                .bind(runner)
                .execute(&db.pool)
                .await?;
        }
        Err(e) => {
            let message: String = e.0.chars().take(500).collect();
            let (status, run_at) = if job.attempts >= job.max_attempts {
                ("failed", now_ms)
            } else {
                ("pending", now_ms + backoff_ms(job.attempts))
            };
            sqlx::query("UPDATE jobs SET status = $1, run_at = $2, locked_by = NULL, lease_until = NULL, last_error = $3, updated_at = $4 WHERE id = $5 AND locked_by = $6")
                .bind(status)
                .bind(run_at)
                .bind(message)
                .bind(now_ms)
                .bind(job.id)
                .bind(runner)
                .execute(&db.pool)
                .await?;
        }
    }
    Ok(())
}

/// Gives a claimed job back, as if this attempt had not happened.
async fn release(db: &Db, job: &Job, runner: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE jobs SET status = 'pending', attempts = attempts - 1, locked_by = NULL, lease_until = NULL, updated_at = $1 WHERE id = $2 AND locked_by = $3")
        .bind(now_ms)
        .bind(job.id)
        .bind(runner)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub struct Worker {
    pub ctx: JobContext,
    pub handlers: Handlers,
    pub config: JobsConfig,
    pub metrics: Arc<Metrics>,
    /// How often an idle runner looks for due jobs.
    pub poll_interval: Duration,
}

/// Stops the runners: see [`WorkerHandle::shutdown`].
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stops claiming, waits for running jobs (up to the grace period, then releases them).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl Worker {
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let handlers = Arc::new(self.handlers);
        let prefix = uuid::Uuid::new_v4().simple().to_string();
        let tasks = (0..self.config.workers)
            .map(|n| {
                let runner = Runner {
                    name: format!("{}-{n}", &prefix[..12]),
                    ctx: self.ctx.clone(),
                    handlers: handlers.clone(),
                    lease_ms: self.config.lease_seconds * 1000,
                    grace: Duration::from_secs(self.config.shutdown_grace_seconds),
                    poll: self.poll_interval,
                    metrics: self.metrics.clone(),
                    stopped: stopped.clone(),
                };
                tokio::spawn(runner.run())
            })
            .collect();
        WorkerHandle { stop, tasks }
    }
}

struct Runner {
    name: String,
    ctx: JobContext,
    handlers: Arc<Handlers>,
    lease_ms: i64,
    grace: Duration,
    poll: Duration,
    metrics: Arc<Metrics>,
    stopped: watch::Receiver<bool>,
}

impl Runner {
    async fn run(mut self) {
        loop {
            if *self.stopped.borrow() {
                return;
            }
            let now = self.ctx.clock.now_ms();
            match claim(&self.ctx.db, &self.name, now, self.lease_ms).await {
                Ok(Some(job)) => self.run_job(job).await,
                Ok(None) => self.idle(self.poll).await,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a job failed");
                    self.idle(self.poll * 4).await;
                }
            }
        }
    }

    async fn idle(&mut self, how_long: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(how_long) => {}
            _ = self.stopped.changed() => {}
        }
    }

    async fn run_job(&mut self, job: Job) {
        let span =
            tracing::info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempts);
        let _guard = span.enter();
        self.metrics.jobs_running.inc();
        let handler = self.handlers.get(job.kind.as_str()).cloned();
        let outcome = match handler {
            None => Some(Err(JobError(format!(
                "no handler for job kind '{}'",
                job.kind
            )))),
            Some(handler) => {
                let work = handler.run(&self.ctx, &job);
                tokio::pin!(work);
                let mut stopped = self.stopped.clone();
                let grace = self.grace;
                let deadline = async move {
                    while !*stopped.borrow() {
                        if stopped.changed().await.is_err() {
                            break;
                        }
                    }
                    tokio::time::sleep(grace).await;
                };
                tokio::select! {
                    result = &mut work => Some(result),
                    _ = deadline => None,
                }
            }
        };
        self.metrics.jobs_running.dec();
        let now = self.ctx.clock.now_ms();
        let (label, stored) = match &outcome {
            Some(result) => {
                let label = match result {
                    Ok(()) => "done",
                    Err(_) if job.attempts >= job.max_attempts => "failed",
                    Err(_) => "retry",
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "job failed");
                }
                (
                    label,
                    finish(&self.ctx.db, &job, &self.name, now, result).await,
                )
            }
            None => {
                tracing::info!("shutting down: job released");
                (
                    "released",
                    release(&self.ctx.db, &job, &self.name, now).await,
                )
            }
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, "recording the job outcome failed; its lease will run out");
        }
        self.metrics
            .jobs
            .get_or_create(&JobLabels {
                kind: job.kind.clone(),
                outcome: label.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert!((5_000..=6_000).contains(&backoff_ms(1)));
        assert!((10_000..=12_000).contains(&backoff_ms(2)));
        assert!((3_600_000..=4_320_000).contains(&backoff_ms(30)));
    }
}
