//! The audit log for auditors (and administrators): who read or changed whose data, when, what and
//! why, for the actions of the staff of their enti. Read-only; newest first, a page at a time,
//! optionally for one codice fiscale.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::auth::{Principal, Role};
use crate::domain::italian_time::date_time;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render;

const PAGE_SIZE: i64 = 100;

#[derive(Debug, Deserialize)]
struct Query {
    cf: Option<String>,
    pagina: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Entry {
    when: String,
    actor: String,
    role: String,
    subject: String,
    action: &'static str,
    object: String,
    purpose: String,
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
);

#[get("/ufficio/registro-accessi")]
async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    q: web::Query<Query>,
) -> Result<HttpResponse, AppError> {
    crate::auth::person_at_level(&req, &principal, state.config.auth.staff_admin_level)?;
    let mut enti: Vec<&str> = principal.enti_with(Role::Revisore);
    enti.extend(principal.enti_with(Role::Amministratore));
    enti.sort_unstable();
    enti.dedup();
    if enti.is_empty() {
        return Err(AppError::Forbidden);
    }
    let page = q.pagina.unwrap_or(1).clamp(1, 10_000);
    let cf =
        q.cf.as_deref()
            .map(|c| c.trim().to_uppercase())
            .filter(|c| !c.is_empty());
    // A role label is "role@ente,role@ente": the ente ends one of its parts.
    let mut sql = String::from(
        "SELECT a.at, a.actor_cf, a.actor_role, a.subject_cf, a.action, a.object, a.purpose, \
         (SELECT p.given_name || ' ' || p.family_name FROM people p WHERE p.cf = a.actor_cf) \
         FROM audit_log a WHERE (",
    );
    for i in 0..enti.len() {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str(&format!(
            "a.actor_role LIKE ${} OR a.actor_role LIKE ${}",
            2 * i + 1,
            2 * i + 2
        ));
    }
    sql.push(')');
    let next = 2 * enti.len() + 1;
    if cf.is_some() {
        sql.push_str(&format!(" AND a.subject_cf = ${next}"));
    }
    sql.push_str(&format!(
        " ORDER BY a.id DESC LIMIT {} OFFSET {}",
        PAGE_SIZE + 1,
        (page - 1) * PAGE_SIZE
    ));
    let mut query = sqlx::query_as::<_, Row>(&sql);
    for ente in &enti {
        query = query.bind(format!("%@{ente}")).bind(format!("%@{ente},%"));
    }
    if let Some(cf) = &cf {
        query = query.bind(cf.clone());
    }
    let rows = query.fetch_all(&state.db.pool).await?;
    let more = rows.len() as i64 > PAGE_SIZE;
    let entries: Vec<Entry> = rows
        .into_iter()
        .take(PAGE_SIZE as usize)
        .map(
            |(at, actor_cf, role, subject, action, object, purpose, name)| Entry {
                when: date_time(at),
                actor: name.map_or(actor_cf.clone(), |n| format!("{n} ({actor_cf})")),
                role,
                subject,
                action: if action == "read" {
                    "consultazione"
                } else {
                    "modifica"
                },
                object,
                purpose,
            },
        )
        .collect();
    let mut ctx = Context::new();
    ctx.insert("entries", &entries);
    ctx.insert("cf", &cf.unwrap_or_default());
    ctx.insert("page", &page);
    ctx.insert("more", &more);
    ctx.insert("enti", &enti);
    render(&state, &req, "staff/registro.html", ctx)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list);
}
