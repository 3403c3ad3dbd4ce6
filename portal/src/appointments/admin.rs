//! The administrators' configuration of appointments, for their own enti: offices (address, comune
//! and its patron day, opening hours, accessibility) and their closures, topics linked to services,
//! and each office's calendars (hours per weekday, slot length, places, booking window,
//! cancellation notice, operators, topics).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;

use super::calendar::{parse_patron_day, Week, WEEKDAYS};
use super::store::{self, Calendar, Office, Topic};
use crate::applications::form::parse_date;
use crate::auth::{person_at_level, see_other, Principal, Role};
use crate::domain::CodiceFiscale;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render_status;

/// The enti the principal administers, at the configured level; others get 403.
fn administered(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
) -> Result<Vec<String>, AppError> {
    person_at_level(req, principal, state.config.auth.staff_admin_level)?;
    let enti: Vec<String> = principal
        .enti_with(Role::Amministratore)
        .into_iter()
        .map(str::to_string)
        .collect();
    if enti.is_empty() {
        return Err(AppError::Forbidden);
    }
    Ok(enti)
}

async fn administered_office(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    id: &str,
) -> Result<Office, AppError> {
    let enti = administered(state, req, principal)?;
    store::office_by_id(&state.db, id)
        .await?
        .filter(|o| enti.contains(&o.ente_code))
        .ok_or(AppError::NotFound)
}

fn text(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn required(
    form: &HashMap<String, String>,
    name: &'static str,
    max: usize,
    errors: &mut Vec<String>,
    label: &str,
) -> String {
    let value = text(form, name);
    if value.is_empty() {
        errors.push(format!("{label}: campo obbligatorio."));
    } else if value.chars().count() > max {
        errors.push(format!("{label}: al massimo {max} caratteri."));
    }
    value
}

fn number(
    form: &HashMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    errors: &mut Vec<String>,
    label: &str,
) -> i64 {
    match text(form, name).parse::<i64>() {
        Ok(n) if range.contains(&n) => n,
        _ => {
            errors.push(format!(
                "{label}: scrivi un numero intero da {} a {}.",
                range.start(),
                range.end()
            ));
            *range.start()
        }
    }
}

#[derive(Debug, Serialize)]
struct EnteOption {
    code: String,
    name: String,
}

async fn ente_options(state: &AppState, enti: &[String]) -> Result<Vec<EnteOption>, AppError> {
    let all: Vec<(String, String)> = sqlx::query_as("SELECT code, name FROM enti ORDER BY name")
        .fetch_all(&state.db.pool)
        .await?;
    Ok(all
        .into_iter()
        .filter(|(code, _)| enti.contains(code))
        .map(|(code, name)| EnteOption { code, name })
        .collect())
}

async fn overview(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    form: &HashMap<String, String>,
    errors: &[String],
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let enti = administered(state, req, principal)?;
    let offices: Vec<Office> = store::offices(&state.db)
        .await?
        .into_iter()
        .filter(|o| enti.contains(&o.ente_code))
        .collect();
    let topics: Vec<Topic> = store::topics(&state.db)
        .await?
        .into_iter()
        .filter(|t| enti.contains(&t.ente_code))
        .collect();
    let services: Vec<(&str, &str)> = state
        .catalogue
        .services
        .iter()
        .map(|s| (s.code.as_str(), s.title.as_str()))
        .collect();
    let mut ctx = Context::new();
    ctx.insert("enti", &ente_options(state, &enti).await?);
    ctx.insert("offices", &offices);
    ctx.insert("topics", &topics);
    ctx.insert("services", &services);
    ctx.insert("form", form);
    ctx.insert("errors", errors);
    render_status(state, req, "appointments/admin_offices.html", ctx, status)
}

#[get("/amministrazione/sedi")]
async fn offices_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    overview(
        &state,
        &req,
        &principal,
        &HashMap::new(),
        &[],
        StatusCode::OK,
    )
    .await
}

