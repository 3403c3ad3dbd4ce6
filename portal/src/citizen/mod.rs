//! The area personale: the signed-in person's own desk, with its sections. Each section fills in as
//! its capability lands (pratiche, appuntamenti, …); until then it says plainly that there is nothing.

pub mod sections;

use actix_web::{get, web, HttpMessage, HttpRequest, HttpResponse};
use serde::Serialize;
use tera::Context;

use crate::auth::access::{self, Access, Action};
use crate::auth::{person_at_level, Person, Principal, LOGIN_LEVEL};
use crate::delegations::Scope;
use crate::domain::italian_time::date_time;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::RequestId;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Section {
    pub slug: &'static str,
    pub title: &'static str,
    pub icon: &'static str,
    pub summary: &'static str,
    pub empty: &'static str,
}

pub const SECTIONS: &[Section] = &[
    Section {
        slug: "pratiche",
        title: "Pratiche",
        icon: "it-folder",
        summary: "Le domande inviate e il loro stato",
        empty: "Non hai ancora presentato domande.",
    },
    Section {
        slug: "appuntamenti",
        title: "Appuntamenti",
        icon: "it-calendar",
        summary: "Gli appuntamenti prenotati con il segretariato sociale",
        empty: "Non hai appuntamenti prenotati.",
    },
    Section {
        slug: "documenti",
        title: "Documenti",
        icon: "it-file",
        summary: "I documenti caricati e le ricevute",
        empty: "Non ci sono documenti.",
    },
    Section {
        slug: "messaggi",
        title: "Messaggi",
        icon: "it-mail",
        summary: "Le comunicazioni dell'ufficio",
        empty: "Non hai messaggi.",
    },
    Section {
        slug: "scadenze",
        title: "Scadenze",
        icon: "it-clock",
        summary: "Le date entro cui rispondere o rinnovare",
        empty: "Non hai scadenze in arrivo.",
    },
    Section {
        slug: "deleghe",
        title: "Deleghe",
        icon: "it-user",
        summary: "Chi può operare per te e per chi puoi operare tu",
        empty: "Non ci sono deleghe attive.",
    },
    Section {
        slug: "impostazioni",
        title: "Impostazioni",
        icon: "it-settings",
        summary: "I tuoi dati e le preferenze di contatto",
        empty: "",
    },
];

