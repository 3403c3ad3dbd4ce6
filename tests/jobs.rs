//! The jobs table and the worker: leases, retries with backoff, idempotency, graceful shutdown, and
//! no job claimed twice when runners race (SKIP LOCKED on PostgreSQL).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portal::clock::{Clock, ManualClock};
use portal::config::JobsConfig;
use portal::jobs::{
    self, BoxFuture, Handlers, Job, JobContext, JobError, JobHandler, Lane, NewJob, Worker,
};
use portal::telemetry::Metrics;

use crate::support::spawn_app_with;

/// The app's own runner is off, so that only the runners of the test touch the jobs.
async fn spawn_app() -> crate::support::TestApp {
    spawn_app_with(|c| c.jobs.run = false).await
}

/// Fails its first `failures` runs, then succeeds; counts the runs.
struct Flaky {
    failures: usize,
    runs: Arc<AtomicUsize>,
}

impl JobHandler for Flaky {
    fn run<'a>(&'a self, _: &'a JobContext, _: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let n = self.runs.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                Err(JobError(format!("failure {n}")))
            } else {
                Ok(())
            }
        })
    }
}

/// Never finishes on its own.
struct Stuck;

impl JobHandler for Stuck {
    fn run<'a>(&'a self, _: &'a JobContext, _: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(std::future::pending())
    }
}

fn worker(ctx: JobContext, handlers: Handlers, grace_seconds: u64) -> Worker {
    Worker {
        ctx,
        handlers,
        config: JobsConfig {
            lease_seconds: 60,
            shutdown_grace_seconds: grace_seconds,
            ..JobsConfig::default()
        },
        metrics: Arc::new(Metrics::new()),
        poll_interval: Duration::from_millis(10),
        peak: portal::jobs::Peak::default(),
    }
}

