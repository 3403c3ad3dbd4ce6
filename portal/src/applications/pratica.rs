//! A sent application as its citizen follows it: status and history, the date it was taken in
//! charge, the latest date for the outcome, requests for more documents and the answer, withdrawal,
//! the PDF receipt, the rating; and the public page that verifies a receipt.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tera::Context;

use super::catalogue::{Catalogue, Open};
use super::flow::owned;
use super::status::{self, Actor, Change, Status, TransitionError};
use super::store::{self, Application};
use crate::auth::{see_other, Principal};
use crate::delegations::Scope;
use crate::domain::italian_time::{date_time, long_date, rome_date};
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::{render, render_status};

#[derive(Debug, Serialize)]
struct HistoryView {
    when: String,
    status: &'static str,
    who: String,
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct RequestView {
    message: String,
    deadline: String,
    requested: String,
    open: bool,
    expired: bool,
    answered: Option<String>,
    answer: Option<String>,
}

fn who(actor: &str) -> &'static str {
    match actor {
        "cittadino" => "Tu",
        "operatore" => "L'ufficio",
        "csi" => "L'ufficio (sistema dei servizi sociali)",
        _ => "Il sistema",
    }
}

async fn requests_view(state: &AppState, app: &Application) -> Result<Vec<RequestView>, AppError> {
    let today = rome_date(state.clock.now_ms());
    Ok(store::requests(&state.db, &app.id)
        .await?
        .into_iter()
        .map(|r| {
            let open = r.answered_at.is_none() && app.status == Status::InAttesaDiIntegrazioni;
            let expired = r.deadline.is_some_and(|d| today > d);
            RequestView {
                message: r.message,
                deadline: r.deadline.map(long_date).unwrap_or_default(),
                requested: date_time(r.requested_at),
                open,
                expired,
                answered: r.answered_at.map(date_time),
                answer: r.answer,
            }
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct PraticaQuery {
    inviata: Option<String>,
    ritirata: Option<String>,
    risposta: Option<String>,
    valutazione: Option<String>,
    messaggio: Option<String>,
}

/// The page of a sent application (`/domande/{id}` once it is no longer a draft).
pub(super) async fn page(
    state: &AppState,
    req: &HttpRequest,
    app: &Application,
    service: &super::catalogue::Service,
) -> Result<HttpResponse, AppError> {
    let query = web::Query::<PraticaQuery>::from_query(req.query_string()).ok();
    let flag = |f: fn(&PraticaQuery) -> bool| query.as_ref().is_some_and(|q| f(q));
    let history: Vec<HistoryView> = store::history(&state.db, &app.id)
        .await?
        .into_iter()
        .map(|h| HistoryView {
            when: date_time(h.at),
            status: Status::parse(&h.to).map(Status::label).unwrap_or("—"),
            who: match h.on_behalf_by {
                Some(name) => format!("{name}, per conto del richiedente"),
                None => who(&h.actor_kind).to_string(),
            },
            reason: h.reason,
        })
        .collect();
    let mut ctx = Context::new();
    ctx.insert("service", service);
    ctx.insert("app_id", &app.id);
    ctx.insert("numero", &app.numero);
    ctx.insert("status", &app.status.label());
    ctx.insert("status_code", &app.status.as_str());
    ctx.insert("final", &app.status.is_final());
    ctx.insert("submitted", &app.submitted_at.map(date_time));
    ctx.insert("taken_in_charge", &app.taken_in_charge_at.map(date_time));
    ctx.insert("due", &app.due_date.map(long_date));
    ctx.insert("protocollo", &app.protocollo);
    ctx.insert(
        "ente_name",
        &app.snapshot.as_ref().map(|s| s.ente_name.clone()),
    );
    ctx.insert("history", &history);
    ctx.insert("requests", &requests_view(state, app).await?);
    ctx.insert(
        "can_withdraw",
        &status::allowed(app.status, Status::Ritirata, Actor::Cittadino),
    );
    ctx.insert("rated", &app.rating.is_some());
    ctx.insert("just_sent", &flag(|q| q.inviata.is_some()));
    ctx.insert("just_withdrawn", &flag(|q| q.ritirata.is_some()));
    ctx.insert("just_answered", &flag(|q| q.risposta.is_some()));
    ctx.insert("just_rated", &flag(|q| q.valutazione.is_some()));
    ctx.insert("verification_code", &app.verification_code);
    ctx.insert(
        "conversation",
        &super::conversation::list(&state.db, &app.id).await?,
    );
    ctx.insert("just_written", &flag(|q| q.messaggio.is_some()));
    render(state, req, "applications/pratica.html", ctx)
}

#[get("/domande/{id}/ricevuta.pdf")]
async fn receipt(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (_, app, _) = owned(
        &state,
        &req,
        &principal,
        &id,
        &[Scope::Stato, Scope::Domande],
    )
    .await?;
    let (pdf, filename) = super::receipt::for_application(&app, &state.public_url)?;
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{filename}\""),
        ))
        .body(pdf))
}

