//! The office's side: an operator records a legal representation (a parent for a minor, a tutore or
//! an amministratore di sostegno for an adult) or a delegation made on the paper form, after
//! checking the supporting document, and can end it. Operators, coordinators and administrators of
//! an ente do it for their ente; auditors only read. Each recording and ending is in the audit log
//! of the person represented.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpMessage, HttpRequest, HttpResponse};
use serde::Serialize;
use tera::Context;

use super::store::{self, NewMandate};
use super::{Kind, Mandate, Scope, State};
use crate::auth::access::{self, Access, Action};
use crate::auth::{see_other, Principal, Role};
use crate::domain::italian_time::{date_time, rome_date};
use crate::domain::CodiceFiscale;
use crate::server::AppState;
use crate::triage::{holds, served_enti};
use crate::web::error::AppError;
use crate::web::templates::render_status;
use crate::web::RequestId;

const PAGE: &str = "/ufficio/rappresentanze";
const WRITERS: &[Role] = &[Role::Operatore, Role::Coordinatore, Role::Amministratore];

#[derive(Debug, Serialize)]
struct Row {
    id: String,
    kind: &'static str,
    principal: String,
    agent: String,
    scopes: String,
    valid_until: String,
    state: &'static str,
    document: String,
    recorded: String,
    ente: String,
    can_end: bool,
}

fn row(m: &Mandate, today: time::Date, principal: &Principal) -> Row {
    let ente = m.ente_code.clone().unwrap_or_default();
    Row {
        id: m.id.clone(),
        kind: m.kind.label(),
        principal: format!("{} ({})", m.principal_name(), m.principal_cf),
        agent: format!("{} ({})", m.agent_name(), m.agent_cf),
        scopes: m.scopes_text(),
        valid_until: m.valid_until_text(),
        state: match m.state {
            State::Attiva if m.expired(today) => "Scaduta",
            State::Attiva => "Attiva",
            State::Proposta => "Proposta",
            State::Rifiutata => "Rifiutata",
            State::Revocata => "Revocata",
        },
        document: m.document.clone().unwrap_or_default(),
        recorded: date_time(m.created_at),
        can_end: m.state == State::Attiva && holds(principal, &ente, WRITERS),
        ente,
    }
}

#[derive(Debug, Default, Serialize)]
struct OfficeForm {
    values: BTreeMap<String, String>,
    scopes: Vec<String>,
    errors: BTreeMap<String, String>,
}

async fn page(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    enti: &[String],
    form: &OfficeForm,
    outcome: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let today = rome_date(state.clock.now_ms());
    let rows: Vec<Row> = store::recorded_by_office(&state.db, enti)
        .await?
        .iter()
        .map(|m| row(m, today, principal))
        .collect();
    let mut ctx = Context::new();
    ctx.insert("rows", &rows);
    ctx.insert("form", form);
    ctx.insert("outcome", &outcome);
    let writable: Vec<String> = enti
        .iter()
        .filter(|e| holds(principal, e, WRITERS))
        .cloned()
        .collect();
    ctx.insert("enti", &crate::db::ente_names(&state.db, &writable).await?);
    ctx.insert(
        "kinds",
        &Kind::ALL
            .iter()
            .map(|k| (k.as_str(), k.label()))
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "scopes",
        &Scope::ALL
            .iter()
            .map(|s| (s.as_str(), s.label()))
            .collect::<Vec<_>>(),
    );
    render_status(state, req, "delegations/office.html", ctx, status)
}

#[derive(Debug, serde::Deserialize)]
struct Outcome {
    esito: Option<String>,
}

#[get("/ufficio/rappresentanze")]
async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    q: web::Query<Outcome>,
) -> Result<HttpResponse, AppError> {
    let enti = served_enti(&req, &principal)?;
    let outcome = match q.esito.as_deref() {
        Some("registrata") => {
            Some("Registrata: da ora la persona può operare per conto di chi rappresenta.")
        }
        Some("chiusa") => Some("Chiusa: da ora non vale più."),
        _ => None,
    };
    page(
        &state,
        &req,
        &principal,
        &enti,
        &OfficeForm::default(),
        outcome,
        StatusCode::OK,
    )
    .await
}

struct Parsed {
    kind: Kind,
    ente: String,
    principal: CodiceFiscale,
    agent: CodiceFiscale,
    scopes: Vec<Scope>,
    until: time::Date,
}