async fn job_row(ctx: &JobContext, key: &str) -> (String, i64, i64, Option<String>) {
    sqlx::query_as(
        "SELECT status, attempts, run_at, last_error FROM jobs WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_one(&ctx.db.pool)
    .await
    .unwrap()
}

/// Waits (bounded) until the job reaches `status` with `attempts`.
async fn until(
    ctx: &JobContext,
    key: &str,
    status: &str,
    attempts: i64,
) -> (String, i64, i64, Option<String>) {
    for _ in 0..500 {
        let row = job_row(ctx, key).await;
        if row.0 == status && row.1 == attempts {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "job {key} never reached {status}/{attempts}: {:?}",
        job_row(ctx, key).await
    );
}

fn context(app: &crate::support::TestApp, clock: &ManualClock) -> JobContext {
    JobContext {
        db: app.db().clone(),
        clock: Arc::new(clock.clone()),
    }
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_then_succeeds() {
    let app = spawn_app().await;
    let clock = ManualClock::new(app.clock.now_ms());
    let ctx = context(&app, &clock);
    let runs = Arc::new(AtomicUsize::new(0));
    let mut handlers: Handlers = HashMap::new();
    handlers.insert(
        "test.flaky",
        Arc::new(Flaky {
            failures: 2,
            runs: runs.clone(),
        }),
    );
    let handle = worker(ctx.clone(), handlers, 5).spawn();

    let now = clock.now_ms();
    assert!(jobs::enqueue(
        &ctx.db.pool,
        now,
        &NewJob::new("test.flaky", serde_json::json!({}), now).idempotency_key("k1")
    )
    .await
    .unwrap());
    let (_, _, run_at, error) = until(&ctx, "k1", "pending", 1).await;
    assert!(run_at >= now + 5_000, "first retry at least 5 s later");
    assert_eq!(error.as_deref(), Some("failure 0"));

    // Not due yet: nothing happens until the clock moves.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    clock.advance_ms(6_001);
    let (_, _, second_run_at, _) = until(&ctx, "k1", "pending", 2).await;
    assert!(
        second_run_at >= clock.now_ms() + 10_000,
        "the delay doubles"
    );
    clock.advance_ms(12_001);
    until(&ctx, "k1", "done", 3).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    handle.shutdown().await;
    app.stop().await;
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_marked_failed() {
    let app = spawn_app().await;
    let clock = ManualClock::new(app.clock.now_ms());
    let ctx = context(&app, &clock);
    let mut handlers: Handlers = HashMap::new();
    handlers.insert(
        "test.flaky",
        Arc::new(Flaky {
            failures: 100,
            runs: Arc::new(AtomicUsize::new(0)),
        }),
    );
    let handle = worker(ctx.clone(), handlers, 5).spawn();
    let now = clock.now_ms();
    let job = NewJob::new("test.flaky", serde_json::json!({}), now)
        .idempotency_key("k2")
        .max_attempts(2);
    jobs::enqueue(&ctx.db.pool, now, &job).await.unwrap();
    until(&ctx, "k2", "pending", 1).await;
    clock.advance_ms(7_000);
    let (_, _, _, error) = until(&ctx, "k2", "failed", 2).await;
    assert_eq!(error.as_deref(), Some("failure 1"));
    handle.shutdown().await;
    app.stop().await;
}

#[tokio::test]
async fn scheduling_twice_with_the_same_key_makes_one_job() {
    let app = spawn_app().await;
    let now = app.clock.now_ms();
    let job = NewJob::new("test.once", serde_json::json!({"n": 1}), now).idempotency_key("once");
    assert!(jobs::enqueue(&app.db().pool, now, &job).await.unwrap());
    assert!(!jobs::enqueue(&app.db().pool, now, &job).await.unwrap());
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE idempotency_key = 'once'")
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_releases_a_job_that_does_not_finish_in_time() {
    let app = spawn_app().await;
    let clock = ManualClock::new(app.clock.now_ms());
    let ctx = context(&app, &clock);
    let mut handlers: Handlers = HashMap::new();
    handlers.insert("test.stuck", Arc::new(Stuck));
    let handle = worker(ctx.clone(), handlers, 0).spawn();
    let now = clock.now_ms();
    jobs::enqueue(
        &ctx.db.pool,
        now,
        &NewJob::new("test.stuck", serde_json::json!({}), now).idempotency_key("k3"),
    )
    .await
    .unwrap();
    until(&ctx, "k3", "running", 1).await;
    handle.shutdown().await;
    let (status, attempts, _, _) = job_row(&ctx, "k3").await;
    assert_eq!(
        (status.as_str(), attempts),
        ("pending", 0),
        "released as if never attempted"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_expired_lease_lets_another_runner_take_the_job() {
    let app = spawn_app().await;
    let db = app.db().clone();
    let now = app.clock.now_ms();
    jobs::enqueue(
        &db.pool,
        now,
        &NewJob::new("test.crash", serde_json::json!({}), now).idempotency_key("k4"),
    )
    .await
    .unwrap();
    let first = jobs::claim(&db, "runner-a", &["test.crash"], now, 1_000)
        .await
        .unwrap()
        .expect("claimed");
    assert!(
        jobs::claim(&db, "runner-b", &["test.crash"], now + 500, 1_000)
            .await
            .unwrap()
            .is_none(),
        "leased"
    );
    let second = jobs::claim(&db, "runner-b", &["test.crash"], now + 1_001, 1_000)
        .await
        .unwrap()
        .expect("lease ran out");
    assert_eq!(first.id, second.id);
    assert_eq!(second.attempts, 2);
    // The first runner comes back to life: it can neither renew nor finish what it lost.
    assert!(!jobs::renew(&db, &first, "runner-a", now + 1_002, 1_000)
        .await
        .unwrap());
    assert!(
        !jobs::finish(&db, &first, "runner-a", now + 1_002, &Ok(()))
            .await
            .unwrap(),
        "the old runner cannot finish a job taken over"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(second.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "running", "still the new runner's");
    assert!(jobs::finish(&db, &second, "runner-b", now + 1_003, &Ok(()))
        .await
        .unwrap());
    app.stop().await;
}

#[tokio::test]
async fn racing_runners_never_claim_the_same_job() {
    let app = spawn_app().await;
    let db = app.db().clone();
    let now = app.clock.now_ms();
    for n in 0..40 {
        jobs::enqueue(
            &db.pool,
            now,
            &NewJob::new("test.race", serde_json::json!({ "n": n }), now),
        )
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for r in 0..4 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(job) =
                jobs::claim(&db, &format!("runner-{r}"), &["test.race"], now, 60_000)
                    .await
                    .unwrap()
            {
                ids.push(job.id);
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "every job claimed");
    assert_eq!(unique.len(), 40, "none claimed twice");
    app.stop().await;
}

#[tokio::test]
async fn the_session_purge_job_deletes_expired_sessions_and_schedules_itself() {
    let app = spawn_app().await;
    app.login("mario-rossi").await;
    let db = app.db().clone();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    // The logged-in session (the pre-login one, kept a minute to answer a second callback of the
    // same login, may still be there too).
    let logged_in: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE data LIKE '%\"principal\":{%'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(logged_in, 1);
    assert!(count().await >= 1);
    app.clock.advance_ms(31 * 60_000);
    let purge = portal::web::session::PurgeSessions {
        idle_ms: 30 * 60_000,
        absolute_ms: 8 * 3_600_000,
    };
    let ctx = JobContext {
        db: db.clone(),
        clock: Arc::new(app.clock.clone()),
    };
    let job = Job {
        id: 0,
        kind: portal::web::session::PURGE_JOB.into(),
        payload: "{}".into(),
        attempts: 1,
        max_attempts: 8,
    };
    purge.run(&ctx, &job).await.unwrap();
    assert_eq!(count().await, 0);
    let scheduled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'sessions.purge' AND status = 'pending' AND run_at > $1")
        .bind(app.clock.now_ms())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(scheduled, 1, "the next purge is scheduled");
    app.stop().await;
}

/// Sleeps `ms` (real time), then succeeds; counts the runs.
struct Slow {
    ms: u64,
    lane: Lane,
    runs: Arc<AtomicUsize>,
}

impl JobHandler for Slow {
    fn lane(&self) -> Lane {
        self.lane
    }
    fn run<'a>(&'a self, _: &'a JobContext, _: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(self.ms)).await;
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

/// Never finishes, in the documents lane.
struct StuckDocument;

impl JobHandler for StuckDocument {
    fn lane(&self) -> Lane {
        Lane::Documents
    }
    fn run<'a>(&'a self, _: &'a JobContext, _: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_full_documents_lane_never_delays_an_alert_and_a_stuck_job_meets_its_time_limit() {
    let app = spawn_app().await;
    let clock = ManualClock::new(app.clock.now_ms());
    let ctx = context(&app, &clock);
    let alerts = Arc::new(AtomicUsize::new(0));
    let mut handlers: Handlers = HashMap::new();
    handlers.insert("test.document", Arc::new(StuckDocument));
    handlers.insert(
        "test.alert",
        Arc::new(Slow {
            ms: 1,
            lane: Lane::Alerts,
            runs: alerts.clone(),
        }),
    );
    let mut config = JobsConfig::default();
    config.lanes.documents.timeout_seconds = 3;
    let metrics = Arc::new(Metrics::new());
    let handle = Worker {
        ctx: ctx.clone(),
        handlers,
        config,
        metrics: metrics.clone(),
        poll_interval: Duration::from_millis(10),
        peak: portal::jobs::Peak::default(),
    }
    .spawn();
    let now = clock.now_ms();
    // More stuck documents than the lane has runners, then an alert.
    for n in 0..5 {
        jobs::enqueue(
            &ctx.db.pool,
            now,
            &NewJob::new("test.document", serde_json::json!({ "n": n }), now)
                .idempotency_key(format!("doc-{n}"))
                .max_attempts(1),
        )
        .await
        .unwrap();
    }
    let running = || {
        metrics
            .render()
            .lines()
            .find(|l| l.starts_with("sportello_jobs_running{lane=\"documents\"}"))
            .map(str::to_string)
    };
    for _ in 0..500 {
        if running().as_deref() == Some("sportello_jobs_running{lane=\"documents\"} 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    jobs::enqueue(
        &ctx.db.pool,
        now,
        &NewJob::new("test.alert", serde_json::json!({}), now).idempotency_key("alert"),
    )
    .await
    .unwrap();
    until(&ctx, "alert", "done", 1).await;
    assert_eq!(alerts.load(Ordering::SeqCst), 1);
    assert_eq!(
        running().as_deref(),
        Some("sportello_jobs_running{lane=\"documents\"} 2"),
        "both documents runners busy while the alert went out"
    );
    // The stuck ones fail at their lane's time limit, two at a time.
    for _ in 0..600 {
        let failed: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'test.document' AND status = 'failed'",
        )
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
        if failed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, _, _, error) = job_row(&ctx, "doc-0").await;
    let error = match error {
        Some(e) => e,
        None => job_row(&ctx, "doc-1").await.3.unwrap_or_default(),
    };
    assert!(error.contains("time limit of 3 s"), "{error}");
    handle.shutdown().await;
    app.stop().await;
}

#[tokio::test]
async fn a_job_longer_than_its_lease_keeps_it_and_runs_once() {
    let app = spawn_app().await;
    let ctx = JobContext {
        db: app.db().clone(),
        clock: Arc::new(portal::clock::SystemClock),
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let mut handlers: Handlers = HashMap::new();
    handlers.insert(
        "test.long",
        Arc::new(Slow {
            ms: 12_000,
            lane: Lane::Housekeeping,
            runs: runs.clone(),
        }),
    );
    let config = JobsConfig {
        lease_seconds: 10,
        ..JobsConfig::default()
    };
    let handle = Worker {
        ctx: ctx.clone(),
        handlers,
        config,
        metrics: Arc::new(Metrics::new()),
        poll_interval: Duration::from_millis(10),
        peak: portal::jobs::Peak::default(),
    }
    .spawn();
    let now = ctx.clock.now_ms();
    jobs::enqueue(
        &ctx.db.pool,
        now,
        &NewJob::new("test.long", serde_json::json!({}), now).idempotency_key("long"),
    )
    .await
    .unwrap();
    // Another process's runner tries to take it once its first 10 s lease would have lapsed; the
    // runner renewed it (every 3.3 s; a busy machine may delay a renewal by seconds, not by the
    // lease's two thirds).
    let start = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let mut taken = 0;
    while start.elapsed() < Duration::from_millis(11_500) {
        if jobs::claim(
            &ctx.db,
            "other-process",
            &["test.long"],
            ctx.clock.now_ms(),
            1_000,
        )
        .await
        .unwrap()
        .is_some()
        {
            taken += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(taken, 0, "the lease was renewed while the job ran");
    until(&ctx, "long", "done", 1).await;
    let (status, attempts, _, _) = job_row(&ctx, "long").await;
    assert_eq!((status.as_str(), attempts), ("done", 1));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    handle.shutdown().await;
    app.stop().await;
}