#[derive(Debug, Serialize)]
struct PersonView {
    name: String,
    cf: String,
    birth_date: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

async fn page(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    section: Option<&Section>,
) -> Result<HttpResponse, AppError> {
    // Settings are the person's own; the other sections show whoever they act for, if they do,
    // within the delegation's scopes.
    if section.is_some_and(|s| s.slug == "impostazioni") {
        crate::delegations::own_only(req)?;
    }
    let scopes: &[Scope] = match section.map(|s| s.slug) {
        None => &Scope::ALL,
        Some("appuntamenti") => &[Scope::Stato, Scope::Appuntamenti],
        Some(_) => &[Scope::Stato],
    };
    let subject = crate::delegations::subject(state, req, principal, LOGIN_LEVEL, scopes).await?;
    let person = &subject.person;
    if subject.mandate.is_none() {
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        let access = Access {
            subject: &person.cf,
            action: Action::Read,
            object: "area-personale",
            purpose: "area personale",
            ente: None,
        };
        access::authorize(
            &state.db,
            state.clock.now_ms(),
            principal,
            &access,
            request_id.as_deref(),
        )
        .await?;
    }
    let row: Option<(Option<String>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT birth_date, email, phone FROM people WHERE cf = $1")
            .bind(person.cf.as_str())
            .fetch_optional(&state.db.pool)
            .await?;
    let (birth_date, email, phone) = row.unwrap_or_default();
    let view = PersonView {
        name: person.display_name(),
        cf: person.cf.to_string(),
        birth_date,
        email,
        phone,
    };
    let mut ctx = Context::new();
    if section.is_some_and(|s| s.slug == "pratiche") {
        let pratiche =
            crate::applications::pratica::list_for(state, &state.catalogue, person.cf.as_str())
                .await?;
        ctx.insert("pratiche", &pratiche);
        ctx.insert("deleted", &req.query_string().contains("eliminata=1"));
    }
    if section.is_some_and(|s| s.slug == "documenti") {
        let (documents, receipts) = sections::documents(state, person.cf.as_str()).await?;
        ctx.insert("documents", &documents);
        ctx.insert("receipts", &receipts);
    }
    if section.is_some_and(|s| s.slug == "scadenze") {
        ctx.insert(
            "deadlines",
            &sections::deadlines(state, person.cf.as_str()).await?,
        );
    }
    if section.is_some_and(|s| s.slug == "messaggi") {
        ctx.insert(
            "messages",
            &crate::alerts::inbox::list_for(&state.db, person.cf.as_str()).await?,
        );
    }
    if section.is_some_and(|s| s.slug == "impostazioni") {
        ctx.insert(
            "preferences",
            &crate::alerts::inbox::preferences(&state.db, person.cf.as_str()).await?,
        );
        let query = req.query_string();
        ctx.insert("saved_alerts", &query.contains("avvisi=1"));
        ctx.insert("email_sent", &query.contains("email=1"));
    }
    ctx.insert(
        "unread",
        &crate::alerts::inbox::unread(&state.db, person.cf.as_str()).await?,
    );
    if section.is_some_and(|s| s.slug == "appuntamenti") {
        let (appointments, waiting) =
            crate::appointments::booking::list_for(state, person.cf.as_str()).await?;
        ctx.insert("appointments", &appointments);
        ctx.insert("waiting", &waiting);
        ctx.insert("joined", &req.query_string().contains("lista=1"));
    }
    ctx.insert("person", &view);
    ctx.insert("on_behalf", &subject.mandate.is_some());
    // Acting for someone: their settings and delegations stay theirs.
    let sections: Vec<&Section> = SECTIONS
        .iter()
        .filter(|s| subject.mandate.is_none() || !matches!(s.slug, "impostazioni" | "deleghe"))
        .collect();
    ctx.insert("sections", &sections);
    ctx.insert("section", &section);
    ctx.insert("is_staff", &matches!(principal, Principal::Staff { .. }));
    ctx.insert(
        "is_coordinator",
        &[
            crate::auth::Role::Coordinatore,
            crate::auth::Role::Amministratore,
            crate::auth::Role::Revisore,
        ]
        .iter()
        .any(|r| !principal.enti_with(*r).is_empty()),
    );
    ctx.insert(
        "is_auditor",
        &[
            crate::auth::Role::Revisore,
            crate::auth::Role::Amministratore,
        ]
        .iter()
        .any(|r| !principal.enti_with(*r).is_empty()),
    );
    ctx.insert(
        "is_admin",
        &!principal
            .enti_with(crate::auth::Role::Amministratore)
            .is_empty(),
    );
    render(state, req, "area_personale.html", ctx)
}

#[get("/area-personale")]
async fn overview(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    page(&state, &req, &principal, None).await
}

#[get("/area-personale/{section}")]
async fn section_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let section = SECTIONS
        .iter()
        .find(|s| s.slug == slug.as_str())
        .ok_or(AppError::NotFound)?;
    page(&state, &req, &principal, Some(section)).await
}

/// The person signed in at SPID level 2 (what personal pages need), or where to send the browser.
pub(crate) fn signed_in<'a>(
    req: &HttpRequest,
    principal: &'a Principal,
) -> Result<&'a Person, AppError> {
    person_at_level(req, principal, LOGIN_LEVEL)
}

/// One access to the citizen's data by someone else, as the citizen sees it.
#[derive(Debug, Serialize)]
struct AccessView {
    when: String,
    who: String,
    action: &'static str,
    object: String,
    purpose: String,
}

