//! Durable background jobs. A job is a row; runners claim due rows with a lease (PostgreSQL:
//! `FOR UPDATE SKIP LOCKED`; SQLite: one atomic `UPDATE … RETURNING`), run the handler for its kind,
//! and mark it done only after the handler succeeded. A failure is retried with exponential backoff
//! until `max_attempts`, then marked failed. Handlers must be idempotent.
//!
//! Each kind belongs to a lane (alerts, documents, housekeeping) with runners of its own, so a
//! lane full of slow work never delays another. Every run has its lane's time limit; while it
//! runs, its runner renews the lease, so only a dead process's jobs are taken over (when the
//! lease runs out). The attempt number is the lease's fencing token: a runner whose job was taken
//! over cannot also finish it. On shutdown runners stop claiming, let running jobs finish within
//! a grace period, and release the ones that did not.

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
use crate::config::{Backend, JobsConfig, LaneConfig};
use crate::db::Db;
use crate::telemetry::{JobLabels, LaneMetrics, Metrics};

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

/// The lanes: each kind of job runs in one, on runners of its own (`jobs.lanes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Alerts delivered to the inbox and by e-mail: never behind documents.
    Alerts,
    /// Documents read by OCR, removed documents' files deleted.
    Documents,
    /// Sweeps and purges.
    Housekeeping,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Alerts, Lane::Documents, Lane::Housekeeping];

    pub fn name(self) -> &'static str {
        match self {
            Lane::Alerts => "alerts",
            Lane::Documents => "documents",
            Lane::Housekeeping => "housekeeping",
        }
    }

    pub fn config(self, jobs: &JobsConfig) -> LaneConfig {
        match self {
            Lane::Alerts => jobs.lanes.alerts,
            Lane::Documents => jobs.lanes.documents,
            Lane::Housekeeping => jobs.lanes.housekeeping,
        }
    }
}

pub trait JobHandler: Send + Sync {
    /// The lane this kind of job runs in.
    fn lane(&self) -> Lane {
        Lane::Housekeeping
    }
    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>>;
    /// Called once when the last attempt failed (an error or the lane's time limit): what the
    /// job was for can be marked as given up.
    fn gave_up<'a>(&'a self, _ctx: &'a JobContext, _job: &'a Job) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

pub type Handlers = HashMap<&'static str, Arc<dyn JobHandler>>;

/// How many submissions this process sent in the last second: the submission desk records each
/// batch; the runners of lanes that yield to a peak read it.
#[derive(Debug, Clone)]
pub struct Peak {
    started: std::time::Instant,
    /// (the current second since `started`, sent in it, sent in the one before)
    window: Arc<std::sync::Mutex<(u64, u64, u64)>>,
}

impl Default for Peak {
    fn default() -> Self {
        Peak {
            started: std::time::Instant::now(),
            window: Arc::default(),
        }
    }
}

impl Peak {
    fn roll(&self, window: &mut (u64, u64, u64)) {
        let second = self.started.elapsed().as_secs();
        if second != window.0 {
            window.2 = if second == window.0 + 1 { window.1 } else { 0 };
            window.1 = 0;
            window.0 = second;
        }
    }

    pub fn record(&self, sent: usize) {
        if let Ok(mut w) = self.window.lock() {
            self.roll(&mut w);
            w.1 += sent as u64;
        }
    }

    /// Submissions per second now: the last whole second's, or this one's so far if more.
    pub fn rate(&self) -> u64 {
        self.window
            .lock()
            .map(|mut w| {
                self.roll(&mut w);
                w.1.max(w.2)
            })
            .unwrap_or(0)
    }
}

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

