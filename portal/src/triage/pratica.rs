//! One pratica at the desk: the answers as sent, the requests and answers, the history and the
//! staff's log, the citizen's other pratiche and appointments, and the actions — take in charge
//! (self or another operator), classify the need, request documents with a deadline, preavviso di
//! rigetto, outcome, forward to the CSI, internal note. Every form carries the version it was read
//! at; if the pratica changed meanwhile, nothing is applied and the operator is told what changed.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;

use super::{audit_reads, authorize_change, served_enti};
use crate::applications::form::parse_date;
use crate::applications::status::{self, Actor, Change, Status, TransitionError};
use crate::applications::store::{self, Application};
use crate::appointments::agenda::AREAS;
use crate::auth::{see_other, Principal};
use crate::domain::italian_time::{date_time, long_date, rome_date};
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render_status;

/// The pratica `id` when the staff member serves its ente; 404 otherwise (its existence is private).
async fn served(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    id: &str,
) -> Result<Application, AppError> {
    let enti = served_enti(req, principal)?;
    store::get(&state.db, id)
        .await?
        .filter(|a| a.numero.is_some() && enti.contains(&a.ente_code))
        .ok_or(AppError::NotFound)
}

#[derive(Debug, Serialize)]
struct LogLine {
    at: i64,
    when: String,
    who: String,
    what: String,
}

async fn name_of(state: &AppState, cf: &str) -> Result<String, AppError> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT given_name || ' ' || family_name FROM people WHERE cf = $1")
            .bind(cf)
            .fetch_optional(&state.db.pool)
            .await?;
    Ok(name.unwrap_or_else(|| cf.to_string()))
}

/// The status history and the staff log, merged, oldest first; `since` keeps only what came after.
async fn log(state: &AppState, id: &str, since: i64) -> Result<Vec<LogLine>, AppError> {
    let mut lines = Vec::new();
    type HistoryRow = (i64, String, String, Option<String>, Option<String>);
    let history: Vec<HistoryRow> = sqlx::query_as(
        "SELECT at, to_status, actor_kind, actor_cf, reason FROM application_history WHERE application_id = $1 AND at > $2 ORDER BY id",
    )
    .bind(id)
    .bind(since)
    .fetch_all(&state.db.pool)
    .await?;
    for (at, to, kind, cf, reason) in history {
        let who = match cf {
            Some(cf) => name_of(state, &cf).await?,
            None => kind.to_uppercase(),
        };
        let label = Status::parse(&to).map(Status::label).unwrap_or("?");
        lines.push(LogLine {
            at,
            when: date_time(at),
            who,
            what: match reason {
                Some(r) => format!("Stato: {label} — {r}"),
                None => format!("Stato: {label}"),
            },
        });
    }
    let staff: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT at, actor_cf, action, text FROM staff_log WHERE application_id = $1 AND at > $2 ORDER BY id",
    )
    .bind(id)
    .bind(since)
    .fetch_all(&state.db.pool)
    .await?;
    for (at, cf, action, text) in staff {
        let what = match action.as_str() {
            "nota" => format!("Nota interna: {text}"),
            _ => text,
        };
        lines.push(LogLine {
            at,
            when: date_time(at),
            who: name_of(state, &cf).await?,
            what,
        });
    }
    lines.sort_by_key(|l| l.at);
    Ok(lines)
}

#[derive(Debug, Serialize)]
struct Other {
    href: Option<String>,
    label: String,
}

