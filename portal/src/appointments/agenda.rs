//! The staff side of appointments: the agenda of an office by day or week (all its calendars, or
//! only those the operator receives in), attended or missed, and the scheda di accesso e
//! orientamento of the contact, which goes to the CSI. Staff see only the offices of their enti,
//! and every appointment shown or changed is written to the audit log.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpMessage, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;
use time::{Date, Duration};

use super::booking::status_label;
use super::calendar::{clock_label, day_label};
use super::store::{self, Appointment, Office, Scheda};
use crate::auth::access::{self, Access, Action};
use crate::auth::{person_at_level, see_other, Principal, LOGIN_LEVEL};
use crate::domain::italian_time::{date_time, rome_date, rome_instant};
use crate::domain::CodiceFiscale;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::{render, render_status};
use crate::web::RequestId;

pub const AREAS: [&str; 7] = [
    "Minori e famiglia",
    "Anziani",
    "Disabilità",
    "Povertà ed esclusione sociale",
    "Immigrazione",
    "Dipendenze",
    "Salute mentale",
];

pub const OUTCOMES: [&str; 4] = [
    "Informazione",
    "Orientamento",
    "Invio ad altro servizio",
    "Presa in carico",
];

/// The offices of the enti the staff member serves; citizens get 403.
async fn staff_offices(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
) -> Result<Vec<Office>, AppError> {
    person_at_level(req, principal, LOGIN_LEVEL)?;
    let Principal::Staff { memberships, .. } = principal else {
        return Err(AppError::Forbidden);
    };
    Ok(store::offices(&state.db)
        .await?
        .into_iter()
        .filter(|o| memberships.iter().any(|m| m.ente == o.ente_code))
        .collect())
}

async fn audit(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    a: &Appointment,
    office: &Office,
    action: Action,
    purpose: &str,
) -> Result<(), AppError> {
    let subject = CodiceFiscale::parse(&a.citizen_cf).map_err(|_| AppError::NotFound)?;
    let object = format!("appuntamento:{}", a.id);
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    access::authorize(
        &state.db,
        state.clock.now_ms(),
        principal,
        &Access {
            subject: &subject,
            action,
            object: &object,
            purpose,
            ente: Some(&office.ente_code),
        },
        request_id.as_deref(),
    )
    .await
}

#[derive(Debug, Deserialize)]
struct AgendaQuery {
    sede: Option<String>,
    giorno: Option<String>,
    vista: Option<String>,
    operatore: Option<String>,
}

#[derive(Debug, Serialize)]
struct Row {
    id: String,
    time: String,
    end: String,
    calendar: String,
    name: String,
    cf: String,
    topic: Option<String>,
    reason: Option<String>,
    phone: Option<String>,
    status: String,
    status_label: &'static str,
    has_scheda: bool,
}

#[derive(Debug, Serialize)]
struct Day {
    label: String,
    rows: Vec<Row>,
}

