//! Appointments with the segretariato sociale: the calendars' rules (`calendar`), their storage and
//! the places that cannot be overbooked (`store`), the six-step booking a citizen follows and the
//! management of their appointments (`booking`, `ics`), the staff agenda with the scheda di accesso
//! (`agenda`), and the administrators' configuration of offices, topics and calendars (`admin`).

pub mod admin;
pub mod agenda;
pub mod booking;
pub mod calendar;
pub mod ics;
pub mod store;

use calendar::Week;
use store::{Calendar, Office, Topic};

use crate::db::Db;
use crate::jobs::{BoxFuture, Job, JobContext, JobError, JobHandler, NewJob};

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    booking::routes(cfg);
    agenda::routes(cfg);
    admin::routes(cfg);
}

pub const EXPIRE_JOB: &str = "appointments.expire_holds";
const EXPIRE_EVERY_MS: i64 = 60_000;

/// Schedules the next pass over lapsed holds and unanswered offers.
pub async fn schedule_expiry(db: &Db, now_ms: i64, delay_ms: i64) -> Result<(), sqlx::Error> {
    let run_at = now_ms + delay_ms;
    let job = NewJob::new(EXPIRE_JOB, serde_json::json!({}), run_at)
        .idempotency_key(format!("{EXPIRE_JOB}:{}", run_at / EXPIRE_EVERY_MS));
    crate::jobs::enqueue(&db.pool, now_ms, &job).await?;
    Ok(())
}

/// Every minute: lapsed holds return their place, unanswered offers pass to the next citizen waiting.
#[derive(Debug)]
pub struct ExpireHolds {
    pub offer_ms: i64,
}

impl JobHandler for ExpireHolds {
    fn run<'a>(
        &'a self,
        ctx: &'a JobContext,
        _job: &'a Job,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let err = |e: sqlx::Error| JobError(e.to_string());
            let now = ctx.clock.now_ms();
            let handled = store::expire_holds(&ctx.db, now, self.offer_ms)
                .await
                .map_err(err)?;
            if handled > 0 {
                tracing::info!(handled, "lapsed appointment holds released");
            }
            schedule_expiry(&ctx.db, now, EXPIRE_EVERY_MS)
                .await
                .map_err(err)
        })
    }
}

/// The demo configuration (development mode): Valleverde with two offices, Montebello with one.
/// Only what is missing is added, so an administrator's changes survive a restart.
pub async fn seed_demo(db: &Db, now: i64) -> Result<(), sqlx::Error> {
    let topics = [
        (
            "vv-informazioni",
            "valleverde",
            "Informazioni e orientamento sui servizi sociali",
            None,
        ),
        (
            "vv-sad",
            "valleverde",
            "Assistenza domiciliare (SAD)",
            Some("sad"),
        ),
        (
            "vv-fna",
            "valleverde",
            "FNA Misura B2: sostegno alla disabilità grave",
            Some("fna-b2"),
        ),
        (
            "vv-bonus",
            "valleverde",
            "Bonus famiglia",
            Some("bonus-famiglia"),
        ),
        (
            "mb-informazioni",
            "montebello",
            "Informazioni e orientamento sui servizi sociali",
            None,
        ),
        (
            "mb-sad",
            "montebello",
            "Assistenza domiciliare (SAD)",
            Some("sad"),
        ),
        (
            "mb-fna",
            "montebello",
            "FNA Misura B2: sostegno alla disabilità grave",
            Some("fna-b2"),
        ),
    ];
    let known: Vec<String> = store::topics(db).await?.into_iter().map(|t| t.id).collect();
    for (id, ente, title, service) in topics {
        if !known.iter().any(|k| k == id) {
            store::save_topic(
                db,
                &Topic {
                    id: id.into(),
                    ente_code: ente.into(),
                    title: title.into(),
                    service_code: service.map(str::to_string),
                },
            )
            .await?;
        }
    }
    let offices = [
        (
            "vv-municipio",
            "valleverde",
            "Segretariato sociale, Palazzo municipale",
            "Piazza Garibaldi 1, Valleverde",
            "Valleverde",
            "04-23",
            "Lunedì, mercoledì e venerdì 9:00–12:30; giovedì 14:30–17:00",
            "Ingresso senza gradini da via Cavour, ascensore al primo piano, servizi igienici accessibili.",
        ),
        (
            "vv-borgo",
            "valleverde",
            "Sportello sociale di quartiere Borgo Nuovo",
            "Via dei Tigli 12, Valleverde (frazione Borgo Nuovo)",
            "Valleverde",
            "04-23",
            "Martedì e giovedì 9:00–12:00",
            "Piano terra con rampa; parcheggio riservato davanti all'ingresso.",
        ),
        (
            "mb-centro",
            "montebello",
            "Servizi sociali del Comune di Montebello",
            "Via Roma 40, Montebello",
            "Montebello",
            "09-29",
            "Dal lunedì al venerdì 10:00–12:00",
            "Ingresso accessibile dal cortile interno; chiedere al citofono.",
        ),
    ];
    for (id, ente, name, address, comune, patron, hours, access) in offices {
        if store::office_by_id(db, id).await?.is_none() {
            store::save_office(
                db,
                now,
                &Office {
                    id: id.into(),
                    ente_code: ente.into(),
                    name: name.into(),
                    address: address.into(),
                    comune: comune.into(),
                    patron_day: Some(patron.into()),
                    opening_hours: hours.into(),
                    accessibility: access.into(),
                },
            )
            .await?;
        }
    }
    let week = |days: [&str; 7]| Week(days.map(str::to_string));
    let calendars = [
        (
            "vv-municipio-as",
            "vv-municipio",
            "Assistente sociale",
            week([
                "09:00-12:30",
                "",
                "09:00-12:30",
                "14:30-17:00",
                "09:00-12:30",
                "",
                "",
            ]),
            1,
            vec!["vv-informazioni", "vv-sad", "vv-fna", "vv-bonus"],
            vec!["NREPLA75E15D969F"],
        ),
        (
            "vv-borgo-sportello",
            "vv-borgo",
            "Sportello di quartiere",
            week(["", "09:00-12:00", "", "09:00-12:00", "", "", ""]),
            2,
            vec!["vv-informazioni", "vv-sad"],
            vec!["NREPLA75E15D969F"],
        ),
        (
            "mb-centro-as",
            "mb-centro",
            "Assistente sociale",
            week([
                "10:00-12:00",
                "10:00-12:00",
                "10:00-12:00",
                "10:00-12:00",
                "10:00-12:00",
                "",
                "",
            ]),
            1,
            vec!["mb-informazioni", "mb-sad", "mb-fna"],
            vec!["GLLLRA82H60A944Y"],
        ),
    ];
    for (id, office, name, week, places, topics, operators) in calendars {
        if store::calendar_by_id(db, id).await?.is_none() {
            store::save_calendar(
                db,
                now,
                &Calendar {
                    id: id.into(),
                    office_id: office.into(),
                    name: name.into(),
                    week,
                    slot_minutes: 30,
                    places,
                    min_notice_minutes: 60,
                    max_days: 30,
                    cancel_minutes: 24 * 60,
                    topics: topics.into_iter().map(str::to_string).collect(),
                    operators: operators.into_iter().map(str::to_string).collect(),
                },
            )
            .await?;
        }
    }
    Ok(())
}