async fn page(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    app: &Application,
    error: Option<String>,
    changed: Option<Vec<LogLine>>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let numero = app.numero.clone().unwrap_or_default();
    audit_reads(
        &state.db,
        state.clock.now_ms(),
        req,
        principal,
        &[(app.applicant_cf.clone(), format!("pratica:{numero}"))],
        "lavorazione della pratica",
    )
    .await?;
    let contacts: Option<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT given_name, family_name, email, phone FROM people WHERE cf = $1")
            .bind(&app.applicant_cf)
            .fetch_optional(&state.db.pool)
            .await?;
    let requests: Vec<serde_json::Value> = store::requests(&state.db, &app.id)
        .await?
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "message": r.message,
                "deadline": r.deadline.map(long_date),
                "requested": date_time(r.requested_at),
                "answered": r.answered_at.map(date_time),
                "answer": r.answer,
            })
        })
        .collect();
    let mut others = Vec::new();
    for other in store::list_for(&state.db, &app.applicant_cf).await? {
        if other.id == app.id || other.numero.is_none() {
            continue;
        }
        let served = served_enti(req, principal)?.contains(&other.ente_code);
        others.push(Other {
            href: served.then(|| format!("/ufficio/pratiche/{}", other.id)),
            label: format!(
                "{} — {} ({})",
                other.numero.unwrap_or_default(),
                state
                    .catalogue
                    .get(&other.service_code)
                    .map(|s| s.title.clone())
                    .unwrap_or(other.service_code),
                other.status.label()
            ),
        });
    }
    let appointments: Vec<String> =
        crate::appointments::store::of_citizen(&state.db, &app.applicant_cf)
            .await?
            .into_iter()
            .map(|a| {
                format!(
                    "{} — {}",
                    date_time(a.starts_at),
                    crate::appointments::booking::status_label(&a.status)
                )
            })
            .collect();
    let service = state.catalogue.get(&app.service_code);
    let operators =
        super::queue::operator_names(state, std::slice::from_ref(&app.ente_code)).await?;
    let assigned = match &app.assigned_to {
        Some(cf) => Some(name_of(state, cf).await?),
        None => None,
    };
    let today = rome_date(state.clock.now_ms());
    let mut ctx = Context::new();
    ctx.insert(
        "app",
        &serde_json::json!({
            "id": app.id,
            "numero": numero,
            "status": app.status.as_str(),
            "status_label": app.status.label(),
            "final": app.status.is_final(),
            "submitted": app.submitted_at.map(date_time),
            "due": app.due_date.map(long_date),
            "days_left": app.due_date.map(|d| (d - today).whole_days()),
            "protocollo": app.protocollo,
            "area": app.need_area,
            "assigned": assigned,
            "version": app.updated_at,
        }),
    );
    ctx.insert(
        "service",
        &service
            .map(|s| s.title.clone())
            .unwrap_or(app.service_code.clone()),
    );
    ctx.insert("summary", &app.snapshot.as_ref().map(|s| &s.summary));
    ctx.insert("applicant", &contacts);
    ctx.insert("cf", &app.applicant_cf);
    ctx.insert(
        "sent_by",
        &app.snapshot
            .as_ref()
            .and_then(|s| s.delegate.as_ref())
            .map(|d| format!("{} ({}), {}", d.name, d.cf, d.role)),
    );
    ctx.insert("requests", &requests);
    ctx.insert(
        "documents",
        &crate::documents::for_application(&state.db, &app.id).await?,
    );
    ctx.insert("log", &log(state, &app.id, 0).await?);
    ctx.insert("others", &others);
    ctx.insert(
        "conversation",
        &crate::applications::conversation::list(&state.db, &app.id).await?,
    );
    ctx.insert("appointments", &appointments);
    ctx.insert("operators", &operators);
    ctx.insert("areas", &AREAS);
    ctx.insert("error", &error);
    ctx.insert("changed", &changed);
    ctx.insert(
        "user_cf",
        &principal
            .person()
            .map(|p| p.cf.to_string())
            .unwrap_or_default(),
    );
    ctx.insert(
        "can_take",
        &matches!(app.status, Status::Inviata | Status::Protocollata),
    );
    ctx.insert(
        "can_request",
        &status::allowed(app.status, Status::InAttesaDiIntegrazioni, Actor::Operatore),
    );
    ctx.insert(
        "can_preavviso",
        &status::allowed(app.status, Status::PreavvisoDiRigetto, Actor::Operatore),
    );
    ctx.insert(
        "can_accept",
        &status::allowed(app.status, Status::Accolta, Actor::Operatore),
    );
    ctx.insert(
        "can_reject",
        &status::allowed(app.status, Status::Respinta, Actor::Operatore),
    );
    render_status(state, req, "triage/pratica.html", ctx, status)
}

#[get("/ufficio/pratiche/{id}")]
async fn pratica_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let app = served(&state, &req, &principal, &id).await?;
    page(&state, &req, &principal, &app, None, None, StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    #[serde(default)]
    azione: String,
    #[serde(default)]
    versione: String,
    #[serde(default)]
    operatore: String,
    #[serde(default)]
    area: String,
    #[serde(default)]
    messaggio: String,
    #[serde(default)]
    scadenza: String,
    #[serde(default)]
    motivo: String,
    #[serde(default)]
    esito: String,
    #[serde(default)]
    nota: String,
    #[serde(default)]
    testo: String,
}

enum Outcome {
    Done,
    /// An Italian message: what to correct.
    Invalid(String),
    /// The pratica changed since the form was read.
    Changed,
}