#[get("/domande/{id}/ritira")]
async fn withdraw_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (_, app, service) = owned(&state, &req, &principal, &id, &[Scope::Domande]).await?;
    if !status::allowed(app.status, Status::Ritirata, Actor::Cittadino) {
        return Ok(see_other(&format!("/domande/{}", app.id)));
    }
    let mut ctx = Context::new();
    ctx.insert("service", service);
    ctx.insert("app_id", &app.id);
    ctx.insert("numero", &app.numero);
    render(&state, &req, "applications/withdraw.html", ctx)
}

#[derive(Debug, Deserialize)]
struct WithdrawForm {
    motivo: Option<String>,
}

#[post("/domande/{id}/ritira")]
async fn withdraw(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    sent: web::Form<WithdrawForm>,
) -> Result<HttpResponse, AppError> {
    let (subject, app, _) = owned(&state, &req, &principal, &id, &[Scope::Domande]).await?;
    let person = subject.actor;
    if app.status == Status::Ritirata {
        return Ok(see_other(&format!("/domande/{}?ritirata=1", app.id)));
    }
    let reason = sent
        .motivo
        .as_deref()
        .map(|m| m.chars().take(1000).collect::<String>());
    let change = Change {
        reason: reason.as_deref(),
        ..Change::to(Status::Ritirata, Actor::Cittadino, Some(person.cf.as_str()))
    };
    let now = state.clock.now_ms();
    match status::transition(&state.db, now, rome_date(now), &app.id, &change).await {
        Ok(_) => Ok(see_other(&format!("/domande/{}?ritirata=1", app.id))),
        Err(TransitionError::NotAllowed { .. } | TransitionError::Conflict) => Err(
            AppError::BadRequest("Questa domanda non si può più ritirare: l'ufficio ha già concluso il procedimento.".into()),
        ),
        Err(e) => Err(AppError::Internal(e.to_string())),
    }
}

#[get("/domande/{id}/integrazioni")]
async fn answer_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (_, app, service) = owned(&state, &req, &principal, &id, &[Scope::Integrazioni]).await?;
    answer_form(&state, &req, &app, service, None, "", StatusCode::OK).await
}

async fn answer_form(
    state: &AppState,
    req: &HttpRequest,
    app: &Application,
    service: &super::catalogue::Service,
    error: Option<&str>,
    text: &str,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let requests = requests_view(state, app).await?;
    let Some(open) = requests.into_iter().find(|r| r.open) else {
        // Answered already (the link is used once), or nothing was asked.
        return Ok(see_other(&format!("/domande/{}", app.id)));
    };
    let mut ctx = Context::new();
    ctx.insert("service", service);
    ctx.insert("app_id", &app.id);
    ctx.insert("numero", &app.numero);
    ctx.insert("request", &open);
    ctx.insert("error", &error);
    ctx.insert("text", text);
    render_status(state, req, "applications/answer.html", ctx, status)
}

#[derive(Debug, Deserialize)]
struct AnswerForm {
    risposta: String,
}

