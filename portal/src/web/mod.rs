//! Shared web pieces: errors, templates, sessions, CSRF and security headers, request telemetry,
//! health endpoints.

pub mod assets;
pub mod error;
pub mod health;
pub mod security;
pub mod session;
pub mod templates;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use tracing::Instrument;

use crate::server::AppState;
use crate::telemetry::{HttpLabels, RouteLabels};

/// The request id: the caller's `X-Request-Id` when it looks like one, otherwise a new UUID.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Outermost middleware: a span with the request id, the access log line and the HTTP metrics.
pub async fn telemetry(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method);
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let _entered = span.enter();
    match result {
        Ok(mut res) => {
            let route = res
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".into());
            let status = res.status().as_u16();
            if let Some(state) = state {
                state
                    .metrics
                    .http_requests
                    .get_or_create(&HttpLabels {
                        method: method.clone(),
                        route: route.clone(),
                        status,
                    })
                    .inc();
                state
                    .metrics
                    .http_duration
                    .get_or_create(&RouteLabels {
                        method,
                        route: route.clone(),
                    })
                    .observe(elapsed.as_secs_f64());
            }
            if !route.starts_with("/static") {
                tracing::info!(route = %route, status, ms = elapsed.as_millis() as u64, "served");
            }
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                res.headers_mut().insert(
                    actix_web::http::header::HeaderName::from_static("x-request-id"),
                    v,
                );
            }
            Ok(res)
        }
        Err(e) => {
            tracing::warn!(error = %e, "request failed before a response");
            Err(e)
        }
    }
}