fn parse(
    fields: &[(String, String)],
    principal: &Principal,
    today: time::Date,
) -> Result<(Parsed, OfficeForm), OfficeForm> {
    let mut form = OfficeForm::default();
    for (k, v) in fields {
        if k == "ambito" {
            form.scopes.push(v.clone());
        } else if k != "csrf_token" {
            form.values.insert(k.clone(), v.trim().to_string());
        }
    }
    let value = |name: &str| form.values.get(name).cloned().unwrap_or_default();
    let mut errors = BTreeMap::new();
    let mut note = |field: &str, message: &str| {
        errors
            .entry(field.to_string())
            .or_insert_with(|| message.to_string());
    };
    let kind = Kind::parse(&value("tipo"));
    if kind.is_none() {
        note("tipo", "Scegli il tipo di rappresentanza o di delega.");
    }
    let ente = value("ente");
    if !holds(principal, &ente, WRITERS) {
        note("ente", "Scegli uno degli enti per cui operi.");
    }
    let mut cf = |field: &str| match CodiceFiscale::parse(&value(field).to_uppercase()) {
        Ok(cf) => Some(cf),
        Err(_) => {
            note(
                field,
                "Il codice fiscale non è valido: controlla i 16 caratteri.",
            );
            None
        }
    };
    let represented = cf("rappresentato_cf");
    let agent = cf("rappresentante_cf");
    for (field, message) in [
        ("rappresentato_nome", "Indica il nome della persona rappresentata."),
        ("rappresentato_cognome", "Indica il cognome della persona rappresentata."),
        ("rappresentante_nome", "Indica il nome di chi la rappresenta."),
        ("rappresentante_cognome", "Indica il cognome di chi la rappresenta."),
        ("documento", "Indica il documento controllato (per esempio: decreto del giudice tutelare n. 12/2026 del 3 marzo 2026)."),
    ] {
        let v = value(field);
        if v.is_empty() || v.chars().count() > 300 {
            note(field, message);
        }
    }
    if represented.is_some() && represented == agent {
        note(
            "rappresentante_cf",
            "La persona rappresentata e chi la rappresenta devono essere due persone diverse.",
        );
    }
    let scopes: Vec<Scope> = form.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
    if kind == Some(Kind::Delega) && scopes.is_empty() {
        note("ambito", "Per una delega su carta, indica che cosa può fare la persona delegata, come sul modulo.");
    }
    let until = crate::applications::form::parse_date(&value("fino_al"));
    match until {
        None => note("fino_al", "Indica fino a quando vale, come 31/12/2027 (per un minore: il giorno prima dei 18 anni)."),
        Some(d) if d < today => note("fino_al", "La data di fine è già passata."),
        Some(_) => {}
    }
    form.errors = errors;
    match (kind, represented, agent, until) {
        (Some(kind), Some(principal), Some(agent), Some(until)) if form.errors.is_empty() => Ok((
            Parsed {
                kind,
                ente,
                principal,
                agent,
                scopes,
                until,
            },
            form,
        )),
        _ => Err(form),
    }
}

async fn audit(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    subject: &CodiceFiscale,
    ente: &str,
    object: &str,
) -> Result<(), AppError> {
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    access::authorize(
        &state.db,
        state.clock.now_ms(),
        principal,
        &Access {
            subject,
            action: Action::Change,
            object,
            purpose: "rappresentanza e deleghe",
            ente: Some(ente),
        },
        request_id.as_deref(),
    )
    .await
}

#[post("/ufficio/rappresentanze")]
async fn record(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    fields: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let enti = served_enti(&req, &principal)?;
    if !enti.iter().any(|e| holds(&principal, e, WRITERS)) {
        return Err(AppError::Forbidden);
    }
    let now = state.clock.now_ms();
    let (p, form) = match parse(&fields, &principal, rome_date(now)) {
        Ok(parsed) => parsed,
        Err(form) => {
            return page(
                &state,
                &req,
                &principal,
                &enti,
                &form,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let value = |name: &str| {
        form.values
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    };
    let actor = principal.person().ok_or(AppError::Forbidden)?;
    audit(
        &state,
        &req,
        &principal,
        &p.principal,
        &p.ente,
        &format!("rappresentanza:{}:registrata", p.kind.as_str()),
    )
    .await?;
    store::create(
        &state.db,
        now,
        &NewMandate {
            kind: p.kind,
            origin: "ufficio",
            principal: (
                p.principal.as_str(),
                value("rappresentato_nome"),
                value("rappresentato_cognome"),
            ),
            agent: (
                p.agent.as_str(),
                value("rappresentante_nome"),
                value("rappresentante_cognome"),
            ),
            scopes: if p.kind == Kind::Delega {
                &p.scopes
            } else {
                &Scope::ALL
            },
            valid_until: p.until,
            state: State::Attiva,
            created_by: actor.cf.as_str(),
            document: Some(value("documento")),
            ente_code: Some(&p.ente),
        },
    )
    .await?;
    tracing::info!(kind = p.kind.as_str(), "mandate recorded by the office");
    Ok(see_other(&format!("{PAGE}?esito=registrata")))
}

#[post("/ufficio/rappresentanze/{id}/chiudi")]
async fn end(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let enti = served_enti(&req, &principal)?;
    let m = store::get(&state.db, &id)
        .await?
        .filter(|m| m.origin == "ufficio")
        .filter(|m| m.ente_code.as_ref().is_some_and(|e| enti.contains(e)))
        .ok_or(AppError::NotFound)?;
    let ente = m.ente_code.clone().unwrap_or_default();
    if !holds(&principal, &ente, WRITERS) {
        return Err(AppError::Forbidden);
    }
    let subject = CodiceFiscale::parse(&m.principal_cf).map_err(|_| AppError::NotFound)?;
    audit(
        &state,
        &req,
        &principal,
        &subject,
        &ente,
        &format!("rappresentanza:{}:chiusa", m.kind.as_str()),
    )
    .await?;
    let actor = principal.person().ok_or(AppError::Forbidden)?;
    store::revoke(&state.db, state.clock.now_ms(), &m.id, actor.cf.as_str()).await?;
    Ok(see_other(&format!("{PAGE}?esito=chiusa")))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(record).service(end);
}
