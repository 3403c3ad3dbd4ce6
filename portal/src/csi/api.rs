//! The CSI's HTTP side (no broker needed): OAuth2 client credentials (`/csi/token`), the feed of the
//! portal's events for the enti a client serves with a cursor and acknowledgements
//! (`/csi/eventi`, `/csi/eventi/conferma`), the endpoint for the CSI's own events (`POST
//! /csi/eventi`: validated against their schema and the status rules, applied at most once, a bad
//! one kept with its reason), and the interface's documents (`/csi/openapi.yaml` for these
//! endpoints, `/csi/asyncapi.yaml` for the events, `/csi/schemi/`).

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::events::{cloud_event, schema_text, short_type, validate, ASYNCAPI};
use crate::applications::form::parse_date;
use crate::applications::status::{self, Actor, Change, Status, TransitionError};
use crate::applications::store;
use crate::config::{CsiClient, Mode};
use crate::domain::italian_time::rome_date;
use crate::server::AppState;
use crate::web::error::AppError;

/// The OpenAPI 3.1 description of these endpoints.
pub const OPENAPI: &str = include_str!("openapi.yaml");

/// `value` with every string (keys too) cleaned of hidden characters (`domain::text`): a NUL or
/// a bidirectional override never reaches the database or a page.
fn clean_json(value: &Value) -> Value {
    use crate::domain::text::clean;
    match value {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(items) => Value::Array(items.iter().map(clean_json).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (clean(k), clean_json(v))).collect())
        }
        other => other.clone(),
    }
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The configured CSI clients; in development without any, the demo client.
fn clients(state: &AppState) -> Vec<CsiClient> {
    if state.config.csi.clients.is_empty() && state.config.mode == Mode::Development {
        return vec![CsiClient {
            id: "csi-demo".into(),
            secret_sha256: sha256_hex("csi-demo-secret"),
            enti: crate::auth::dev_idp::personas::DEMO_ENTI
                .iter()
                .map(|(code, _)| code.to_string())
                .collect(),
        }];
    }
    state.config.csi.clients.clone()
}

fn oauth_error(status: StatusCode, error: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "error": error }))
}

#[post("/csi/token")]
async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    // RFC 6749: a form body; anything else is an `invalid_request`, answered as OAuth errors are.
    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_request"));
    }
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ));
    }
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    let presented = sha256_hex(&secret);
    let Some(client) = clients(&state).into_iter().find(|c| {
        c.id == id
            && c.secret_sha256.len() == presented.len()
            && c.secret_sha256
                .bytes()
                .zip(presented.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }) else {
        tracing::warn!("CSI token refused: unknown client or wrong secret");
        return Ok(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"));
    };
    let token = crate::web::session::random_token(32);
    let lifetime = state.config.csi.token_minutes.max(1) * 60;
    let now = state.clock.now_ms();
    sqlx::query("DELETE FROM csi_tokens WHERE expires_at < $1")
        .bind(now)
        .execute(&state.db.pool)
        .await?;
    sqlx::query("INSERT INTO csi_tokens (token_hash, client_id, expires_at) VALUES ($1, $2, $3)")
        .bind(sha256_hex(&token))
        .bind(&client.id)
        .bind(now + lifetime * 1000)
        .execute(&state.db.pool)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "access_token": token, "token_type": "Bearer", "expires_in": lifetime })))
}

/// The client behind the request's bearer token, or the 401 to answer.
async fn client(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Result<CsiClient, HttpResponse>, AppError> {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let id: Option<String> = sqlx::query_scalar(
        "SELECT client_id FROM csi_tokens WHERE token_hash = $1 AND expires_at >= $2",
    )
    .bind(sha256_hex(presented))
    .bind(state.clock.now_ms())
    .fetch_optional(&state.db.pool)
    .await?;
    Ok(id
        .and_then(|id| clients(state).into_iter().find(|c| c.id == id))
        .ok_or_else(|| {
            HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .json(json!({ "error": "invalid_token" }))
        }))
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    dopo: Option<i64>,
    limite: Option<i64>,
}

#[get("/csi/eventi")]
async fn feed(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, AppError> {
    let client = match client(&state, &req).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let after = match query.dopo {
        Some(after) => after,
        None => sqlx::query_scalar::<_, i64>(
            "SELECT acknowledged FROM csi_cursors WHERE client_id = $1",
        )
        .bind(&client.id)
        .fetch_optional(&state.db.pool)
        .await?
        .unwrap_or(0),
    };
    let limit = query.limite.unwrap_or(100).clamp(1, 500);
    let sql = format!(
        "SELECT id, event_id, event_type, aggregate_id, payload, created_at FROM outbox \
         WHERE id > $1 AND ente_code IN ({}) ORDER BY id LIMIT $2",
        if client.enti.is_empty() {
            "NULL".to_string()
        } else {
            crate::db::placeholders(3, client.enti.len())
        },
    );
    let mut q = sqlx::query_as::<_, (i64, String, String, String, String, i64)>(&sql)
        .bind(after)
        .bind(limit);
    for ente in &client.enti {
        q = q.bind(ente);
    }
    // Read while no event is being written (see `csi::outbox`), so that an id taken by a
    // transaction not yet committed is never passed over.
    let mut tx = state.db.pool.begin().await?;
    if state.db.backend == crate::config::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(super::OUTBOX_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    let rows = q.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let cursor = rows.last().map_or(after, |r| r.0);
    let events: Vec<Value> = rows
        .into_iter()
        .map(
            |(_, event_id, event_type, aggregate_id, payload, created_at)| {
                cloud_event(
                    &state.public_url,
                    &event_id,
                    &event_type,
                    &aggregate_id,
                    created_at,
                    &payload,
                )
            },
        )
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "eventi": events, "cursore": cursor })))
}

