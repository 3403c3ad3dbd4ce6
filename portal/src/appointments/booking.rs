//! Booking an appointment in six steps, as the Italian design model draws it: office → date and time
//! (only days with free places; the chosen time is held for a few minutes) → details (topic, a short
//! reason) → applicant (prefilled) → summary → confirmation, with the `.ics` file. Then, from the
//! area personale: cancel or move within the calendar's rules, answer an offer from the waiting list.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;
use time::Date;

use super::calendar::{clock_label, day_label};
use super::store::{self, Appointment, Calendar, Change, Confirm, Details, Hold, Office, Topic};
use crate::applications::form::{check_email, check_phone};
use crate::auth::{see_other, Person, Principal, LOGIN_LEVEL};
use crate::delegations::Scope;
use crate::domain::italian_time::date_time;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::{render, render_status};

const STEPS: [&str; 6] = [
    "Sede",
    "Data e ora",
    "Dettagli",
    "Richiedente",
    "Riepilogo",
    "Conferma",
];

const FULL: &str = "Posto non più disponibile: nel frattempo un'altra persona ha prenotato l'orario che avevi scelto. Scegli un altro orario.";

#[derive(Debug, Serialize)]
struct StepLink {
    title: &'static str,
    href: Option<String>,
    current: bool,
    done: bool,
}

/// The step list; `links` gives the address of the steps already done, when they can be revisited.
fn steps(current: usize, links: &[Option<String>]) -> Vec<StepLink> {
    STEPS
        .iter()
        .enumerate()
        .map(|(i, title)| StepLink {
            title,
            href: links.get(i).cloned().flatten().filter(|_| i + 1 < current),
            current: i + 1 == current,
            done: i + 1 < current,
        })
        .collect()
}

fn hold_ms(state: &AppState) -> i64 {
    state.config.appointments.hold_minutes * 60_000
}

fn offer_ms(state: &AppState) -> i64 {
    state.config.appointments.offer_hours * 3_600_000
}

/// The person the booking is for: the signed-in person, or whoever they act for under a mandate
/// covering `scopes` (see `crate::delegations`).
async fn signed_in(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    scopes: &[Scope],
) -> Result<Person, AppError> {
    Ok(
        crate::delegations::subject(state, req, principal, LOGIN_LEVEL, scopes)
            .await?
            .person,
    )
}

const BOOK: &[Scope] = &[Scope::Appuntamenti];
const SEE: &[Scope] = &[Scope::Stato, Scope::Appuntamenti];

async fn ente_name(state: &AppState, code: &str) -> Result<String, AppError> {
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM enti WHERE code = $1")
        .bind(code)
        .fetch_optional(&state.db.pool)
        .await?;
    Ok(name.unwrap_or_else(|| code.to_string()))
}

/// The calendars of `office` that receive for `service` (its topics), or all those with a topic.
async fn calendars_for(
    state: &AppState,
    office: &Office,
    service: Option<&str>,
) -> Result<Vec<Calendar>, AppError> {
    let calendars = store::calendars_of(&state.db, &office.id).await?;
    Ok(for_service(
        &store::topics(&state.db).await?,
        office,
        calendars,
        service,
    ))
}

fn for_service(
    topics: &[Topic],
    office: &Office,
    calendars: Vec<Calendar>,
    service: Option<&str>,
) -> Vec<Calendar> {
    let wanted: Vec<&str> = topics
        .iter()
        .filter(|t| t.ente_code == office.ente_code)
        .filter(|t| service.is_none() || t.service_code.as_deref() == service)
        .map(|t| t.id.as_str())
        .collect();
    calendars
        .into_iter()
        .filter(|c| c.topics.iter().any(|t| wanted.contains(&t.as_str())))
        .collect()
}

fn known_service(state: &AppState, service: Option<&str>) -> Option<String> {
    service
        .and_then(|code| state.catalogue.get(code))
        .map(|s| s.code.clone())
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    servizio: Option<String>,
}