/// Claims the next due job of one of `kinds` (or one whose lease ran out) for `runner`.
pub async fn claim(
    db: &Db,
    runner: &str,
    kinds: &[&str],
    now_ms: i64,
    lease_ms: i64,
) -> Result<Option<Job>, sqlx::Error> {
    if kinds.is_empty() {
        return Ok(None);
    }
    let lock = match db.backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET status = 'running', locked_by = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM jobs \
                      WHERE kind IN ({kinds}) \
                        AND ((status = 'pending' AND run_at <= $3) OR (status = 'running' AND lease_until < $3)) \
                      ORDER BY run_at, id LIMIT 1 {lock}) \
         RETURNING id, kind, payload, attempts, max_attempts",
        kinds = crate::db::placeholders(4, kinds.len())
    );
    let mut query = sqlx::query_as(&sql)
        .bind(runner)
        .bind(now_ms + lease_ms)
        .bind(now_ms);
    for kind in kinds {
        query = query.bind(*kind);
    }
    let row: Option<(i64, String, String, i64, i64)> = query.fetch_optional(&db.pool).await?;
    Ok(row.map(|(id, kind, payload, attempts, max_attempts)| Job {
        id,
        kind,
        payload,
        attempts,
        max_attempts,
    }))
}

/// Extends the lease of a job `runner` still holds; false when it was taken over (its lease ran
/// out and another runner claimed it: this runner must not finish it).
pub async fn renew(
    db: &Db,
    job: &Job,
    runner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND locked_by = $3 AND attempts = $4 AND status = 'running'",
    )
    .bind(now_ms + lease_ms)
    .bind(job.id)
    .bind(runner)
    .bind(job.attempts)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The delay before attempt `attempts + 1`: 5 s doubling, capped at one hour, with 20 % jitter.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 20) - 1;
    let base = (5_000i64 << exp).min(3_600_000);
    base + rand::rng().random_range(0..=base / 5)
}

/// Records the outcome of `job`'s attempt; false when the runner no longer held it.
pub async fn finish(
    db: &Db,
    job: &Job,
    runner: &str,
    now_ms: i64,
    result: &Result<(), JobError>,
) -> Result<bool, sqlx::Error> {
    let done = match result {
        Ok(()) => {
            sqlx::query("UPDATE jobs SET status = 'done', lease_until = NULL, last_error = NULL, updated_at = $1 WHERE id = $2 AND locked_by = $3 AND attempts = $4 AND status = 'running'")
                .bind(now_ms)
                .bind(job.id)
                .bind(runner)
                .bind(job.attempts)
                .execute(&db.pool)
                .await?
        }
        Err(e) => {
            let message: String = e.0.chars().take(500).collect();
            let (status, run_at) = if job.attempts >= job.max_attempts {
                ("failed", now_ms)
            } else {
                ("pending", now_ms + backoff_ms(job.attempts))
            };
            sqlx::query("UPDATE jobs SET status = $1, run_at = $2, locked_by = NULL, lease_until = NULL, last_error = $3, updated_at = $4 WHERE id = $5 AND locked_by = $6 AND attempts = $7 AND status = 'running'")
                .bind(status)
                .bind(run_at)
                .bind(message)
                .bind(now_ms)
                .bind(job.id)
                .bind(runner)
                .bind(job.attempts)
                .execute(&db.pool)
                .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

/// Gives a claimed job back, as if this attempt had not happened.
async fn release(db: &Db, job: &Job, runner: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE jobs SET status = 'pending', attempts = attempts - 1, locked_by = NULL, lease_until = NULL, updated_at = $1 WHERE id = $2 AND locked_by = $3 AND attempts = $4 AND status = 'running'")
        .bind(now_ms)
        .bind(job.id)
        .bind(runner)
        .bind(job.attempts)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Per kind: jobs due and waiting, the oldest one's due time, jobs failed for good.
async fn backlog(
    db: &Db,
    now_ms: i64,
) -> Result<Vec<(String, i64, Option<i64>, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, \
                CAST(SUM(CASE WHEN status = 'pending' AND run_at <= $1 THEN 1 ELSE 0 END) AS BIGINT), \
                MIN(CASE WHEN status = 'pending' AND run_at <= $1 THEN run_at END), \
                CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) \
         FROM jobs WHERE status IN ('pending', 'failed') GROUP BY kind",
    )
    .bind(now_ms)
    .fetch_all(&db.pool)
    .await
}

pub struct Worker {
    pub ctx: JobContext,
    pub handlers: Handlers,
    pub config: JobsConfig,
    pub metrics: Arc<Metrics>,
    /// How often an idle runner looks for due jobs.
    pub poll_interval: Duration,
    /// This process's submissions, which lanes that yield to a peak watch.
    pub peak: Peak,
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
    /// Starts each lane's runners (none when `jobs.run` is false), and the lanes' gauges.
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let handlers = Arc::new(self.handlers);
        let prefix = uuid::Uuid::new_v4().simple().to_string();
        let mut tasks = Vec::new();
        if !self.config.run {
            return WorkerHandle { stop, tasks };
        }
        for lane in Lane::ALL {
            let kinds: Arc<Vec<&'static str>> = Arc::new(
                handlers
                    .iter()
                    .filter(|(_, h)| h.lane() == lane)
                    .map(|(k, _)| *k)
                    .collect(),
            );
            let config = lane.config(&self.config);
            if kinds.is_empty() {
                continue;
            }
            for n in 0..config.workers {
                let runner = Runner {
                    name: format!("{}-{}-{n}", &prefix[..12], lane.name()),
                    lane,
                    kinds: kinds.clone(),
                    ctx: self.ctx.clone(),
                    handlers: handlers.clone(),
                    lease_ms: self.config.lease_seconds.max(1) * 1000,
                    timeout: Duration::from_secs(config.timeout_seconds.max(1)),
                    grace: Duration::from_secs(self.config.shutdown_grace_seconds),
                    poll: self.poll_interval,
                    peak: config.yields_to_peak.then(|| {
                        (
                            self.peak.clone(),
                            self.config.peak_submissions_per_second,
                            Duration::from_secs(self.config.peak_max_wait_seconds),
                        )
                    }),
                    wake: crate::db::wake::jobs(&kinds),
                    metrics: self.metrics.clone(),
                    stopped: stopped.clone(),
                };
                tasks.push(tokio::spawn(runner.run()));
            }
        }
        tasks.push(tokio::spawn(gauges(
            self.ctx.clone(),
            handlers,
            self.metrics.clone(),
            stopped,
        )));
        WorkerHandle { stop, tasks }
    }
}

