//! The person's side of alerts: the inbox (Area personale → Messaggi, with the unread count), one
//! message's page, the e-mail preferences and a new address confirmed by a link, the unsubscribe
//! link of each e-mail; and for administrators, the e-mails that could not be sent.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;

use super::deliver::token_hash;
use super::{schedule_now, Alert, Kind, CHOOSABLE, DELIVER_JOB};
use crate::applications::form::check_email;
use crate::auth::{person_at_level, see_other, Principal, Role, LOGIN_LEVEL};
use crate::db::Db;
use crate::domain::italian_time::date_time;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::{render, render_status};

#[derive(Debug, Serialize)]
pub struct MessageView {
    pub id: i64,
    pub subject: String,
    pub body: String,
    pub link: Option<String>,
    pub date: String,
    pub unread: bool,
}

type Row = (i64, String, String, Option<String>, i64, Option<i64>);

fn view((id, subject, body, link, created_at, read_at): Row) -> MessageView {
    MessageView {
        id,
        subject,
        body,
        link,
        date: date_time(created_at),
        unread: read_at.is_none(),
    }
}

/// The person's messages, the newest first.
pub async fn list_for(db: &Db, cf: &str) -> Result<Vec<MessageView>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, subject, body, link, created_at, read_at FROM messages WHERE cf = $1 ORDER BY created_at DESC, id DESC",
    )
    .bind(cf)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.into_iter().map(view).collect())
}

pub async fn unread(db: &Db, cf: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE cf = $1 AND read_at IS NULL")
        .bind(cf)
        .fetch_one(&db.pool)
        .await
}

#[get("/messaggi/{id}")]
async fn message_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let subject = crate::delegations::subject(
        &state,
        &req,
        &principal,
        LOGIN_LEVEL,
        &[crate::delegations::Scope::Stato],
    )
    .await?;
    let person = &subject.person;
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, subject, body, link, created_at, read_at FROM messages WHERE id = $1 AND cf = $2",
    )
    .bind(*id)
    .bind(person.cf.as_str())
    .fetch_optional(&state.db.pool)
    .await?;
    let message = view(row.ok_or(AppError::NotFound)?);
    // Read by a delegate, it stays new for the person.
    if subject.mandate.is_none() {
        sqlx::query(
            "UPDATE messages SET read_at = $3 WHERE id = $1 AND cf = $2 AND read_at IS NULL",
        )
        .bind(*id)
        .bind(person.cf.as_str())
        .bind(state.clock.now_ms())
        .execute(&state.db.pool)
        .await?;
    }
    let mut ctx = Context::new();
    ctx.insert("message", &message);
    ctx.insert(
        "paragraphs",
        &message.body.split("\n\n").collect::<Vec<_>>(),
    );
    render(&state, &req, "alerts/message.html", ctx)
}

#[derive(Debug, Serialize)]
pub struct Preference {
    pub kind: &'static str,
    pub label: &'static str,
    pub email: bool,
}

/// Which kinds go by e-mail for the person (the inbox always gets them).
pub async fn preferences(db: &Db, cf: &str) -> Result<Vec<Preference>, sqlx::Error> {
    let off: Vec<String> = sqlx::query_scalar("SELECT kind FROM email_optouts WHERE cf = $1")
        .bind(cf)
        .fetch_all(&db.pool)
        .await?;
    Ok(CHOOSABLE
        .iter()
        .map(|k| Preference {
            kind: k.as_str(),
            label: k.label(),
            email: !off.iter().any(|o| o == k.as_str()),
        })
        .collect())
}