/// An office from its form, or the messages saying what to correct.
fn office_from(
    form: &HashMap<String, String>,
    id: String,
    ente_code: String,
) -> Result<Office, Vec<String>> {
    let mut errors = Vec::new();
    let name = required(form, "nome", 200, &mut errors, "Nome della sede");
    let address = required(form, "indirizzo", 300, &mut errors, "Indirizzo");
    let comune = required(form, "comune", 100, &mut errors, "Comune");
    let opening_hours = required(form, "orari", 500, &mut errors, "Orari di apertura");
    let accessibility = text(form, "accessibilita");
    if accessibility.chars().count() > 1000 {
        errors.push("Accessibilità: al massimo 1000 caratteri.".into());
    }
    let patron_day = parse_patron_day(&text(form, "patrono")).unwrap_or_else(|e| {
        errors.push(format!("Santo patrono: {e}"));
        None
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Office {
        id,
        ente_code,
        name,
        address,
        comune,
        patron_day,
        opening_hours,
        accessibility,
    })
}

#[post("/amministrazione/sedi")]
async fn create_office(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    form: web::Form<HashMap<String, String>>,
) -> Result<HttpResponse, AppError> {
    let enti = administered(&state, &req, &principal)?;
    let ente = text(&form, "ente");
    let result = if enti.contains(&ente) {
        office_from(&form, store::new_id(), ente)
    } else {
        Err(vec!["Scegli l'ente della sede.".into()])
    };
    match result {
        Ok(office) => {
            store::save_office(&state.db, state.clock.now_ms(), &office).await?;
            Ok(see_other(&format!("/amministrazione/sedi/{}", office.id)))
        }
        Err(errors) => {
            overview(
                &state,
                &req,
                &principal,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

#[post("/amministrazione/motivi")]
async fn create_topic(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    form: web::Form<HashMap<String, String>>,
) -> Result<HttpResponse, AppError> {
    let enti = administered(&state, &req, &principal)?;
    let mut errors = Vec::new();
    let ente = text(&form, "ente");
    if !enti.contains(&ente) {
        errors.push("Scegli l'ente del motivo.".into());
    }
    let title = required(&form, "titolo", 200, &mut errors, "Motivo");
    let service = text(&form, "servizio");
    if !service.is_empty() && state.catalogue.get(&service).is_none() {
        errors.push("Scegli un servizio dell'elenco.".into());
    }
    if !errors.is_empty() {
        return overview(
            &state,
            &req,
            &principal,
            &form,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    store::save_topic(
        &state.db,
        &Topic {
            id: store::new_id(),
            ente_code: ente,
            title,
            service_code: (!service.is_empty()).then_some(service),
        },
    )
    .await?;
    Ok(see_other("/amministrazione/sedi"))
}

async fn office_page(
    state: &AppState,
    req: &HttpRequest,
    office: &Office,
    form: Option<&HashMap<String, String>>,
    errors: &[String],
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let mut ctx = Context::new();
    ctx.insert("office", office);
    ctx.insert(
        "patron",
        &office
            .patron_day
            .as_deref()
            .and_then(|p| p.split_once('-'))
            .map(|(m, d)| format!("{d}/{m}"))
            .unwrap_or_default(),
    );
    ctx.insert("closures", &store::closures(&state.db, &office.id).await?);
    ctx.insert(
        "calendars",
        &store::calendars_of(&state.db, &office.id).await?,
    );
    ctx.insert("form", &form);
    ctx.insert("errors", errors);
    render_status(state, req, "appointments/admin_office.html", ctx, status)
}

#[get("/amministrazione/sedi/{id}")]
async fn edit_office(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let office = administered_office(&state, &req, &principal, &id).await?;
    office_page(&state, &req, &office, None, &[], StatusCode::OK).await
}

#[post("/amministrazione/sedi/{id}")]
async fn save_office(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
) -> Result<HttpResponse, AppError> {
    let office = administered_office(&state, &req, &principal, &id).await?;
    match office_from(&form, office.id.clone(), office.ente_code.clone()) {
        Ok(changed) => {
            store::save_office(&state.db, state.clock.now_ms(), &changed).await?;
            Ok(see_other(&format!("/amministrazione/sedi/{id}?salvato=1")))
        }
        Err(errors) => {
            office_page(
                &state,
                &req,
                &office,
                Some(&form),
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

#[post("/amministrazione/sedi/{id}/chiusure")]
async fn add_closure(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
) -> Result<HttpResponse, AppError> {
    let office = administered_office(&state, &req, &principal, &id).await?;
    let mut errors = Vec::new();
    let from = parse_date(&text(&form, "dal"));
    let to = match text(&form, "al").as_str() {
        "" => from,
        typed => parse_date(typed),
    };
    let reason = required(&form, "motivo", 200, &mut errors, "Motivo della chiusura");
    match (from, to) {
        (Some(from), Some(to)) if from <= to => {
            if errors.is_empty() {
                store::add_closure(&state.db, &office.id, from, to, &reason).await?;
                return Ok(see_other(&format!("/amministrazione/sedi/{id}")));
            }
        }
        _ => errors.push(
            "Date della chiusura: scrivi il primo e l'ultimo giorno, ad esempio 24/12/2026 e 31/12/2026."
                .into(),
        ),
    }
    office_page(
        &state,
        &req,
        &office,
        None,
        &errors,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

#[post("/amministrazione/sedi/{id}/chiusure/{closure}/elimina")]
async fn remove_closure(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, AppError> {
    let (id, closure) = path.into_inner();
    let office = administered_office(&state, &req, &principal, &id).await?;
    store::remove_closure(&state.db, &office.id, closure).await?;
    Ok(see_other(&format!("/amministrazione/sedi/{id}")))
}

#[derive(Debug, Deserialize)]
struct CalendarQuery {
    sede: Option<String>,
}

async fn calendar_page(
    state: &AppState,
    req: &HttpRequest,
    office: &Office,
    calendar: &Calendar,
    errors: &[String],
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let topics: Vec<Topic> = store::topics(&state.db)
        .await?
        .into_iter()
        .filter(|t| t.ente_code == office.ente_code)
        .collect();
    let days: Vec<(&str, &String)> = WEEKDAYS
        .iter()
        .copied()
        .zip(calendar.week.0.iter())
        .collect();
    let mut ctx = Context::new();
    ctx.insert("office", office);
    ctx.insert("calendar", calendar);
    ctx.insert("days", &days);
    ctx.insert("topics", &topics);
    ctx.insert("operators", &calendar.operators.join("\n"));
    ctx.insert("notice_hours", &(calendar.cancel_minutes / 60));
    ctx.insert("errors", errors);
    render_status(state, req, "appointments/admin_calendar.html", ctx, status)
}

/// A new calendar's defaults: weekday mornings, 30-minute slots, one place, booking from an hour to
/// 30 days ahead, cancellation up to 24 hours before.
fn new_calendar(office_id: &str) -> Calendar {
    let mut week = Week::default();
    for day in week.0.iter_mut().take(5) {
        *day = "09:00-12:30".into();
    }
    Calendar {
        id: store::new_id(),
        office_id: office_id.to_string(),
        name: String::new(),
        week,
        slot_minutes: 30,
        places: 1,
        min_notice_minutes: 60,
        max_days: 30,
        cancel_minutes: 24 * 60,
        topics: Vec::new(),
        operators: Vec::new(),
    }
}

#[get("/amministrazione/calendari/{id}")]
async fn edit_calendar(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<CalendarQuery>,
) -> Result<HttpResponse, AppError> {
    let (office, calendar) = if id.as_str() == "nuovo" {
        let office_id = query.sede.clone().unwrap_or_default();
        let office = administered_office(&state, &req, &principal, &office_id).await?;
        let calendar = new_calendar(&office.id);
        (office, calendar)
    } else {
        let calendar = store::calendar_by_id(&state.db, &id)
            .await?
            .ok_or(AppError::NotFound)?;
        (
            administered_office(&state, &req, &principal, &calendar.office_id).await?,
            calendar,
        )
    };
    calendar_page(&state, &req, &office, &calendar, &[], StatusCode::OK).await
}

#[post("/amministrazione/calendari/{id}")]
async fn save_calendar(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
) -> Result<HttpResponse, AppError> {
    let existing = store::calendar_by_id(&state.db, &id).await?;
    let office_id = match &existing {
        Some(c) => c.office_id.clone(),
        None => text(&form, "sede"),
    };
    let office = administered_office(&state, &req, &principal, &office_id).await?;
    let mut errors = Vec::new();
    let name = required(&form, "nome", 200, &mut errors, "Nome del calendario");
    let week = Week(std::array::from_fn(|i| text(&form, &format!("orari_{i}"))));
    if let Err(e) = week.parse() {
        errors.push(e);
    }
    let topics: Vec<String> = store::topics(&state.db)
        .await?
        .into_iter()
        .filter(|t| {
            t.ente_code == office.ente_code && form.contains_key(&format!("motivo_{}", t.id))
        })
        .map(|t| t.id)
        .collect();
    if topics.is_empty() {
        errors.push("Motivi: scegli almeno un motivo per cui si riceve.".into());
    }
    let mut operators = Vec::new();
    for typed in text(&form, "operatori")
        .split([',', '\n', ' ', ';'])
        .filter(|s| !s.trim().is_empty())
    {
        match CodiceFiscale::parse(typed.trim()) {
            Ok(cf) => operators.push(cf.to_string()),
            Err(_) => errors.push(format!(
                "Operatori: «{}» non è un codice fiscale valido.",
                typed.trim()
            )),
        }
    }
    let calendar = Calendar {
        id: existing
            .as_ref()
            .map_or_else(|| id.to_string(), |c| c.id.clone()),
        office_id: office.id.clone(),
        name,
        week,
        slot_minutes: number(
            &form,
            "durata",
            5..=240,
            &mut errors,
            "Durata di un appuntamento (minuti)",
        ),
        places: number(&form, "posti", 1..=100, &mut errors, "Posti per orario"),
        min_notice_minutes: number(
            &form,
            "preavviso",
            0..=10_080,
            &mut errors,
            "Preavviso minimo (minuti)",
        ),
        max_days: number(
            &form,
            "giorni",
            1..=365,
            &mut errors,
            "Prenotabile fino a (giorni)",
        ),
        cancel_minutes: number(
            &form,
            "annullabile",
            0..=720,
            &mut errors,
            "Annullabile fino a (ore prima)",
        ) * 60,
        topics,
        operators,
    };
    if existing.is_none()
        && (calendar.id.len() != 32 || !calendar.id.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(AppError::NotFound);
    }
    if !errors.is_empty() {
        return calendar_page(
            &state,
            &req,
            &office,
            &calendar,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    store::save_calendar(&state.db, state.clock.now_ms(), &calendar).await?;
    Ok(see_other(&format!(
        "/amministrazione/sedi/{}?calendario=1",
        office.id
    )))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(offices_page)
        .service(create_office)
        .service(create_topic)
        .service(edit_office)
        .service(save_office)
        .service(add_closure)
        .service(remove_closure)
        .service(edit_calendar)
        .service(save_calendar);
}