/// The audit log about `cf`, newest first: who (role and ente, and the name when the ente's policy
/// says so), when, what, why.
async fn accesses(state: &AppState, cf: &str, limit: i64) -> Result<Vec<AccessView>, AppError> {
    let rows: Vec<(i64, String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT a.at, a.actor_role, a.action, a.object, a.purpose, p.given_name || ' ' || p.family_name \
         FROM audit_log a LEFT JOIN people p ON p.cf = a.actor_cf \
         WHERE a.subject_cf = $1 ORDER BY a.at DESC, a.id DESC LIMIT $2",
    )
    .bind(cf)
    .bind(limit)
    .fetch_all(&state.db.pool)
    .await?;
    let enti: Vec<(String, String)> = sqlx::query_as("SELECT code, name FROM enti")
        .fetch_all(&state.db.pool)
        .await?;
    let described = describe_objects(state, rows.iter().map(|r| r.3.as_str())).await?;
    let ente_name = |code: &str| {
        enti.iter()
            .find(|(c, _)| c == code)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| code.to_string())
    };
    Ok(rows
        .into_iter()
        .map(|(at, role, action, object, purpose, name)| {
            let roles = role
                .split(',')
                .map(|r| match r.split_once('@') {
                    Some((role, ente)) => format!("{role} ({})", ente_name(ente)),
                    None => r.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            // A delegate or representative is someone the person knows: always by name.
            let staff = role.contains('@');
            let who = match name.filter(|_| state.config.ente.show_operator_names || !staff) {
                Some(name) => format!("{name}, {roles}"),
                None => roles,
            };
            AccessView {
                when: date_time(at),
                who,
                action: if action == "read" {
                    "consultazione"
                } else {
                    "modifica"
                },
                object: described
                    .get(&object)
                    .cloned()
                    .unwrap_or_else(|| object_label(&object, None)),
                // Older records kept the pratica's key as the purpose of a document's reading.
                purpose: if purpose.starts_with("pratica:") {
                    "Istruttoria di una pratica".to_string()
                } else {
                    purpose
                },
            }
        })
        .collect())
}

/// What an audit record's object (`pratica:2026/000001`, `appuntamento:<id>`, …) means to the
/// citizen, with `detail` (a date, a document's name) when it was found.
fn object_label(object: &str, detail: Option<&str>) -> String {
    let (kind, key) = object.split_once(':').unwrap_or((object, ""));
    match (kind, detail) {
        ("area-personale", _) => "I tuoi dati personali e le tue pratiche".into(),
        ("pratica", _) if !key.is_empty() => format!("La pratica n. {key}"),
        ("pratica", _) => "Una pratica".into(),
        ("appuntamento", Some(when)) => format!("L'appuntamento del {when}"),
        ("appuntamento", None) => "Un appuntamento".into(),
        ("documento", Some(name)) => format!("Il documento «{name}»"),
        ("documento", None) => "Un documento".into(),
        ("ruolo", _) => "I tuoi ruoli da operatore".into(),
        _ => "Altri dati".into(),
    }
}

/// The objects of `rows` that need a lookup (appointments, documents), described.
async fn describe_objects(
    state: &AppState,
    objects: impl Iterator<Item = &str>,
) -> Result<std::collections::HashMap<String, String>, AppError> {
    let mut described = std::collections::HashMap::new();
    for object in objects {
        if described.contains_key(object) {
            continue;
        }
        let detail = match object.split_once(':') {
            Some(("appuntamento", id)) => {
                sqlx::query_scalar::<_, i64>("SELECT starts_at FROM appointments WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&state.db.pool)
                    .await?
                    .map(date_time)
            }
            Some(("documento", id)) => {
                sqlx::query_scalar::<_, String>("SELECT label FROM documents WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&state.db.pool)
                    .await?
            }
            _ => continue,
        };
        described.insert(object.to_string(), object_label(object, detail.as_deref()));
    }
    Ok(described)
}

#[get("/area-personale/accessi")]
async fn accesses_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    let person = signed_in(&req, &principal)?;
    crate::delegations::own_only(&req)?;
    let mut ctx = Context::new();
    ctx.insert(
        "accesses",
        &accesses(&state, person.cf.as_str(), 200).await?,
    );
    render(&state, &req, "area_personale_accessi.html", ctx)
}

/// given name, family name, birth date, e-mail, phone, created, updated.
type PersonRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

/// Everything the portal holds about the person (GDPR art. 15 and 20): the same data for the JSON
/// and the PDF export.
async fn export_data(state: &AppState, person: &Person) -> Result<serde_json::Value, AppError> {
    let cf = person.cf.as_str();
    let row: Option<PersonRow> = sqlx::query_as(
        "SELECT given_name, family_name, birth_date, email, phone, created_at, updated_at FROM people WHERE cf = $1",
    )
    .bind(cf)
    .fetch_optional(&state.db.pool)
    .await?;
    let (given, family, birth, email, phone, created, updated) = row.ok_or(AppError::NotFound)?;
    let roles: Vec<(String, String)> = sqlx::query_as(
        "SELECT ente_code, role FROM staff_roles WHERE cf = $1 ORDER BY ente_code, role",
    )
    .bind(cf)
    .fetch_all(&state.db.pool)
    .await?;
    let pratiche: Vec<serde_json::Value> = crate::applications::store::list_for(&state.db, cf)
        .await?
        .into_iter()
        .map(|a| {
            serde_json::json!({
                "servizio": a.service_code,
                "ente": a.ente_code,
                "numero": a.numero,
                "stato": a.status.label(),
                "inviata_il": a.submitted_at.map(date_time),
                "risposte": a.answers,
            })
        })
        .collect();
    let (appointments, waiting) = crate::appointments::booking::list_for(state, cf).await?;
    let appuntamenti: Vec<serde_json::Value> = appointments
        .iter()
        .map(|a| {
            serde_json::json!({
                "giorno": a.day,
                "ora": a.time,
                "sede": a.office.as_ref().map(|o| &o.name),
                "motivo": a.topic,
                "descrizione": a.reason,
                "email": a.email,
                "telefono": a.phone,
                "stato": a.status_label,
            })
        })
        .collect();
    let deleghe: Vec<serde_json::Value> = crate::delegations::store::for_person(&state.db, cf)
        .await?
        .iter()
        .map(|m| {
            serde_json::json!({
                "tipo": m.kind.label(),
                "per_conto_di": format!("{} ({})", m.principal_name(), m.principal_cf),
                "chi_opera": format!("{} ({})", m.agent_name(), m.agent_cf),
                "ambito": m.scopes_text(),
                "fino_al": m.valid_until_text(),
                "stato": m.state.as_str(),
                "registrata_il": date_time(m.created_at),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "generato_il": date_time(state.clock.now_ms()),
        "titolare": state.config.ente.name,
        "persona": {
            "codice_fiscale": cf,
            "nome": given,
            "cognome": family,
            "data_di_nascita": birth,
            "email": email,
            "telefono": phone,
            "primo_accesso": date_time(created),
            "ultimo_aggiornamento": date_time(updated),
        },
        "ruoli_come_operatore": roles.iter().map(|(ente, role)| serde_json::json!({ "ente": ente, "ruolo": role })).collect::<Vec<_>>(),
        "pratiche": pratiche,
        "appuntamenti": appuntamenti,
        "liste_di_attesa": waiting,
        "deleghe_e_rappresentanze": deleghe,
        "accessi_ai_tuoi_dati": accesses(state, cf, i64::MAX).await?,
    }))
}

/// Everything the portal holds about the person, as JSON (portable, art. 20).
#[get("/area-personale/esportazione.json")]
async fn export_json(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    let person = signed_in(&req, &principal)?;
    crate::delegations::own_only(&req)?;
    let body = export_data(&state, person).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"sportello-dati-personali.json\"",
        ))
        .body(serde_json::to_string_pretty(&body).map_err(|e| AppError::Internal(e.to_string()))?))
}