#[get("/ufficio/agenda")]
async fn agenda(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    query: web::Query<AgendaQuery>,
) -> Result<HttpResponse, AppError> {
    let offices = staff_offices(&state, &req, &principal).await?;
    let office = match query.sede.as_deref() {
        Some(id) => offices.iter().find(|o| o.id == id),
        None => offices.first(),
    };
    let now = state.clock.now_ms();
    let day = query
        .giorno
        .as_deref()
        .and_then(|d| Date::parse(d, &time::format_description::well_known::Iso8601::DATE).ok())
        .unwrap_or_else(|| rome_date(now));
    let week = query.vista.as_deref() == Some("settimana");
    let operator = query.operatore.clone().filter(|o| !o.is_empty());
    let (from, days) = if week {
        (
            day - Duration::days(i64::from(day.weekday().number_days_from_monday())),
            7,
        )
    } else {
        (day, 1)
    };
    let mut shown: Vec<Day> = Vec::new();
    let mut operators: Vec<(String, String)> = Vec::new();
    let topics: HashMap<String, String> = store::topics(&state.db)
        .await?
        .into_iter()
        .map(|t| (t.id, t.title))
        .collect();
    if let Some(office) = office {
        let all = store::calendars_of(&state.db, &office.id).await?;
        let mut cfs: Vec<&String> = all.iter().flat_map(|c| &c.operators).collect();
        cfs.sort();
        cfs.dedup();
        for cf in cfs {
            let name: Option<String> = sqlx::query_scalar(
                "SELECT given_name || ' ' || family_name FROM people WHERE cf = $1",
            )
            .bind(cf)
            .fetch_optional(&state.db.pool)
            .await?;
            operators.push((cf.clone(), name.unwrap_or_else(|| cf.clone())));
        }
        let calendars: Vec<store::Calendar> = all
            .into_iter()
            .filter(|c| operator.as_ref().is_none_or(|o| c.operators.contains(o)))
            .collect();
        let names: HashMap<&str, &str> = calendars
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str()))
            .collect();
        let ids: Vec<String> = calendars.iter().map(|c| c.id.clone()).collect();
        for offset in 0..days {
            let date = from + Duration::days(offset);
            let start = rome_instant(date, 0);
            let end = rome_instant(date + Duration::days(1), 0);
            let mut rows = Vec::new();
            for (a, name) in store::agenda(&state.db, &ids, start, end).await? {
                audit(&state, &req, &principal, &a, office, Action::Read, "agenda").await?;
                rows.push(Row {
                    time: clock_label(a.starts_at),
                    end: clock_label(a.ends_at),
                    calendar: names
                        .get(a.calendar_id.as_str())
                        .copied()
                        .unwrap_or("")
                        .to_string(),
                    name,
                    topic: a.topic_id.as_ref().and_then(|t| topics.get(t).cloned()),
                    reason: a.reason.clone(),
                    phone: a.phone.clone(),
                    status_label: status_label(&a.status),
                    has_scheda: store::scheda(&state.db, &a.id).await?.is_some(),
                    status: a.status,
                    cf: a.citizen_cf,
                    id: a.id,
                });
            }
            if !rows.is_empty() || !week {
                shown.push(Day {
                    label: day_label(date),
                    rows,
                });
            }
        }
    }
    let mut ctx = Context::new();
    ctx.insert("offices", &offices);
    ctx.insert("office", &office);
    ctx.insert("day", &day.to_string());
    ctx.insert("week", &week);
    ctx.insert("operators", &operators);
    ctx.insert("operator", &operator);
    ctx.insert("days", &shown);
    ctx.insert("previous", &(day - Duration::days(days)).to_string());
    ctx.insert("next", &(day + Duration::days(days)).to_string());
    render(&state, &req, "appointments/agenda.html", ctx)
}

