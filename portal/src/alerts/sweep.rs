//! The hourly sweep: the alerts no single change causes. Drafts of a service that stops taking
//! applications within `alerts.draft_closing_days`; in December, the ISEE of open pratiche (it lapses
//! on 31 December); pratiche within `alerts.staff_term_days` of their legal term, for their ente's
//! operators and coordinators. Every alert has its key, so sweeping again schedules nothing twice.

use time::Duration;

use super::{schedule_now, Alert, Kind};
use crate::applications::catalogue::{Catalogue, Open};
use crate::config::AlertsConfig;
use crate::db::Db;
use crate::domain::italian_time::rome_date;
use crate::jobs::{BoxFuture, Job, JobContext, JobError, JobHandler, NewJob};

pub const SWEEP_JOB: &str = "alerts.sweep";
const SWEEP_EVERY_MS: i64 = 3_600_000;

const OPEN: &str = "status NOT IN ('bozza', 'accolta', 'respinta', 'ritirata', 'annullata')";

pub async fn schedule_sweep(db: &Db, now_ms: i64, delay_ms: i64) -> Result<(), sqlx::Error> {
    let run_at = now_ms + delay_ms;
    let job = NewJob::new(SWEEP_JOB, serde_json::json!({}), run_at)
        .idempotency_key(format!("{SWEEP_JOB}:{}", run_at / SWEEP_EVERY_MS));
    crate::jobs::enqueue(&db.pool, now_ms, &job).await?;
    Ok(())
}

#[derive(Debug)]
pub struct Sweep {
    pub catalogue: Catalogue,
    pub config: AlertsConfig,
}

impl Sweep {
    /// Schedules what is due at `now`; returns how many alerts it scheduled (new or not).
    pub async fn sweep(&self, db: &Db, now: i64) -> Result<usize, sqlx::Error> {
        let today = rome_date(now);
        let mut scheduled = 0;
        for service in &self.catalogue.services {
            let Open::Yes {
                closes: Some(closes),
            } = service.availability.on(today)
            else {
                continue;
            };
            if closes - today > Duration::days(self.config.draft_closing_days) {
                continue;
            }
            let drafts: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, applicant_cf FROM applications WHERE status = 'bozza' AND service_code = $1",
            )
            .bind(&service.code)
            .fetch_all(&db.pool)
            .await?;
            for (id, cf) in drafts {
                let alert = Alert::new(
                    Kind::BozzaInScadenza,
                    &cf,
                    &id,
                    format!("bozza:{id}:{closes}"),
                )
                .with(serde_json::json!({ "closes": closes.to_string() }));
                schedule_now(db, now, now, &alert).await?;
                scheduled += 1;
            }
        }
        if today.month() == time::Month::December {
            let open: Vec<(String, String, String)> = sqlx::query_as(&format!(
                "SELECT id, applicant_cf, answers FROM applications WHERE numero IS NOT NULL AND {OPEN}"
            ))
            .fetch_all(&db.pool)
            .await?;
            for (id, cf, answers) in open {
                let answers: serde_json::Value = serde_json::from_str(&answers).unwrap_or_default();
                let has_isee = answers.as_object().is_some_and(|a| {
                    a.iter().any(|(k, v)| {
                        k.starts_with("isee")
                            && v.as_str().is_some_and(|s| !s.is_empty() && s != "no")
                    })
                });
                if has_isee {
                    let alert = Alert::new(
                        Kind::IseeInScadenza,
                        &cf,
                        &id,
                        format!("isee:{id}:{}", today.year()),
                    );
                    schedule_now(db, now, now, &alert).await?;
                    scheduled += 1;
                }
            }
        }
        let horizon = today + Duration::days(self.config.staff_term_days);
        let near: Vec<(String, String, String)> = sqlx::query_as(&format!(
            "SELECT id, ente_code, due_date FROM applications WHERE numero IS NOT NULL AND {OPEN} AND due_date <= $1"
        ))
        .bind(horizon.to_string())
        .fetch_all(&db.pool)
        .await?;
        for (id, ente, due) in near {
            let staff: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT cf FROM staff_roles WHERE ente_code = $1 AND role IN ('operatore', 'coordinatore')",
            )
            .bind(&ente)
            .fetch_all(&db.pool)
            .await?;
            for cf in staff {
                let alert = Alert::new(
                    Kind::TermineLegale,
                    &cf,
                    &id,
                    format!("termine:{id}:{due}:{cf}"),
                );
                schedule_now(db, now, now, &alert).await?;
                scheduled += 1;
            }
        }
        Ok(scheduled)
    }
}

impl JobHandler for Sweep {
    fn run<'a>(
        &'a self,
        ctx: &'a JobContext,
        _job: &'a Job,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let err = |e: sqlx::Error| JobError(e.to_string());
            let now = ctx.clock.now_ms();
            self.sweep(&ctx.db, now).await.map_err(err)?;
            schedule_sweep(&ctx.db, now, SWEEP_EVERY_MS)
                .await
                .map_err(err)
        })
    }
}