/// Keeps the lanes' gauges (queued, oldest due, failed) up to date, every few seconds.
async fn gauges(
    ctx: JobContext,
    handlers: Arc<Handlers>,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let now = ctx.clock.now_ms();
        match backlog(&ctx.db, now).await {
            Ok(rows) => {
                let mut per_lane: HashMap<Lane, (i64, Option<i64>, i64)> =
                    Lane::ALL.iter().map(|l| (*l, (0, None, 0))).collect();
                for (kind, queued, oldest, failed) in rows {
                    let lane = handlers
                        .get(kind.as_str())
                        .map_or(Lane::Housekeeping, |h| h.lane());
                    let entry = per_lane.entry(lane).or_insert((0, None, 0));
                    entry.0 += queued;
                    entry.1 = match (entry.1, oldest) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    entry.2 += failed;
                }
                for (lane, (queued, oldest, failed)) in per_lane {
                    let name = lane.name();
                    LaneMetrics::lane(&metrics.lanes.queued, name).set(queued);
                    LaneMetrics::lane(&metrics.lanes.oldest_due_seconds, name)
                        .set(oldest.map_or(0, |t| (now - t).max(0) / 1000));
                    LaneMetrics::lane(&metrics.lanes.failed, name).set(failed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the job lanes' backlog failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stopped.changed() => return,
        }
    }
}

struct Runner {
    name: String,
    lane: Lane,
    kinds: Arc<Vec<&'static str>>,
    ctx: JobContext,
    handlers: Arc<Handlers>,
    lease_ms: i64,
    timeout: Duration,
    grace: Duration,
    poll: Duration,
    /// For a lane that yields to a peak: the meter, the rate that is a peak, the longest wait.
    peak: Option<(Peak, u64, Duration)>,
    /// Rung when jobs of its kinds are scheduled (`db::wake`): an idle runner looks at once.
    wake: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
    stopped: watch::Receiver<bool>,
}

/// How an attempt ended, for the runner.
enum Ended {
    Ran(Result<(), JobError>),
    /// Shutting down: given back.
    Released,
    /// Another runner took the job over: nothing to record.
    TakenOver,
}

impl Runner {
    async fn run(mut self) {
        let mut yielding_since: Option<tokio::time::Instant> = None;
        loop {
            if *self.stopped.borrow() {
                return;
            }
            if let Some((peak, above, longest)) = &self.peak {
                if peak.rate() > *above {
                    let since = *yielding_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() < *longest {
                        self.idle(Duration::from_millis(250)).await;
                        continue;
                    }
                } else {
                    yielding_since = None;
                }
            }
            let now = self.ctx.clock.now_ms();
            // What is rung from now on is looked at after this claim.
            self.wake.borrow_and_update();
            match claim(&self.ctx.db, &self.name, &self.kinds, now, self.lease_ms).await {
                Ok(Some(job)) => self.run_job(job).await,
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.poll) => {}
                        _ = self.wake.changed() => {}
                        _ = self.stopped.changed() => {}
                    }
                }
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

    /// Renews the lease every third of it until the job is taken over (then returns).
    async fn keep_lease(&self, job: &Job) {
        let every = Duration::from_millis(u64::try_from(self.lease_ms / 3).unwrap_or(1000).max(10));
        loop {
            tokio::time::sleep(every).await;
            let now = self.ctx.clock.now_ms();
            match renew(&self.ctx.db, job, &self.name, now, self.lease_ms).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, "renewing a job's lease failed"),
            }
        }
    }

    async fn run_job(&mut self, job: Job) {
        let span =
            tracing::info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempts);
        tracing::Instrument::instrument(self.attempt(job), span).await
    }

    async fn attempt(&mut self, job: Job) {
        let running = LaneMetrics::lane(&self.metrics.lanes.running, self.lane.name());
        running.inc();
        let ended = match self.handlers.get(job.kind.as_str()).cloned() {
            None => Ended::Ran(Err(JobError(format!(
                "no handler for job kind '{}'",
                job.kind
            )))),
            Some(handler) => {
                let timeout = self.timeout;
                let work = async {
                    match tokio::time::timeout(timeout, handler.run(&self.ctx, &job)).await {
                        Ok(result) => result,
                        Err(_) => Err(JobError(format!(
                            "time limit of {} s exceeded",
                            timeout.as_secs()
                        ))),
                    }
                };
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
                    result = work => Ended::Ran(result),
                    _ = deadline => Ended::Released,
                    _ = self.keep_lease(&job) => Ended::TakenOver,
                }
            }
        };
        running.dec();
        let now = self.ctx.clock.now_ms();
        let (label, stored) = match &ended {
            Ended::Ran(result) => {
                let label = match result {
                    Ok(()) => "done",
                    Err(_) if job.attempts >= job.max_attempts => "failed",
                    Err(_) => "retry",
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "job failed");
                }
                let stored = finish(&self.ctx.db, &job, &self.name, now, result).await;
                if label == "failed" && matches!(stored, Ok(true)) {
                    if let Some(handler) = self.handlers.get(job.kind.as_str()) {
                        handler.gave_up(&self.ctx, &job).await;
                    }
                }
                match stored {
                    Ok(false) => ("taken_over", Ok(())),
                    other => (label, other.map(|_| ())),
                }
            }
            Ended::Released => {
                tracing::info!("shutting down: job released");
                (
                    "released",
                    release(&self.ctx.db, &job, &self.name, now).await,
                )
            }
            Ended::TakenOver => {
                tracing::warn!("the job's lease was taken over: this attempt stops");
                ("taken_over", Ok(()))
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
    use super::{backoff_ms, Peak};

    #[test]
    fn a_peak_is_what_was_sent_in_the_last_second() {
        let peak = Peak {
            started: std::time::Instant::now()
                .checked_sub(std::time::Duration::from_secs(10))
                .unwrap(),
            window: Default::default(),
        };
        assert_eq!(peak.rate(), 0);
        peak.record(30);
        peak.record(40);
        assert_eq!(peak.rate(), 70, "this second so far");
        // As if they had been sent a second ago: the last second's count is what is read.
        peak.window.lock().unwrap().0 -= 1;
        assert_eq!(peak.rate(), 70, "the last second's");
        // Five seconds ago: over.
        peak.window.lock().unwrap().0 -= 5;
        assert_eq!(peak.rate(), 0, "a peak long over");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert!((5_000..=6_000).contains(&backoff_ms(1)));
        assert!((10_000..=12_000).contains(&backoff_ms(2)));
        assert!((3_600_000..=4_320_000).contains(&backoff_ms(30)));
    }
}