#[post("/area-personale/avvisi")]
async fn save_preferences(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    form: web::Form<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, AppError> {
    let person = person_at_level(&req, &principal, LOGIN_LEVEL)?;
    crate::delegations::own_only(&req)?;
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("DELETE FROM email_optouts WHERE cf = $1")
        .bind(person.cf.as_str())
        .execute(&mut *tx)
        .await?;
    for kind in CHOOSABLE {
        if !form.contains_key(&format!("email_{}", kind.as_str())) {
            sqlx::query("INSERT INTO email_optouts (cf, kind) VALUES ($1, $2)")
                .bind(person.cf.as_str())
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(see_other("/area-personale/impostazioni?avvisi=1"))
}

#[derive(Debug, Deserialize)]
struct EmailForm {
    #[serde(default)]
    email: String,
}

#[post("/area-personale/email")]
async fn change_email(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    form: web::Form<EmailForm>,
) -> Result<HttpResponse, AppError> {
    let person = person_at_level(&req, &principal, LOGIN_LEVEL)?;
    crate::delegations::own_only(&req)?;
    let email = match check_email(form.email.trim()) {
        Ok(e) => e,
        Err(message) => {
            let mut ctx = Context::new();
            ctx.insert("error", &message);
            ctx.insert("typed", form.email.trim());
            return render_status(
                &state,
                &req,
                "alerts/email_error.html",
                ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let now = state.clock.now_ms();
    let token = crate::web::session::random_token(32);
    let hash = token_hash(&token);
    sqlx::query(
        "INSERT INTO email_tokens (token_hash, cf, purpose, email, created_at) VALUES ($1, $2, 'conferma', $3, $4)",
    )
    .bind(&hash)
    .bind(person.cf.as_str())
    .bind(&email)
    .bind(now)
    .execute(&state.db.pool)
    .await?;
    let alert = Alert::new(
        Kind::ConfermaEmail,
        person.cf.as_str(),
        "",
        format!("conferma:{hash}"),
    )
    .with(serde_json::json!({
        "email": email,
        "link": format!("{}/avvisi/conferma-email?t={token}", state.public_url),
    }));
    schedule_now(&state.db, now, now, &alert).await?;
    Ok(see_other("/area-personale/impostazioni?email=1"))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    t: String,
}

/// The unused token of `purpose`, younger than `max_age_ms`: (cf, kind, email).
async fn token(
    db: &Db,
    now: i64,
    token: &str,
    purpose: &str,
    max_age_ms: i64,
) -> Result<Option<(String, Option<String>, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT cf, kind, email FROM email_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND created_at >= $3",
    )
    .bind(token_hash(token))
    .bind(purpose)
    .bind(now - max_age_ms)
    .fetch_optional(&db.pool)
    .await
}

fn outcome(
    state: &AppState,
    req: &HttpRequest,
    title: &str,
    text: &str,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let mut ctx = Context::new();
    ctx.insert("title", title);
    ctx.insert("text", text);
    render_status(state, req, "alerts/outcome.html", ctx, status)
}

#[get("/avvisi/conferma-email")]
async fn confirm_email(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let now = state.clock.now_ms();
    let Some((cf, _, Some(email))) =
        token(&state.db, now, &query.t, "conferma", 48 * 3_600_000).await?
    else {
        return outcome(
            &state,
            &req,
            "Collegamento non valido",
            "Il collegamento è scaduto o è già stato usato. Indica di nuovo il tuo indirizzo dall'area personale, nelle impostazioni.",
            StatusCode::GONE,
        );
    };
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("UPDATE email_tokens SET used_at = $2 WHERE token_hash = $1")
        .bind(token_hash(&query.t))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE people SET email = $2, email_set_by_citizen = 1, updated_at = $3 WHERE cf = $1",
    )
    .bind(&cf)
    .bind(&email)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::csi::contacts_changed(&mut tx, now, &cf).await?;
    tx.commit().await?;
    outcome(
        &state,
        &req,
        "Indirizzo confermato",
        "Da ora gli avvisi arrivano al nuovo indirizzo e-mail.",
        StatusCode::OK,
    )
}

#[get("/avvisi/disiscrizione")]
async fn unsubscribe_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let now = state.clock.now_ms();
    let found = token(&state.db, now, &query.t, "disiscrizione", 365 * 86_400_000).await?;
    let kind = found
        .and_then(|(_, kind, _)| kind)
        .and_then(|k| Kind::parse(&k));
    let mut ctx = Context::new();
    ctx.insert("label", &kind.map(Kind::label));
    ctx.insert("token", &query.t);
    let status = if kind.is_some() {
        StatusCode::OK
    } else {
        StatusCode::GONE
    };
    render_status(&state, &req, "alerts/unsubscribe.html", ctx, status)
}

#[derive(Debug, Deserialize)]
struct UnsubscribeForm {
    #[serde(default)]
    t: String,
}

#[post("/avvisi/disiscrizione")]
async fn unsubscribe(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<UnsubscribeForm>,
) -> Result<HttpResponse, AppError> {
    let now = state.clock.now_ms();
    let found = token(&state.db, now, &form.t, "disiscrizione", 365 * 86_400_000).await?;
    let Some((cf, Some(kind), _)) = found else {
        return outcome(
            &state,
            &req,
            "Collegamento non valido",
            "Il collegamento è scaduto o è già stato usato. Puoi scegliere gli avvisi dall'area personale, nelle impostazioni.",
            StatusCode::GONE,
        );
    };
    let label = Kind::parse(&kind).map(Kind::label).unwrap_or_default();
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("UPDATE email_tokens SET used_at = $2 WHERE token_hash = $1")
        .bind(token_hash(&form.t))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO email_optouts (cf, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(&cf)
        .bind(&kind)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    outcome(
        &state,
        &req,
        "Fatto",
        &format!("Non riceverai più per e-mail: {label}. Gli avvisi restano nei messaggi dell'area personale, e puoi riattivarli nelle impostazioni."),
        StatusCode::OK,
    )
}

#[derive(Debug, Serialize)]
struct Failed {
    kind: String,
    attempts: i64,
    error: String,
    due: String,
    updated: String,
}

/// E-mails that could not be sent, for administrators (no personal data: the kind, when, why).
#[get("/amministrazione/avvisi")]
async fn failed(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    person_at_level(&req, &principal, state.config.auth.staff_admin_level)?;
    if principal.enti_with(Role::Amministratore).is_empty() {
        return Err(AppError::Forbidden);
    }
    let rows: Vec<(String, i64, Option<String>, i64, i64, String)> = sqlx::query_as(
        "SELECT payload, attempts, last_error, run_at, updated_at, status FROM jobs \
         WHERE kind = $1 AND (status = 'failed' OR (status = 'pending' AND attempts > 0)) ORDER BY updated_at DESC LIMIT 200",
    )
    .bind(DELIVER_JOB)
    .fetch_all(&state.db.pool)
    .await?;
    let (mut failed, mut retrying) = (Vec::new(), Vec::new());
    for (payload, attempts, error, due, updated, status) in rows {
        let kind = serde_json::from_str::<Alert>(&payload)
            .map(|a| a.kind.label())
            .unwrap_or("?");
        let row = Failed {
            kind: kind.to_string(),
            attempts,
            error: error.unwrap_or_default(),
            due: date_time(due),
            updated: date_time(updated),
        };
        if status == "failed" {
            failed.push(row);
        } else {
            retrying.push(row);
        }
    }
    let mut ctx = Context::new();
    ctx.insert("failed", &failed);
    ctx.insert("retrying", &retrying);
    render(&state, &req, "alerts/failed.html", ctx)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(message_page)
        .service(save_preferences)
        .service(change_email)
        .service(confirm_email)
        .service(unsubscribe_page)
        .service(unsubscribe)
        .service(failed);
}
