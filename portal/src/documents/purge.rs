//! Stored bytes that are no longer needed are deleted: a document the citizen removed (at once,
//! by a job queued with the removal), and, when `documents.retention_days` is set, the documents
//! of pratiche closed (accolta, respinta, ritirata, annullata) longer ago than that (an hourly
//! sweep). The row stays, so the pratica still lists what was sent (name, size, SHA-256); the
//! encrypted file, its scanned pages, and the text and fields read from it go.

use serde::Deserialize;

use super::vault::Vault;
use crate::db::Db;
use crate::jobs::{BoxFuture, Job, JobContext, JobError, JobHandler, Lane, NewJob};

pub const JOB: &str = "documents.purge";
pub const RETENTION_JOB: &str = "documents.retention";
const RETENTION_EVERY_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Queues the deletion of document `id`'s stored bytes (in the caller's transaction).
pub async fn schedule<'e, E>(executor: E, now: i64, id: &str) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    crate::jobs::enqueue(executor, now, &job(id, now)).await?;
    Ok(())
}

/// The deletion of document `id`'s stored bytes: one job per document, ever.
fn job(id: &str, now: i64) -> NewJob {
    NewJob::new(JOB, serde_json::json!({ "document": id }), now)
        .idempotency_key(format!("{JOB}:{id}"))
}

#[derive(Debug, Deserialize)]
struct Payload {
    document: String,
}

fn err(e: impl std::fmt::Display) -> JobError {
    JobError(e.to_string())
}

/// Deletes a removed (or retained past its term) document's stored bytes.
pub struct Purge {
    pub vault: Vault,
    /// `documents.retention_days`.
    pub retention_days: Option<u32>,
}

/// The condition on `d` (documents) and `a` (applications) of the documents whose bytes may go:
/// removed, or of a pratica closed before the parameter `$closed_before` (none: no retention).
fn purgeable(closed_before: usize) -> String {
    format!(
        "d.purged_at IS NULL AND d.status = 'accettato' AND (d.removed_at IS NOT NULL OR ( \
         a.status IN ('accolta', 'respinta', 'ritirata', 'annullata') AND CAST(${closed_before} AS BIGINT) IS NOT NULL \
         AND (SELECT MAX(h.at) FROM application_history h WHERE h.application_id = a.id AND h.to_status = a.status) < ${closed_before}))"
    )
}

impl Purge {
    fn closed_before(&self, now: i64) -> Option<i64> {
        self.retention_days.map(|d| now - i64::from(d) * DAY_MS)
    }
}

impl JobHandler for Purge {
    fn lane(&self) -> Lane {
        Lane::Documents
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let payload: Payload = serde_json::from_str(&job.payload).map_err(err)?;
            let now = ctx.clock.now_ms();
            let db: &Db = &ctx.db;
            let stored: Option<(Option<String>,)> = sqlx::query_as(&format!(
                "SELECT d.storage_id FROM documents d JOIN applications a ON a.id = d.application_id \
                 WHERE d.id = $1 AND {}",
                purgeable(2)
            ))
            .bind(&payload.document)
            .bind(self.closed_before(now))
            .fetch_optional(&db.pool)
            .await
            .map_err(err)?;
            let Some((storage_id,)) = stored else {
                return Ok(());
            };
            let scans: Vec<String> = sqlx::query_scalar(
                "SELECT storage_id FROM document_scans WHERE document_id = $1 \
                 UNION ALL SELECT crop_storage FROM document_fields WHERE document_id = $1 AND crop_storage IS NOT NULL",
            )
            .bind(&payload.document)
            .fetch_all(&db.pool)
            .await
            .map_err(err)?;
            for id in storage_id.iter().chain(&scans) {
                self.vault.delete(id).await.map_err(err)?;
            }
            let mut tx = db.pool.begin().await.map_err(err)?;
            for sql in [
                "DELETE FROM document_scans WHERE document_id = $1",
                "DELETE FROM document_fields WHERE document_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(&payload.document)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            sqlx::query(
                "UPDATE documents SET purged_at = $2, storage_id = NULL, wrapped_key = NULL, ocr_text = NULL WHERE id = $1",
            )
            .bind(&payload.document)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            tracing::info!("stored document deleted");
            Ok(())
        })
    }
}

/// Schedules the next retention sweep.
pub async fn schedule_retention(db: &Db, now_ms: i64, delay_ms: i64) -> Result<(), sqlx::Error> {
    let run_at = now_ms + delay_ms;
    let job = NewJob::new(RETENTION_JOB, serde_json::json!({}), run_at)
        .idempotency_key(format!("{RETENTION_JOB}:{}", run_at / RETENTION_EVERY_MS));
    crate::jobs::enqueue(&db.pool, now_ms, &job).await?;
    Ok(())
}

/// Hourly: queues the deletion of the documents of pratiche closed longer ago than the retention
/// (nothing when `documents.retention_days` is not set).
pub struct Retention {
    pub retention_days: Option<u32>,
}

impl JobHandler for Retention {
    fn run<'a>(&'a self, ctx: &'a JobContext, _: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let now = ctx.clock.now_ms();
            if let Some(days) = self.retention_days {
                let closed_before = now - i64::from(days) * DAY_MS;
                let ids: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT d.id FROM documents d JOIN applications a ON a.id = d.application_id \
                     WHERE d.removed_at IS NULL AND {} LIMIT 1000",
                    purgeable(1)
                ))
                .bind(closed_before)
                .fetch_all(&ctx.db.pool)
                .await
                .map_err(err)?;
                let jobs: Vec<NewJob> = ids.iter().map(|id| job(id, now)).collect();
                crate::jobs::enqueue_all(&ctx.db.pool, now, &jobs)
                    .await
                    .map_err(err)?;
                if !ids.is_empty() {
                    tracing::info!(
                        documents = ids.len(),
                        "closed pratiche's documents past their retention queued for deletion"
                    );
                }
            }
            schedule_retention(&ctx.db, now, RETENTION_EVERY_MS)
                .await
                .map_err(err)
        })
    }
}