#[derive(Debug, Serialize)]
struct OfficeChoice {
    office: Office,
    ente: String,
    href: String,
}

#[get("/appuntamenti/prenota")]
async fn choose_office(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, AppError> {
    signed_in(&state, &req, &principal, BOOK).await?;
    let service = known_service(&state, query.servizio.as_deref());
    let mut choices = Vec::new();
    for office in store::offices(&state.db).await? {
        if calendars_for(&state, &office, service.as_deref())
            .await?
            .is_empty()
        {
            continue;
        }
        let href = match &service {
            Some(s) => format!("/appuntamenti/prenota/{}?servizio={s}", office.id),
            None => format!("/appuntamenti/prenota/{}", office.id),
        };
        choices.push(OfficeChoice {
            ente: ente_name(&state, &office.ente_code).await?,
            office,
            href,
        });
    }
    let mut ctx = Context::new();
    ctx.insert("choices", &choices);
    ctx.insert(
        "service",
        &service.as_deref().and_then(|s| state.catalogue.get(s)),
    );
    ctx.insert("steps", &steps(1, &[]));
    render(&state, &req, "appointments/office.html", ctx)
}

#[derive(Debug, Default, Deserialize)]
struct WhenQuery {
    servizio: Option<String>,
    giorno: Option<String>,
    sposta: Option<String>,
}

#[derive(Debug, Serialize)]
struct DayChoice {
    date: String,
    label: String,
    free: i64,
    current: bool,
}

#[derive(Debug, Serialize)]
struct TimeChoice {
    value: String,
    label: String,
    free: i64,
}

struct WhenPage<'a> {
    office: &'a Office,
    calendars: &'a [Calendar],
    service: Option<String>,
    day: Option<&'a str>,
    moving: Option<&'a Appointment>,
    error: Option<&'a str>,
    status: StatusCode,
}

async fn when_page(
    state: &AppState,
    req: &HttpRequest,
    page: WhenPage<'_>,
) -> Result<HttpResponse, AppError> {
    let now = state.clock.now_ms();
    let closed = store::closed_days(&state.db, page.office).await?;
    let days = state
        .availability
        .get(&state.db, now, page.calendars, &closed)
        .await?;
    let chosen: Option<Date> = page
        .day
        .and_then(|d| Date::parse(d, &time::format_description::well_known::Iso8601::DATE).ok())
        .filter(|d| days.iter().any(|(day, _)| day == d))
        .or_else(|| days.first().map(|(d, _)| *d));
    let query_base = {
        let mut parts = Vec::new();
        if let Some(s) = &page.service {
            parts.push(format!("servizio={s}"));
        }
        if let Some(m) = page.moving {
            parts.push(format!("sposta={}", m.id));
        }
        parts.join("&")
    };
    let day_choices: Vec<DayChoice> = days
        .iter()
        .map(|(d, slots)| DayChoice {
            date: d.to_string(),
            label: day_label(*d),
            free: slots.iter().map(|s| s.free).sum(),
            current: Some(*d) == chosen,
        })
        .collect();
    let times: Vec<TimeChoice> = days
        .iter()
        .find(|(d, _)| Some(*d) == chosen)
        .map(|(_, slots)| {
            slots
                .iter()
                .map(|s| TimeChoice {
                    value: format!("{}@{}", s.calendar_id, s.starts_at),
                    label: clock_label(s.starts_at),
                    free: s.free,
                })
                .collect()
        })
        .unwrap_or_default();
    let topics = store::topics(&state.db).await?;
    let offered: Vec<&Topic> = topics
        .iter()
        .filter(|t| page.calendars.iter().any(|c| c.topics.contains(&t.id)))
        .collect();
    let preselected = offered
        .iter()
        .find(|t| t.service_code.is_some() && t.service_code == page.service)
        .map(|t| t.id.clone());
    let mut ctx = Context::new();
    ctx.insert("office", page.office);
    ctx.insert("days", &day_choices);
    ctx.insert("chosen_day", &chosen.map(day_label));
    ctx.insert("times", &times);
    ctx.insert("query", &query_base);
    ctx.insert("service", &page.service);
    ctx.insert("topics", &offered);
    ctx.insert("preselected", &preselected);
    ctx.insert("error", &page.error);
    ctx.insert("offer_hours", &state.config.appointments.offer_hours);
    ctx.insert(
        "moving",
        &page.moving.map(|m| {
            format!(
                "{} alle {}",
                day_label(time_date(m.starts_at)),
                clock_label(m.starts_at)
            )
        }),
    );
    ctx.insert("moving_id", &page.moving.map(|m| m.id.clone()));
    ctx.insert("steps", &steps(2, &[Some("/appuntamenti/prenota".into())]));
    render_status(state, req, "appointments/when.html", ctx, page.status)
}

