//! `/healthz` (the process answers), `/readyz` (the database answers and is migrated) and
//! `/metrics` (Prometheus text format, optionally behind a bearer token).

use actix_web::{get, http::header, web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;

use crate::server::AppState;

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.db.ready().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "status": "unavailable", "database": "unreachable or not migrated" }))
        }
    }
}

#[get("/metrics")]
async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(token) = &state.config.metrics.bearer_token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(token.expose_secret()) {
            return HttpResponse::Unauthorized()
                .content_type("application/json")
                .body(r#"{"error":"unauthorized"}"#);
        }
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}