/// The appointment `id` with its office, when the staff member serves the office's ente.
async fn staff_appointment(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    id: &str,
) -> Result<(Appointment, Office), AppError> {
    let offices = staff_offices(state, req, principal).await?;
    let a = store::by_id(&state.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let calendar = store::calendar_by_id(&state.db, &a.calendar_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let office = offices
        .into_iter()
        .find(|o| o.id == calendar.office_id)
        .ok_or(AppError::NotFound)?;
    Ok((a, office))
}

fn back_to_agenda(a: &Appointment, office: &Office) -> String {
    format!(
        "/ufficio/agenda?sede={}&giorno={}",
        office.id,
        rome_date(a.starts_at)
    )
}

#[derive(Debug, Deserialize)]
struct OutcomeForm {
    #[serde(default)]
    esito: String,
}

#[post("/ufficio/appuntamenti/{id}/esito")]
async fn mark(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<OutcomeForm>,
) -> Result<HttpResponse, AppError> {
    let (a, office) = staff_appointment(&state, &req, &principal, &id).await?;
    if !matches!(form.esito.as_str(), "presentato" | "assente") {
        return Err(AppError::BadRequest("Scegli presentato o assente.".into()));
    }
    audit(
        &state,
        &req,
        &principal,
        &a,
        &office,
        Action::Change,
        "esito appuntamento",
    )
    .await?;
    let me = principal
        .person()
        .map(|p| p.cf.to_string())
        .unwrap_or_default();
    store::mark(&state.db, state.clock.now_ms(), &a.id, &form.esito, &me).await?;
    Ok(see_other(&back_to_agenda(&a, &office)))
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct SchedaForm {
    #[serde(default)]
    bisogno: String,
    #[serde(default)]
    area: String,
    #[serde(default)]
    esito: String,
    #[serde(default)]
    note: String,
}

async fn scheda_page(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    id: &str,
    form: &SchedaForm,
    errors: &HashMap<&str, &str>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let (a, office) = staff_appointment(state, req, principal, id).await?;
    audit(
        state,
        req,
        principal,
        &a,
        &office,
        Action::Read,
        "scheda di accesso",
    )
    .await?;
    let name: Option<String> =
        sqlx::query_scalar("SELECT given_name || ' ' || family_name FROM people WHERE cf = $1")
            .bind(&a.citizen_cf)
            .fetch_optional(&state.db.pool)
            .await?;
    let recorded = store::scheda(&state.db, &a.id).await?;
    let mut ctx = Context::new();
    ctx.insert("a", &a);
    ctx.insert("when", &date_time(a.starts_at));
    ctx.insert("name", &name);
    ctx.insert("office", &office);
    ctx.insert("back", &back_to_agenda(&a, &office));
    ctx.insert("recorded", &recorded);
    ctx.insert(
        "recorded_at",
        &recorded.as_ref().map(|s| date_time(s.recorded_at)),
    );
    ctx.insert("areas", &AREAS);
    ctx.insert("outcomes", &OUTCOMES);
    ctx.insert("form", form);
    ctx.insert("errors", errors);
    render_status(state, req, "appointments/scheda.html", ctx, status)
}

#[get("/ufficio/appuntamenti/{id}/scheda")]
async fn scheda(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    scheda_page(
        &state,
        &req,
        &principal,
        &id,
        &SchedaForm::default(),
        &HashMap::new(),
        StatusCode::OK,
    )
    .await
}

#[post("/ufficio/appuntamenti/{id}/scheda")]
async fn record_scheda(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<SchedaForm>,
) -> Result<HttpResponse, AppError> {
    let (a, office) = staff_appointment(&state, &req, &principal, &id).await?;
    let mut errors = HashMap::new();
    let need = form.bisogno.trim();
    if need.is_empty() || need.chars().count() > 2000 {
        errors.insert(
            "bisogno",
            "Scrivi il bisogno espresso (al massimo 2000 caratteri).",
        );
    }
    if !AREAS.contains(&form.area.as_str()) {
        errors.insert("area", "Scegli l'area di bisogno.");
    }
    if !OUTCOMES.contains(&form.esito.as_str()) {
        errors.insert("esito", "Scegli l'esito del contatto.");
    }
    if form.note.chars().count() > 2000 {
        errors.insert("note", "Scrivi al massimo 2000 caratteri.");
    }
    if !matches!(a.status.as_str(), "prenotato" | "presentato") {
        errors.insert(
            "bisogno",
            "La scheda si compila per un appuntamento prenotato o svolto.",
        );
    }
    if !errors.is_empty() {
        return scheda_page(
            &state,
            &req,
            &principal,
            &id,
            &form,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    audit(
        &state,
        &req,
        &principal,
        &a,
        &office,
        Action::Change,
        "scheda di accesso",
    )
    .await?;
    let note = form.note.trim();
    store::record_scheda(
        &state.db,
        state.clock.now_ms(),
        &a,
        &Scheda {
            need: need.to_string(),
            area: form.area.clone(),
            outcome: form.esito.clone(),
            notes: (!note.is_empty()).then(|| note.to_string()),
            recorded_by: principal
                .person()
                .map(|p| p.cf.to_string())
                .unwrap_or_default(),
            recorded_at: state.clock.now_ms(),
        },
    )
    .await?;
    Ok(see_other(&format!("/ufficio/appuntamenti/{id}/scheda")))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(agenda)
        .service(mark)
        .service(scheda)
        .service(record_scheda);
}