/// The same, as a PDF to read (art. 15): each section with its entries, label by label.
#[get("/area-personale/esportazione.pdf")]
async fn export_pdf(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    let person = signed_in(&req, &principal)?;
    crate::delegations::own_only(&req)?;
    let body = export_data(&state, person).await?;
    let mut w = crate::pdf::Writer::new();
    w.para(10.0, false, &state.config.ente.name);
    w.gap(6.0);
    w.para(16.0, true, "I tuoi dati personali");
    w.para(
        10.0,
        false,
        &format!(
            "{} ({}) — generato il {}",
            person.display_name(),
            person.cf,
            date_time(state.clock.now_ms())
        ),
    );
    if let serde_json::Value::Object(sections) = &body {
        for (key, value) in sections {
            if matches!(key.as_str(), "generato_il" | "titolare") {
                continue;
            }
            w.gap(10.0);
            w.room(40.0);
            w.para(13.0, true, &label(key));
            write_value(&mut w, value, 0);
        }
    }
    let pdf = w
        .finish("I tuoi dati personali", "Sportello — dati personali")
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"sportello-dati-personali.pdf\"",
        ))
        .body(pdf))
}

/// "data_di_nascita" → "Data di nascita".
fn label(key: &str) -> String {
    let text = key.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// A JSON value as readable lines: objects as "Label: value", lists item by item.
fn write_value(w: &mut crate::pdf::Writer, value: &serde_json::Value, depth: usize) {
    use serde_json::Value;
    let x = crate::pdf::MARGIN + 12.0 * depth as f32;
    match value {
        Value::Object(fields) => {
            for (key, v) in fields {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        w.para_at(x, 9.0, true, &label(key));
                        write_value(w, v, depth + 1);
                    }
                    _ => w.para_at(x, 9.0, false, &format!("{}: {}", label(key), scalar(v))),
                }
            }
        }
        Value::Array(items) if items.is_empty() => w.para_at(x, 9.0, false, "Nessuno."),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.gap(4.0);
                }
                match item {
                    Value::Object(_) | Value::Array(_) => write_value(w, item, depth),
                    _ => w.para_at(x, 9.0, false, &format!("• {}", scalar(item))),
                }
            }
        }
        other => w.para_at(x, 9.0, false, &scalar(other)),
    }
}

fn scalar(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::Bool(true) => "sì".into(),
        serde_json::Value::Bool(false) => "no".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The named pages before `{section}`, which would take them.
    cfg.service(overview)
        .service(accesses_page)
        .service(export_json)
        .service(export_pdf)
        .service(section_page);
}