#[derive(Debug, Deserialize)]
struct Ack {
    cursore: i64,
}

#[post("/csi/eventi/conferma")]
async fn acknowledge(
    state: web::Data<AppState>,
    req: HttpRequest,
    ack: web::Json<Ack>,
) -> Result<HttpResponse, AppError> {
    let client = match client(&state, &req).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let now = state.clock.now_ms();
    sqlx::query(
        "INSERT INTO csi_cursors (client_id, acknowledged, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (client_id) DO UPDATE SET acknowledged = CASE WHEN csi_cursors.acknowledged > excluded.acknowledged \
         THEN csi_cursors.acknowledged ELSE excluded.acknowledged END, updated_at = excluded.updated_at",
    )
    .bind(&client.id)
    .bind(ack.cursore)
    .bind(now)
    .execute(&state.db.pool)
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "cursore": ack.cursore })))
}

async fn record(
    state: &AppState,
    client: &CsiClient,
    id: &str,
    kind: &str,
    outcome: &str,
    reason: Option<&str>,
    body: &Value,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO inbound_events (event_id, client_id, event_type, received_at, outcome, reason, payload) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(id)
    .bind(&client.id)
    .bind(kind)
    .bind(state.clock.now_ms())
    .bind(outcome)
    .bind(reason)
    .bind(body.to_string())
    .execute(&state.db.pool)
    .await?;
    Ok(())
}

fn refused(reason: &str) -> HttpResponse {
    HttpResponse::UnprocessableEntity().json(json!({ "esito": "rifiutato", "motivo": reason }))
}

/// The change a CSI event asks for.
fn change_for<'a>(kind: &str, data: &'a Value) -> Result<Change<'a>, String> {
    let text = |k: &str| data[k].as_str();
    let csi = |to: Status| Change::to(to, Actor::Csi, None);
    Ok(match kind {
        "csi.stato" => match text("stato") {
            Some("presa_in_carico") => csi(Status::PresaInCarico),
            Some("annullata") => Change {
                reason: text("motivo"),
                ..csi(Status::Annullata)
            },
            _ => return Err("stato non accettato".into()),
        },
        "csi.protocollo" => Change {
            protocollo: text("protocollo"),
            ..csi(Status::Protocollata)
        },
        "csi.integrazioni" => {
            let deadline = text("scadenza")
                .and_then(parse_date)
                .ok_or("scadenza non valida")?;
            Change {
                request: Some((text("messaggio").unwrap_or_default(), deadline)),
                ..csi(Status::InAttesaDiIntegrazioni)
            }
        }
        "csi.preavviso" => Change {
            reason: text("motivo"),
            ..csi(Status::PreavvisoDiRigetto)
        },
        "csi.esito" => {
            let to = match text("esito") {
                Some("accolta") => Status::Accolta,
                _ => Status::Respinta,
            };
            Change {
                reason: text("motivo"),
                ..csi(to)
            }
        }
        other => return Err(format!("tipo non gestito: {other}")),
    })
}

/// What became of an event from the CSI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The same event id came before: nothing done (`prima`: what happened then).
    Duplicate(String),
    /// Refused with its reason, kept in `inbound_events` (the dead letters).
    Refused(String),
}