#[post("/domande/{id}/integrazioni")]
async fn answer(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    sent: web::Form<AnswerForm>,
) -> Result<HttpResponse, AppError> {
    let (subject, app, service) =
        owned(&state, &req, &principal, &id, &[Scope::Integrazioni]).await?;
    let person = subject.actor;
    let text = sent.risposta.trim();
    let problem = if text.is_empty() {
        Some("Scrivi la tua risposta all'ufficio.")
    } else if text.chars().count() > 4000 {
        Some("La risposta può essere lunga al massimo 4000 caratteri.")
    } else {
        None
    };
    if let Some(problem) = problem {
        return answer_form(
            &state,
            &req,
            &app,
            service,
            Some(problem),
            text,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let now = state.clock.now_ms();
    let today = rome_date(now);
    let expired = requests_view(&state, &app)
        .await?
        .iter()
        .any(|r| r.open && r.expired);
    if expired {
        return answer_form(
            &state,
            &req,
            &app,
            service,
            Some("Il termine per rispondere è scaduto: contatta l'ufficio per sapere come procedere."),
            text,
            StatusCode::CONFLICT,
        )
        .await;
    }
    let change = Change {
        answer: Some(text),
        ..Change::to(
            Status::IntegrazioniRicevute,
            Actor::Cittadino,
            Some(person.cf.as_str()),
        )
    };
    match status::transition(&state.db, now, today, &app.id, &change).await {
        Ok(_) => Ok(see_other(&format!("/domande/{}?risposta=1", app.id))),
        // Answered a moment ago (a second click): the page shows the answer.
        Err(TransitionError::NotAllowed { .. } | TransitionError::Conflict) => {
            Ok(see_other(&format!("/domande/{}", app.id)))
        }
        Err(e) => Err(AppError::Internal(e.to_string())),
    }
}

#[derive(Debug, Deserialize)]
struct MessageForm {
    #[serde(default)]
    testo: String,
}

#[post("/domande/{id}/messaggi")]
async fn write_to_office(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    form: web::Form<MessageForm>,
) -> Result<HttpResponse, AppError> {
    let (subject, app, _) = owned(&state, &req, &principal, &id, &[Scope::Integrazioni]).await?;
    let person = subject.actor;
    if app.numero.is_none() {
        return Err(AppError::NotFound);
    }
    let text = super::conversation::checked(&form.testo)
        .map_err(|m| AppError::BadRequest(m.to_string()))?;
    let mut tx = state.db.pool.begin().await?;
    super::conversation::write(
        &mut tx,
        state.clock.now_ms(),
        &app.ente_code,
        &app.id,
        person.cf.as_str(),
        false,
        text,
    )
    .await?;
    tx.commit().await?;
    Ok(see_other(&format!(
        "/domande/{}?messaggio=1#messaggi",
        app.id
    )))
}

#[derive(Debug, Deserialize)]
struct RatingForm {
    stelle: Option<String>,
    dettaglio: Option<String>,
    commento: Option<String>,
}

#[post("/domande/{id}/valutazione")]
async fn rate(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    sent: web::Form<RatingForm>,
) -> Result<HttpResponse, AppError> {
    let (_, app, _) = owned(&state, &req, &principal, &id, &[Scope::Domande]).await?;
    let stars: i64 = sent
        .stelle
        .as_deref()
        .and_then(|s| s.parse().ok())
        .filter(|s| (1..=5).contains(s))
        .ok_or_else(|| {
            AppError::BadRequest(
                "Scegli da 1 a 5 stelle per dire quanto è stato facile usare il servizio.".into(),
            )
        })?;
    let clip = |s: &Option<String>, n: usize| {
        s.as_deref()
            .unwrap_or("")
            .trim()
            .chars()
            .take(n)
            .collect::<String>()
    };
    store::rate(
        &state.db,
        state.clock.now_ms(),
        &app,
        stars,
        &clip(&sent.dettaglio, 100),
        &clip(&sent.commento, 200),
    )
    .await?;
    Ok(see_other(&format!("/domande/{}?valutazione=1", app.id)))
}

#[derive(Debug, Deserialize)]
struct VerifyQuery {
    codice: Option<String>,
}

/// Public: confirms a receipt is authentic from its code, showing nothing personal.
#[get("/verifica-ricevuta")]
async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, AppError> {
    let code = query
        .codice
        .as_deref()
        .map(|c| c.trim().to_uppercase())
        .filter(|c| !c.is_empty());
    let found = match &code {
        Some(c) if c.len() <= 32 => store::verify(&state.db, c).await?,
        _ => None,
    };
    let mut ctx = Context::new();
    ctx.insert("code", &code);
    ctx.insert(
        "found",
        &found.map(|v| {
            serde_json::json!({
                "numero": v.numero,
                "ente": v.ente_name,
                "service": v.service_title,
                "submitted": date_time(v.submitted_at),
                "fingerprint": v.fingerprint,
            })
        }),
    );
    let status = if code.is_some() && ctx.get("found").is_none_or(|f| f.is_null()) {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    render_status(&state, &req, "applications/verify.html", ctx, status)
}

/// One line of the "Pratiche" section of the area personale.
#[derive(Debug, Serialize)]
pub struct ListItem {
    pub href: String,
    pub service: String,
    pub draft: bool,
    pub numero: Option<String>,
    pub status: &'static str,
    pub date: String,
    /// A draft of a service open until a date: that date; or a note that it can no longer be sent.
    pub closing: Option<String>,
    pub closed: bool,
    pub due: Option<String>,
    pub action_needed: bool,
}

pub async fn list_for(
    state: &AppState,
    catalogue: &Catalogue,
    cf: &str,
) -> Result<Vec<ListItem>, AppError> {
    let today = rome_date(state.clock.now_ms());
    Ok(store::list_for(&state.db, cf)
        .await?
        .into_iter()
        .map(|a| {
            let service = catalogue.get(&a.service_code);
            let open = service.map(|s| s.availability.on(today));
            let draft = a.status == Status::Bozza;
            ListItem {
                href: format!("/domande/{}", a.id),
                service: service
                    .map(|s| s.title.clone())
                    .unwrap_or_else(|| a.service_code.clone()),
                draft,
                numero: a.numero.clone(),
                status: a.status.label(),
                date: date_time(a.submitted_at.unwrap_or(a.updated_at)),
                closing: match open {
                    Some(Open::Yes {
                        closes: Some(closes),
                    }) if draft => Some(long_date(closes)),
                    _ => None,
                },
                closed: draft && !matches!(open, Some(Open::Yes { .. })),
                due: a.due_date.filter(|_| !a.status.is_final()).map(long_date),
                action_needed: a.status == Status::InAttesaDiIntegrazioni,
            }
        })
        .collect())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(receipt)
        .service(withdraw_page)
        .service(withdraw)
        .service(answer_page)
        .service(answer)
        .service(rate)
        .service(write_to_office)
        .service(verify);
}
