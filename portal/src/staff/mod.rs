//! The staff area. For now, its administration: which codici fiscali are staff, in which enti, with
//! which roles. Only administrators see it, only for their own enti, at the SPID level the
//! configuration asks (`auth.staff_admin_level`); every change is written to the audit log.

pub mod registro;

use actix_web::{get, post, web, HttpMessage, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::auth::access::{self, Access, Action};
use crate::auth::{require_level, require_level_keeping, see_other, Principal, Role};
use crate::domain::CodiceFiscale;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::RequestId;

const PAGE: &str = "/amministrazione/operatori";

const ROLES: &[(&str, &str)] = &[
    ("operatore", "Operatore"),
    ("coordinatore", "Coordinatore"),
    ("amministratore", "Amministratore"),
    ("revisore", "Revisore (sola lettura)"),
];

#[derive(Debug, Serialize)]
struct StaffRow {
    cf: String,
    name: Option<String>,
    ente: String,
    role: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RoleForm {
    #[serde(default)]
    cf: String,
    #[serde(default)]
    ente: String,
    #[serde(default)]
    role: String,
}

/// The enti the principal administers, or the response that keeps them out.
fn administered(
    req: &HttpRequest,
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<String>, Box<HttpResponse>> {
    if let Some(elsewhere) = require_level(req, principal, state.config.auth.staff_admin_level) {
        return Err(Box::new(elsewhere));
    }
    let enti: Vec<String> = principal
        .enti_with(Role::Amministratore)
        .into_iter()
        .map(str::to_string)
        .collect();
    if enti.is_empty() {
        return Err(Box::new(actix_web::ResponseError::error_response(
            &AppError::Forbidden,
        )));
    }
    Ok(enti)
}

/// A role change from an administrator of its ente, checked; or the response to give instead (the
/// page again with the Italian message and, for a new role, what was typed).
async fn checked(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    form: &RoleForm,
    keep_typed: bool,
) -> Result<(CodiceFiscale, Role), Box<HttpResponse>> {
    let enti = administered(req, state, principal)?;
    let message = match parse(form, &enti) {
        Ok(parsed) => return Ok(parsed),
        Err(message) => message,
    };
    let empty = RoleForm::default();
    let shown = if keep_typed { form } else { &empty };
    Err(Box::new(
        match page(state, req, &enti, shown, Some(message), None).await {
            Ok(response) => response,
            Err(e) => actix_web::ResponseError::error_response(&e),
        },
    ))
}

async fn page(
    state: &AppState,
    req: &HttpRequest,
    enti: &[String],
    form: &RoleForm,
    error: Option<&str>,
    outcome: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let sql = format!(
        "SELECT s.cf, p.given_name, p.family_name, s.ente_code, s.role FROM staff_roles s \
         LEFT JOIN people p ON p.cf = s.cf WHERE s.ente_code IN ({}) ORDER BY s.ente_code, s.cf, s.role",
        crate::db::placeholders(1, enti.len())
    );
    let mut query =
        sqlx::query_as::<_, (String, Option<String>, Option<String>, String, String)>(&sql);
    for e in enti {
        query = query.bind(e);
    }
    let rows: Vec<StaffRow> = query
        .fetch_all(&state.db.pool)
        .await?
        .into_iter()
        .map(|(cf, given, family, ente, role)| StaffRow {
            cf,
            name: given.zip(family).map(|(g, f)| format!("{g} {f}")),
            ente,
            role,
        })
        .collect();
    let sql = format!(
        "SELECT code, name FROM enti WHERE code IN ({}) ORDER BY name",
        crate::db::placeholders(1, enti.len())
    );
    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
    for e in enti {
        query = query.bind(e);
    }
    let enti_named = query.fetch_all(&state.db.pool).await?;
    let mut ctx = Context::new();
    ctx.insert("rows", &rows);
    ctx.insert("enti", &enti_named);
    ctx.insert("roles", ROLES);
    ctx.insert("form", form);
    ctx.insert("error", &error);
    ctx.insert("outcome", &outcome);
    let mut response = render(state, req, "staff/operatori.html", ctx)?;
    if error.is_some() {
        *response.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct Outcome {
    esito: Option<String>,
}

#[get("/amministrazione/operatori")]
async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    q: web::Query<Outcome>,
) -> Result<HttpResponse, AppError> {
    let enti = match administered(&req, &state, &principal) {
        Ok(enti) => enti,
        Err(response) => return Ok(*response),
    };
    let mut outcome = match q.esito.as_deref() {
        Some("aggiunto") => Some("Ruolo assegnato."),
        Some("rimosso") => Some("Ruolo revocato."),
        _ => None,
    };
    // A form sent before a step-up login comes back as it was typed, to be confirmed.
    let mut form = RoleForm::default();
    if let Some(fields) = crate::web::session::take_kept_form(&state.db, &req, PAGE).await? {
        for (name, value) in fields {
            match name.as_str() {
                "cf" => form.cf = value,
                "ente" => form.ente = value,
                "role" => form.role = value,
                _ => {}
            }
        }
        outcome = Some("Abbiamo conservato i dati che avevi inserito: controllali e conferma.");
    }
    page(&state, &req, &enti, &form, None, outcome).await
}

/// Checks a submitted role change; the Italian message says what to correct.
fn parse(form: &RoleForm, enti: &[String]) -> Result<(CodiceFiscale, Role), &'static str> {
    let cf = CodiceFiscale::parse(&form.cf)
        .map_err(|_| "Il codice fiscale non è valido: controlla i 16 caratteri.")?;
    if !enti.contains(&form.ente) {
        return Err("Puoi gestire solo gli operatori degli enti che amministri.");
    }
    let role = Role::parse(&form.role).ok_or("Scegli un ruolo dall'elenco.")?;
    Ok((cf, role))
}

async fn audit(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    cf: &CodiceFiscale,
    form: &RoleForm,
    what: &str,
) -> Result<(), AppError> {
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let object = format!("ruolo:{}:{}:{what}", form.ente, form.role);
    let access = Access {
        subject: cf,
        action: Action::Change,
        object: &object,
        purpose: "gestione operatori",
        ente: Some(&form.ente),
    };
    access::authorize(
        &state.db,
        state.clock.now_ms(),
        principal,
        &access,
        request_id.as_deref(),
    )
    .await
}

#[post("/amministrazione/operatori")]
async fn add(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let fields = [
        ("cf", form.cf.as_str()),
        ("ente", form.ente.as_str()),
        ("role", form.role.as_str()),
    ];
    let level = state.config.auth.staff_admin_level;
    if let Some(elsewhere) =
        require_level_keeping(&state, &req, &principal, level, PAGE, &fields).await?
    {
        return Ok(elsewhere);
    }
    let (cf, role) = match checked(&state, &req, &principal, &form, true).await {
        Ok(parsed) => parsed,
        Err(response) => return Ok(*response),
    };
    audit(&state, &req, &principal, &cf, &form, "assegnato").await?;
    sqlx::query(
        "INSERT INTO staff_roles (cf, ente_code, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(cf.as_str())
    .bind(&form.ente)
    .bind(role.as_str())
    .execute(&state.db.pool)
    .await?;
    Ok(see_other("/amministrazione/operatori?esito=aggiunto"))
}

#[post("/amministrazione/operatori/revoca")]
async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let (cf, role) = match checked(&state, &req, &principal, &form, false).await {
        Ok(parsed) => parsed,
        Err(response) => return Ok(*response),
    };
    if principal.person().is_some_and(|p| p.cf == cf) && role == Role::Amministratore {
        let enti = principal
            .enti_with(Role::Amministratore)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        let message = "Non puoi revocare a te stesso il ruolo di amministratore: chiedilo a un altro amministratore.";
        return page(
            &state,
            &req,
            &enti,
            &RoleForm::default(),
            Some(message),
            None,
        )
        .await;
    }
    audit(&state, &req, &principal, &cf, &form, "revocato").await?;
    sqlx::query("DELETE FROM staff_roles WHERE cf = $1 AND ente_code = $2 AND role = $3")
        .bind(cf.as_str())
        .bind(&form.ente)
        .bind(role.as_str())
        .execute(&state.db.pool)
        .await?;
    Ok(see_other("/amministrazione/operatori?esito=rimosso"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(add).service(remove);
    registro::routes(cfg);
}