/// Checks an event from the CSI `client` against its schema, the enti the client serves and the
/// status rules, and applies it at most once. The HTTP endpoint and the broker's consumer share it.
pub async fn apply(
    state: &AppState,
    client: &CsiClient,
    body: &Value,
) -> Result<Applied, AppError> {
    let body = &clean_json(body);
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let cloud_type = body["type"].as_str().unwrap_or_default().to_string();
    if let Err(reason) = validate("cloudevent", body) {
        let reason = format!("non è un CloudEvent valido: {reason}");
        if !id.is_empty() {
            record(
                state,
                client,
                &id,
                &cloud_type,
                "rifiutato",
                Some(&reason),
                body,
            )
            .await?;
        }
        return Ok(Applied::Refused(reason));
    }
    let seen: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM inbound_events WHERE event_id = $1")
            .bind(&id)
            .fetch_optional(&state.db.pool)
            .await?;
    if let Some(outcome) = seen {
        return Ok(Applied::Duplicate(outcome));
    }
    let kind = short_type(&cloud_type)
        .filter(|k| k.starts_with("csi."))
        .unwrap_or_default();
    let data = &body["data"];
    let checked = if kind.is_empty() {
        Err(format!("tipo non accettato: {cloud_type}"))
    } else {
        validate(kind, data)
    };
    if let Err(reason) = checked {
        record(
            state,
            client,
            &id,
            &cloud_type,
            "rifiutato",
            Some(&reason),
            body,
        )
        .await?;
        return Ok(Applied::Refused(reason));
    }
    let pratica = data["pratica"].as_str().unwrap_or_default();
    let app = store::get(&state.db, pratica)
        .await?
        .filter(|a| a.numero.is_some() && client.enti.contains(&a.ente_code));
    let Some(app) = app else {
        let reason = "pratica sconosciuta per questo ente".to_string();
        record(
            state,
            client,
            &id,
            &cloud_type,
            "rifiutato",
            Some(&reason),
            body,
        )
        .await?;
        return Ok(Applied::Refused(reason));
    };
    let now = state.clock.now_ms();
    if kind == "csi.messaggio" {
        let mut tx = state.db.pool.begin().await?;
        let text = data["testo"].as_str().unwrap_or_default();
        crate::applications::conversation::write(
            &mut tx,
            now,
            &app.ente_code,
            &app.id,
            &client.id,
            true,
            text,
        )
        .await?;
        let alert = crate::alerts::Alert::new(
            crate::alerts::Kind::Risposta,
            &app.applicant_cf,
            &app.id,
            format!("risposta:{}:{id}", app.id),
        );
        crate::alerts::schedule(&mut tx, now, now, &alert).await?;
        sqlx::query(
            "INSERT INTO inbound_events (event_id, client_id, event_type, received_at, outcome, payload) \
             VALUES ($1, $2, $3, $4, 'applicato', $5)",
        )
        .bind(&id)
        .bind(&client.id)
        .bind(&cloud_type)
        .bind(now)
        .bind(body.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Applied::Applied);
    }
    let change = match change_for(kind, data) {
        Ok(c) => c,
        Err(reason) => {
            record(
                state,
                client,
                &id,
                &cloud_type,
                "rifiutato",
                Some(&reason),
                body,
            )
            .await?;
            return Ok(Applied::Refused(reason));
        }
    };
    let result = status::transition(&state.db, now, rome_date(now), &app.id, &change).await;
    let reason = match result {
        Ok(_) => None,
        // Applied before, its record lost (a crash between the two): the same change again.
        Err(TransitionError::NotAllowed { from, to, .. }) if from == to => None,
        Err(TransitionError::NotAllowed { from, to, .. }) => Some(format!(
            "da «{}» non si passa a «{}»",
            from.label(),
            to.label()
        )),
        Err(TransitionError::ReasonRequired(_)) => Some("manca il motivo".to_string()),
        Err(TransitionError::ProtocolRequired) => Some("manca il protocollo".to_string()),
        Err(TransitionError::RequestIncomplete) => {
            Some("richiesta incompleta o scadenza non futura".to_string())
        }
        Err(TransitionError::Conflict) => {
            Some("la pratica è cambiata nel frattempo: riprovare".to_string())
        }
        Err(TransitionError::NotFound) => Some("pratica sconosciuta".to_string()),
        Err(TransitionError::Db(e)) => return Err(e.into()),
    };
    match reason {
        None => {
            record(state, client, &id, &cloud_type, "applicato", None, body).await?;
            Ok(Applied::Applied)
        }
        Some(reason) => {
            record(
                state,
                client,
                &id,
                &cloud_type,
                "rifiutato",
                Some(&reason),
                body,
            )
            .await?;
            Ok(Applied::Refused(reason))
        }
    }
}

#[post("/csi/eventi")]
async fn incoming(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let client = match client(&state, &req).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    Ok(match apply(&state, &client, &body).await? {
        Applied::Applied => HttpResponse::Ok().json(json!({ "esito": "applicato" })),
        Applied::Duplicate(before) => {
            HttpResponse::Ok().json(json!({ "esito": "duplicato", "prima": before }))
        }
        Applied::Refused(reason) => refused(&reason),
    })
}

/// A document the CSI read of in a `documento.ricevuto` event, for a client serving its ente.
#[get("/csi/documenti/{id}")]
async fn document(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let client = match client(&state, &req).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let doc = crate::documents::find(&state.db, id.as_str())
        .await?
        .filter(|d| d.application_status != "bozza" && client.enti.contains(&d.ente_code))
        .ok_or(AppError::NotFound)?;
    tracing::info!(client = %client.id, "the CSI downloaded a document");
    crate::documents::send(&state, &doc, false).await
}

#[get("/csi/openapi.yaml")]
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml; charset=utf-8")
        .body(OPENAPI)
}

#[get("/csi/asyncapi.yaml")]
async fn asyncapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml; charset=utf-8")
        .body(ASYNCAPI)
}

#[get("/csi/schemi/{name}.json")]
async fn schema(name: web::Path<String>) -> Result<HttpResponse, AppError> {
    let text = schema_text(&name).ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("application/schema+json")
        .body(text))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(token)
        .service(feed)
        .service(acknowledge)
        .service(incoming)
        .service(document)
        .service(asyncapi)
        .service(openapi)
        .service(schema);
}