fn time_date(ms: i64) -> Date {
    crate::domain::italian_time::rome_date(ms)
}

async fn office_or_404(state: &AppState, id: &str) -> Result<Office, AppError> {
    store::office_by_id(&state.db, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The booked appointment being moved, when the page is in "sposta" mode.
async fn moving(
    state: &AppState,
    person: &Person,
    id: Option<&str>,
) -> Result<Option<Appointment>, AppError> {
    match id.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(id) => match store::owned(&state.db, id, person.cf.as_str()).await? {
            Some(a) if a.status == "prenotato" => Ok(Some(a)),
            _ => Err(AppError::NotFound),
        },
    }
}

#[get("/appuntamenti/prenota/{office}")]
async fn choose_time(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    office: web::Path<String>,
    query: web::Query<WhenQuery>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    let office = office_or_404(&state, &office).await?;
    let moving = moving(&state, person, query.sposta.as_deref()).await?;
    let service = known_service(&state, query.servizio.as_deref());
    let calendars = match &moving {
        // A move stays with the same calendar's topics.
        Some(m) => store::calendars_of(&state.db, &office.id)
            .await?
            .into_iter()
            .filter(|c| m.topic_id.as_ref().is_none_or(|t| c.topics.contains(t)))
            .collect(),
        None => calendars_for(&state, &office, service.as_deref()).await?,
    };
    if calendars.is_empty() {
        return Err(AppError::NotFound);
    }
    when_page(
        &state,
        &req,
        WhenPage {
            office: &office,
            calendars: &calendars,
            service,
            day: query.giorno.as_deref(),
            moving: moving.as_ref(),
            error: None,
            status: StatusCode::OK,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct TimeForm {
    #[serde(default)]
    orario: String,
    servizio: Option<String>,
    sposta: Option<String>,
    giorno: Option<String>,
}

#[post("/appuntamenti/prenota/{office}")]
async fn take_time(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    office: web::Path<String>,
    form: web::Form<TimeForm>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    let office = office_or_404(&state, &office).await?;
    let moving = moving(&state, person, form.sposta.as_deref()).await?;
    let service = known_service(&state, form.servizio.as_deref());
    let calendars = store::calendars_of(&state.db, &office.id).await?;
    let now = state.clock.now_ms();
    let closed = store::closed_days(&state.db, &office).await?;
    let chosen = form.orario.split_once('@').and_then(|(calendar, start)| {
        let start: i64 = start.parse().ok()?;
        let calendar = calendars.iter().find(|c| c.id == calendar)?;
        calendar
            .rules()
            .bookable(start, now, &closed)
            .then_some((calendar, start))
    });
    let shown: Vec<Calendar> = match &moving {
        Some(_) => calendars.clone(),
        None => for_service(
            &store::topics(&state.db).await?,
            &office,
            calendars.clone(),
            service.as_deref(),
        ),
    };
    let again = |error: &'static str, status: StatusCode| WhenPage {
        office: &office,
        calendars: &shown,
        service: service.clone(),
        day: form.giorno.as_deref(),
        moving: moving.as_ref(),
        error: Some(error),
        status,
    };
    let Some((calendar, start)) = chosen else {
        return when_page(
            &state,
            &req,
            again(
                "Scegli uno degli orari disponibili.",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        )
        .await;
    };
    if let Some(old) = &moving {
        return match store::reschedule(
            &state.db,
            now,
            &old.id,
            person.cf.as_str(),
            calendar,
            start,
            offer_ms(&state),
        )
        .await?
        {
            Change::Done(new_id) => Ok(see_other(&format!("/appuntamenti/{new_id}?spostato=1"))),
            Change::Full => when_page(&state, &req, again(FULL, StatusCode::CONFLICT)).await,
            Change::TooLate | Change::NotBooked => {
                Ok(see_other(&format!("/appuntamenti/{}?modifica=no", old.id)))
            }
        };
    }
    match store::hold(
        &state.db,
        now,
        calendar,
        start,
        person.cf.as_str(),
        hold_ms(&state),
    )
    .await?
    {
        Hold::Held(id) => {
            let next = match &service {
                Some(s) => format!("/appuntamenti/{id}/dettagli?servizio={s}"),
                None => format!("/appuntamenti/{id}/dettagli"),
            };
            Ok(see_other(&next))
        }
        Hold::Full => when_page(&state, &req, again(FULL, StatusCode::CONFLICT)).await,
    }
}

#[derive(Debug, Deserialize)]
struct WaitForm {
    #[serde(default)]
    motivo: String,
}

#[post("/appuntamenti/prenota/{office}/lista-attesa")]
async fn join_waiting_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    office: web::Path<String>,
    form: web::Form<WaitForm>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    let office = office_or_404(&state, &office).await?;
    let calendars = store::calendars_of(&state.db, &office.id).await?;
    if !calendars.iter().any(|c| c.topics.contains(&form.motivo)) {
        return when_page(
            &state,
            &req,
            WhenPage {
                office: &office,
                calendars: &calendars,
                service: None,
                day: None,
                moving: None,
                error: Some("Scegli il motivo per cui vuoi essere ricontattato."),
                status: StatusCode::UNPROCESSABLE_ENTITY,
            },
        )
        .await;
    }
    store::join_waiting_list(
        &state.db,
        state.clock.now_ms(),
        &office.id,
        &form.motivo,
        person.cf.as_str(),
    )
    .await?;
    Ok(see_other("/area-personale/appuntamenti?lista=1"))
}

/// A held appointment of the citizen, with its calendar and office; a lapsed hold sends the
/// citizen to the page that explains it, a booked one to its page.
struct Held {
    person_cf: String,
    appointment: Appointment,
    calendar: Calendar,
    office: Office,
}

async fn held(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    id: &str,
) -> Result<Held, AppError> {
    let person = &signed_in(state, req, principal, BOOK).await?;
    let a = store::owned(&state.db, id, person.cf.as_str())
        .await?
        .ok_or(AppError::NotFound)?;
    let now = state.clock.now_ms();
    match a.status.as_str() {
        "trattenuto" if a.hold_until.is_some_and(|h| h >= now) => {}
        "trattenuto" | "scaduto" => {
            return Err(AppError::Elsewhere(format!("/appuntamenti/{id}/scaduto")))
        }
        _ => return Err(AppError::Elsewhere(format!("/appuntamenti/{id}"))),
    }
    let calendar = store::calendar_by_id(&state.db, &a.calendar_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let office = office_or_404(state, &calendar.office_id).await?;
    Ok(Held {
        person_cf: person.cf.to_string(),
        appointment: a,
        calendar,
        office,
    })
}

/// What the pages of steps 3–5 show of the held time.
fn held_context(ctx: &mut Context, h: &Held, current: usize) {
    let id = &h.appointment.id;
    ctx.insert("id", id);
    ctx.insert("office", &h.office);
    ctx.insert("day", &day_label(time_date(h.appointment.starts_at)));
    ctx.insert("time", &clock_label(h.appointment.starts_at));
    ctx.insert(
        "hold_until",
        &h.appointment.hold_until.map(date_time).unwrap_or_default(),
    );
    ctx.insert("offered", &h.appointment.waiting_id.is_some());
    let links = [
        None,
        None,
        Some(format!("/appuntamenti/{id}/dettagli")),
        Some(format!("/appuntamenti/{id}/richiedente")),
        Some(format!("/appuntamenti/{id}/riepilogo")),
    ];
    ctx.insert("steps", &steps(current, &links));
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct DetailsForm {
    #[serde(default)]
    motivo: String,
    #[serde(default)]
    descrizione: String,
    servizio: Option<String>,
}

async fn details_page(
    state: &AppState,
    req: &HttpRequest,
    h: &Held,
    form: &DetailsForm,
    errors: &HashMap<&str, String>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let topics: Vec<Topic> = store::topics(&state.db)
        .await?
        .into_iter()
        .filter(|t| h.calendar.topics.contains(&t.id))
        .collect();
    let mut ctx = Context::new();
    held_context(&mut ctx, h, 3);
    ctx.insert("topics", &topics);
    ctx.insert("form", form);
    ctx.insert("errors", errors);
    render_status(state, req, "appointments/details.html", ctx, status)
}

#[get("/appuntamenti/{id}/dettagli")]
async fn details(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, AppError> {
    let h = held(&state, &req, &principal, &id).await?;
    let topics = store::topics(&state.db).await?;
    // The topic chosen before, or the one of the service the citizen came from.
    let from_service = topics
        .iter()
        .filter(|t| h.calendar.topics.contains(&t.id))
        .find(|t| t.service_code.is_some() && t.service_code == query.servizio)
        .map(|t| t.id.clone());
    let form = DetailsForm {
        motivo: h
            .appointment
            .topic_id
            .clone()
            .or(from_service)
            .unwrap_or_default(),
        descrizione: h.appointment.reason.clone().unwrap_or_default(),
        servizio: None,
    };
    details_page(&state, &req, &h, &form, &HashMap::new(), StatusCode::OK).await
}

#[post("/appuntamenti/{id}/dettagli")]
async fn save_details(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<DetailsForm>,
) -> Result<HttpResponse, AppError> {
    let h = held(&state, &req, &principal, &id).await?;
    let mut errors = HashMap::new();
    if !h.calendar.topics.contains(&form.motivo) {
        errors.insert("motivo", "Scegli il motivo dell'appuntamento.".to_string());
    }
    let reason = form.descrizione.trim();
    if reason.is_empty() {
        errors.insert(
            "descrizione",
            "Scrivi in breve di che cosa vuoi parlare.".to_string(),
        );
    } else if reason.chars().count() > 500 {
        errors.insert(
            "descrizione",
            "Scrivi al massimo 500 caratteri.".to_string(),
        );
    }
    if !errors.is_empty() {
        return details_page(
            &state,
            &req,
            &h,
            &form,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let saved = store::save_details(
        &state.db,
        state.clock.now_ms(),
        &h.appointment.id,
        &h.person_cf,
        &Details {
            topic_id: Some(form.motivo.clone()),
            reason: Some(reason.to_string()),
            ..Details::default()
        },
    )
    .await?;
    let next = if saved { "richiedente" } else { "scaduto" };
    Ok(see_other(&format!(
        "/appuntamenti/{}/{next}",
        h.appointment.id
    )))
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct ApplicantForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    telefono: String,
}

async fn applicant_page(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    h: &Held,
    form: &ApplicantForm,
    errors: &HashMap<&str, String>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let mut ctx = Context::new();
    held_context(&mut ctx, h, 4);
    ctx.insert("name", &principal.person().map(Person::display_name));
    ctx.insert("cf", &h.person_cf);
    ctx.insert("form", form);
    ctx.insert("errors", errors);
    render_status(state, req, "appointments/applicant.html", ctx, status)
}

#[get("/appuntamenti/{id}/richiedente")]
async fn applicant(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let h = held(&state, &req, &principal, &id).await?;
    if h.appointment.topic_id.is_none() {
        return Ok(see_other(&format!("/appuntamenti/{id}/dettagli")));
    }
    let form = ApplicantForm {
        email: h.appointment.email.clone().unwrap_or_default(),
        telefono: h.appointment.phone.clone().unwrap_or_default(),
    };
    applicant_page(
        &state,
        &req,
        &principal,
        &h,
        &form,
        &HashMap::new(),
        StatusCode::OK,
    )
    .await
}

#[post("/appuntamenti/{id}/richiedente")]
async fn save_applicant(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<ApplicantForm>,
) -> Result<HttpResponse, AppError> {
    let h = held(&state, &req, &principal, &id).await?;
    let mut errors = HashMap::new();
    let email = match check_email(form.email.trim()) {
        Ok(e) => Some(e),
        Err(message) => {
            errors.insert("email", message);
            None
        }
    };
    let phone = match form.telefono.trim() {
        "" => Some(String::new()),
        typed => match check_phone(typed) {
            Ok(p) => Some(p),
            Err(message) => {
                errors.insert("telefono", message);
                None
            }
        },
    };
    if !errors.is_empty() {
        return applicant_page(
            &state,
            &req,
            &principal,
            &h,
            &form,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let saved = store::save_details(
        &state.db,
        state.clock.now_ms(),
        &h.appointment.id,
        &h.person_cf,
        &Details {
            email,
            phone,
            ..Details::default()
        },
    )
    .await?;
    let next = if saved { "riepilogo" } else { "scaduto" };
    Ok(see_other(&format!(
        "/appuntamenti/{}/{next}",
        h.appointment.id
    )))
}

/// The first step still missing of a held appointment, if any.
fn missing_step(a: &Appointment) -> Option<&'static str> {
    if a.topic_id.is_none() || a.reason.is_none() && a.waiting_id.is_none() {
        Some("dettagli")
    } else if a.email.as_deref().unwrap_or("").is_empty() {
        Some("richiedente")
    } else {
        None
    }
}

#[get("/appuntamenti/{id}/riepilogo")]
async fn summary(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let h = held(&state, &req, &principal, &id).await?;
    if let Some(step) = missing_step(&h.appointment) {
        return Ok(see_other(&format!("/appuntamenti/{id}/{step}")));
    }
    let topic = topic_title(&state, h.appointment.topic_id.as_deref()).await?;
    let mut ctx = Context::new();
    held_context(&mut ctx, &h, 5);
    ctx.insert("topic", &topic);
    ctx.insert("appointment", &h.appointment);
    ctx.insert("name", &principal.person().map(Person::display_name));
    ctx.insert("cf", &h.person_cf);
    render(&state, &req, "appointments/summary.html", ctx)
}

async fn topic_title(state: &AppState, id: Option<&str>) -> Result<Option<String>, AppError> {
    let Some(id) = id else { return Ok(None) };
    Ok(sqlx::query_scalar("SELECT title FROM topics WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?)
}

#[post("/appuntamenti/{id}/conferma")]
async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    let a = store::owned(&state.db, &id, person.cf.as_str())
        .await?
        .ok_or(AppError::NotFound)?;
    let holding =
        a.status == "trattenuto" && a.hold_until.is_some_and(|h| h >= state.clock.now_ms());
    if let Some(step) = missing_step(&a).filter(|_| holding) {
        return Ok(see_other(&format!("/appuntamenti/{id}/{step}")));
    }
    Ok(
        match store::confirm(&state.db, state.clock.now_ms(), &id, person.cf.as_str()).await? {
            Confirm::Booked => see_other(&format!("/appuntamenti/{id}?prenotato=1")),
            Confirm::Already => see_other(&format!("/appuntamenti/{id}")),
            Confirm::Lapsed => see_other(&format!("/appuntamenti/{id}/scaduto")),
        },
    )
}

#[post("/appuntamenti/{id}/rinuncia")]
async fn give_up(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    store::release(
        &state.db,
        state.clock.now_ms(),
        &id,
        person.cf.as_str(),
        offer_ms(&state),
    )
    .await?;
    Ok(see_other("/area-personale/appuntamenti"))
}

#[get("/appuntamenti/{id}/scaduto")]
async fn lapsed(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    let a = store::owned(&state.db, &id, person.cf.as_str())
        .await?
        .ok_or(AppError::NotFound)?;
    let calendar = store::calendar_by_id(&state.db, &a.calendar_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut ctx = Context::new();
    ctx.insert("office_id", &calendar.office_id);
    ctx.insert("offered", &a.waiting_id.is_some());
    ctx.insert("minutes", &state.config.appointments.hold_minutes);
    render_status(
        &state,
        &req,
        "appointments/lapsed.html",
        ctx,
        StatusCode::GONE,
    )
}

/// An appointment as the citizen's pages show it.
#[derive(Debug, Serialize)]
pub struct AppointmentView {
    pub id: String,
    pub status: String,
    pub status_label: &'static str,
    pub day: String,
    pub time: String,
    pub end: String,
    pub office: Option<Office>,
    pub topic: Option<String>,
    pub reason: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub can_change: bool,
    pub change_until: String,
    pub offered: bool,
    pub answer_by: Option<String>,
}

pub fn status_label(status: &str) -> &'static str {
    match status {
        "trattenuto" => "Da confermare",
        "prenotato" => "Prenotato",
        "presentato" => "Svolto",
        "assente" => "Non presentato",
        "annullato" => "Annullato",
        "spostato" => "Spostato",
        _ => "Scaduto",
    }
}

impl AppointmentView {
    /// `change_until`: the last instant it can be cancelled or moved online.
    pub fn new(
        a: &Appointment,
        office: Option<Office>,
        topic: Option<String>,
        change_until: i64,
        now: i64,
    ) -> AppointmentView {
        AppointmentView {
            id: a.id.clone(),
            status: a.status.clone(),
            status_label: status_label(&a.status),
            day: day_label(time_date(a.starts_at)),
            time: clock_label(a.starts_at),
            end: clock_label(a.ends_at),
            office,
            topic,
            reason: a.reason.clone(),
            email: a.email.clone(),
            phone: a.phone.clone(),
            can_change: a.status == "prenotato" && now <= change_until,
            change_until: date_time(change_until),
            offered: a.status == "trattenuto" && a.waiting_id.is_some(),
            answer_by: a.hold_until.map(date_time),
        }
    }
}

async fn view(state: &AppState, a: &Appointment) -> Result<AppointmentView, AppError> {
    let calendar = store::calendar_by_id(&state.db, &a.calendar_id).await?;
    let office = match &calendar {
        Some(c) => store::office_by_id(&state.db, &c.office_id).await?,
        None => None,
    };
    let change_until = a.starts_at - calendar.as_ref().map_or(0, |c| c.cancel_minutes) * 60_000;
    Ok(AppointmentView::new(
        a,
        office,
        topic_title(state, a.topic_id.as_deref()).await?,
        change_until,
        state.clock.now_ms(),
    ))
}

#[derive(Debug, Serialize)]
pub struct WaitingView {
    pub id: i64,
    pub office: String,
    pub topic: String,
    pub since: String,
}

/// The citizen's appointments and waiting-list places, for the area personale.
pub async fn list_for(
    state: &AppState,
    cf: &str,
) -> Result<(Vec<AppointmentView>, Vec<WaitingView>), AppError> {
    let mut appointments = Vec::new();
    for a in store::of_citizen(&state.db, cf).await? {
        if a.status == "trattenuto" && a.hold_until.is_some_and(|h| h < state.clock.now_ms()) {
            continue;
        }
        appointments.push(view(state, &a).await?);
    }
    let mut waiting = Vec::new();
    for w in store::waiting_of(&state.db, cf).await? {
        let office = store::office_by_id(&state.db, &w.office_id)
            .await?
            .map(|o| o.name)
            .unwrap_or_default();
        waiting.push(WaitingView {
            topic: topic_title(state, Some(&w.topic_id))
                .await?
                .unwrap_or_default(),
            id: w.id,
            office,
            since: date_time(w.created_at),
        });
    }
    Ok((appointments, waiting))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    prenotato: Option<String>,
    spostato: Option<String>,
    annullato: Option<String>,
    modifica: Option<String>,
}

#[get("/appuntamenti/{id}")]
async fn appointment_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, SEE).await?;
    let a = store::owned(&state.db, &id, person.cf.as_str())
        .await?
        .ok_or(AppError::NotFound)?;
    if a.status == "trattenuto" {
        if a.hold_until.is_some_and(|h| h < state.clock.now_ms()) {
            return Ok(see_other(&format!("/appuntamenti/{id}/scaduto")));
        }
        let step = missing_step(&a).unwrap_or("riepilogo");
        return Ok(see_other(&format!("/appuntamenti/{id}/{step}")));
    }
    let just_booked = query.prenotato.is_some() || query.spostato.is_some();
    let mut ctx = Context::new();
    ctx.insert("a", &view(&state, &a).await?);
    ctx.insert("just_booked", &just_booked);
    ctx.insert("moved", &query.spostato.is_some());
    ctx.insert("cancelled", &query.annullato.is_some());
    ctx.insert("refused", &query.modifica.is_some());
    ctx.insert("name", &person.display_name());
    ctx.insert("cf", person.cf.as_str());
    ctx.insert("steps", &just_booked.then(|| steps(6, &[])));
    render(&state, &req, "appointments/appointment.html", ctx)
}

#[get("/appuntamenti/{id}/appuntamento.ics")]
async fn calendar_file(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, SEE).await?;
    let a = store::owned(&state.db, &id, person.cf.as_str())
        .await?
        .filter(|a| a.status == "prenotato")
        .ok_or(AppError::NotFound)?;
    let v = view(&state, &a).await?;
    let host = url::Url::parse(&state.public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "sportello".into());
    let body = super::ics::event(&a, &v, &host);
    Ok(HttpResponse::Ok()
        .content_type("text/calendar; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"appuntamento.ics\"",
        ))
        .body(body))
}

#[get("/appuntamenti/{id}/annulla")]
async fn cancel_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    let a = store::owned(&state.db, &id, person.cf.as_str())
        .await?
        .ok_or(AppError::NotFound)?;
    let mut ctx = Context::new();
    ctx.insert("a", &view(&state, &a).await?);
    render(&state, &req, "appointments/cancel.html", ctx)
}

#[post("/appuntamenti/{id}/annulla")]
async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    store::owned(&state.db, &id, person.cf.as_str())
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(
        match store::cancel(
            &state.db,
            state.clock.now_ms(),
            &id,
            person.cf.as_str(),
            offer_ms(&state),
        )
        .await?
        {
            Change::Done(_) => see_other(&format!("/appuntamenti/{id}?annullato=1")),
            _ => see_other(&format!("/appuntamenti/{id}?modifica=no")),
        },
    )
}

#[post("/area-personale/lista-attesa/{id}/esci")]
async fn leave_waiting_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let person = &signed_in(&state, &req, &principal, BOOK).await?;
    store::leave_waiting_list(&state.db, state.clock.now_ms(), *id, person.cf.as_str()).await?;
    Ok(see_other("/area-personale/appuntamenti"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(choose_office)
        .service(choose_time)
        .service(take_time)
        .service(join_waiting_list)
        .service(details)
        .service(save_details)
        .service(applicant)
        .service(save_applicant)
        .service(summary)
        .service(confirm)
        .service(give_up)
        .service(lapsed)
        .service(calendar_file)
        .service(cancel_page)
        .service(cancel)
        .service(leave_waiting_list)
        .service(appointment_page);
}