/// A version-checked change of the pratica's own columns, with its staff-log line and the event for
/// the CSI, in one transaction.
async fn staff_change(
    state: &AppState,
    app: &Application,
    version: i64,
    actor: &str,
    set: (&str, Option<&str>),
    log: (&str, String),
    event: &str,
) -> Result<Outcome, AppError> {
    let now = state.clock.now_ms();
    let mut tx = state.db.pool.begin().await?;
    let sql = match set.0 {
        column @ ("assigned_to" | "need_area") => format!(
            "UPDATE applications SET {column} = $1, updated_at = $2 WHERE id = $3 AND updated_at = $4"
        ),
        _ => "UPDATE applications SET updated_at = $2 WHERE id = $3 AND updated_at = $4 AND $1 IS NULL"
            .to_string(),
    };
    let claimed = sqlx::query(&sql)
        .bind(set.1)
        .bind(now)
        .bind(&app.id)
        .bind(version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if claimed != 1 {
        tx.rollback().await?;
        return Ok(Outcome::Changed);
    }
    sqlx::query(
        "INSERT INTO staff_log (application_id, at, actor_cf, action, text) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&app.id)
    .bind(now)
    .bind(actor)
    .bind(log.0)
    .bind(&log.1)
    .execute(&mut *tx)
    .await?;
    if !event.is_empty() {
        let payload = serde_json::json!({
            "pratica": app.id,
            "numero": app.numero,
            "ente": app.ente_code,
            "operatore": actor,
            "azione": log.0,
            "valore": set.1,
            "at": now,
        });
        crate::csi::outbox(&mut tx, now, "pratica", event, &app.id, &payload).await?;
    }
    tx.commit().await?;
    Ok(Outcome::Done)
}

fn from_transition(result: Result<Status, TransitionError>) -> Result<Outcome, AppError> {
    match result {
        Ok(_) => Ok(Outcome::Done),
        Err(TransitionError::Conflict) => Ok(Outcome::Changed),
        Err(TransitionError::NotAllowed { .. }) => Ok(Outcome::Invalid(
            "Questa azione non è possibile nello stato attuale della pratica.".into(),
        )),
        Err(TransitionError::ReasonRequired(_)) => Ok(Outcome::Invalid(
            "Scrivi la motivazione: sarà comunicata al cittadino.".into(),
        )),
        Err(TransitionError::RequestIncomplete) => Ok(Outcome::Invalid(
            "Scrivi che cosa serve e una scadenza successiva a oggi (gg/mm/aaaa).".into(),
        )),
        Err(TransitionError::ProtocolRequired) => {
            Ok(Outcome::Invalid("Manca il numero di protocollo.".into()))
        }
        Err(TransitionError::NotFound) => Err(AppError::NotFound),
        Err(TransitionError::Db(e)) => Err(e.into()),
    }
}

#[post("/ufficio/pratiche/{id}")]
async fn act(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, AppError> {
    let app = served(&state, &req, &principal, &id).await?;
    let actor = principal
        .person()
        .map(|p| p.cf.to_string())
        .unwrap_or_default();
    authorize_change(
        &state,
        &req,
        &principal,
        &app,
        &format!("lavorazione: {}", form.azione),
    )
    .await?;
    let version: i64 = form.versione.parse().unwrap_or(-1);
    let outcome = if version != app.updated_at {
        Outcome::Changed
    } else {
        let now = state.clock.now_ms();
        let today = rome_date(now);
        let change = |to: Status| Change::to(to, Actor::Operatore, Some(actor.as_str()));
        match form.azione.as_str() {
            "assegna" => {
                let operators =
                    super::queue::operator_names(&state, std::slice::from_ref(&app.ente_code))
                        .await?;
                match operators.iter().find(|(cf, _)| *cf == form.operatore) {
                    None => Outcome::Invalid("Scegli un operatore dell'ente.".into()),
                    Some((cf, name)) => {
                        let done = staff_change(
                            &state,
                            &app,
                            version,
                            &actor,
                            ("assigned_to", Some(cf)),
                            ("assegnazione", format!("Assegnata a {name}")),
                            "pratica.assegnata",
                        )
                        .await?;
                        if matches!(done, Outcome::Done)
                            && matches!(app.status, Status::Inviata | Status::Protocollata)
                        {
                            from_transition(
                                status::transition(
                                    &state.db,
                                    now,
                                    today,
                                    &app.id,
                                    &change(Status::PresaInCarico),
                                )
                                .await,
                            )?
                        } else {
                            done
                        }
                    }
                }
            }
            "classifica" => {
                if AREAS.contains(&form.area.as_str()) {
                    staff_change(
                        &state,
                        &app,
                        version,
                        &actor,
                        ("need_area", Some(&form.area)),
                        ("classificazione", format!("Area di bisogno: {}", form.area)),
                        "pratica.classificata",
                    )
                    .await?
                } else {
                    Outcome::Invalid("Scegli l'area di bisogno.".into())
                }
            }
            "richiedi" => match parse_date(&form.scadenza) {
                None => Outcome::Invalid(
                    "Scrivi la scadenza per i documenti, ad esempio 15/12/2026.".into(),
                ),
                Some(deadline) => from_transition(
                    status::transition(
                        &state.db,
                        now,
                        today,
                        &app.id,
                        &Change {
                            request: Some((form.messaggio.as_str(), deadline)),
                            ..change(Status::InAttesaDiIntegrazioni)
                        },
                    )
                    .await,
                )?,
            },
            "preavviso" => from_transition(
                status::transition(
                    &state.db,
                    now,
                    today,
                    &app.id,
                    &Change {
                        reason: Some(&form.motivo),
                        ..change(Status::PreavvisoDiRigetto)
                    },
                )
                .await,
            )?,
            "esito" => {
                let to = match form.esito.as_str() {
                    "accolta" => Some(Status::Accolta),
                    "respinta" => Some(Status::Respinta),
                    _ => None,
                };
                match to {
                    None => Outcome::Invalid("Scegli l'esito.".into()),
                    Some(to) => from_transition(
                        status::transition(
                            &state.db,
                            now,
                            today,
                            &app.id,
                            &Change {
                                reason: Some(&form.motivo),
                                ..change(to)
                            },
                        )
                        .await,
                    )?,
                }
            }
            "inoltra" => {
                staff_change(
                    &state,
                    &app,
                    version,
                    &actor,
                    ("", None),
                    ("inoltro", "Inoltrata alla cartella sociale (CSI)".into()),
                    "pratica.inoltrata",
                )
                .await?
            }
            "rispondi" => match crate::applications::conversation::checked(&form.testo) {
                Err(message) => Outcome::Invalid(message.into()),
                Ok(text) => {
                    let mut tx = state.db.pool.begin().await?;
                    let claimed = sqlx::query(
                        "UPDATE applications SET updated_at = $1 WHERE id = $2 AND updated_at = $3",
                    )
                    .bind(now)
                    .bind(&app.id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if claimed == 1 {
                        crate::applications::conversation::write(
                            &mut tx,
                            now,
                            &app.ente_code,
                            &app.id,
                            &actor,
                            true,
                            text,
                        )
                        .await?;
                        let alert = crate::alerts::Alert::new(
                            crate::alerts::Kind::Risposta,
                            &app.applicant_cf,
                            &app.id,
                            format!("risposta:{}:{now}", app.id),
                        );
                        crate::alerts::schedule(&mut tx, now, now, &alert).await?;
                        tx.commit().await?;
                        Outcome::Done
                    } else {
                        tx.rollback().await?;
                        Outcome::Changed
                    }
                }
            },
            "nota" => {
                let note = form.nota.trim();
                if note.is_empty() || note.chars().count() > 4000 {
                    Outcome::Invalid("Scrivi la nota (al massimo 4000 caratteri).".into())
                } else {
                    staff_change(
                        &state,
                        &app,
                        version,
                        &actor,
                        ("", None),
                        ("nota", note.to_string()),
                        "",
                    )
                    .await?
                }
            }
            _ => Outcome::Invalid("Azione sconosciuta.".into()),
        }
    };
    match outcome {
        Outcome::Done => Ok(see_other(&format!("/ufficio/pratiche/{}?fatto=1", app.id))),
        Outcome::Invalid(message) => {
            page(
                &state,
                &req,
                &principal,
                &app,
                Some(message),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Outcome::Changed => {
            let current = store::get(&state.db, &app.id)
                .await?
                .ok_or(AppError::NotFound)?;
            let since = if version > 0 { version } else { app.updated_at };
            let changed = log(&state, &app.id, since).await?;
            page(
                &state,
                &req,
                &principal,
                &current,
                None,
                Some(changed),
                StatusCode::CONFLICT,
            )
            .await
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(pratica_page).service(act);
}
