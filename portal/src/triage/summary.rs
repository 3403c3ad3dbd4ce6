//! The coordinator's summary: open pratiche by status, by service and by operator, and those past
//! their legal term, for the enti the coordinator (or administrator, or auditor) serves.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;
use tera::Context;

use super::{holds, served_enti};
use crate::applications::status::Status;
use crate::auth::{Principal, Role};
use crate::domain::italian_time::rome_date;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render;

const OPEN: &str = "status NOT IN ('bozza', 'accolta', 'respinta', 'ritirata', 'annullata')";

#[derive(Debug, Serialize)]
struct Line {
    label: String,
    count: i64,
}

#[derive(Debug, Serialize)]
struct EnteSummary {
    ente: String,
    open: i64,
    overdue: i64,
    by_status: Vec<Line>,
    by_service: Vec<Line>,
    by_operator: Vec<Line>,
}

#[get("/ufficio/riepilogo")]
async fn summary(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, AppError> {
    let enti: Vec<String> = served_enti(&req, &principal)?
        .into_iter()
        .filter(|e| {
            holds(
                &principal,
                e,
                &[Role::Coordinatore, Role::Amministratore, Role::Revisore],
            )
        })
        .collect();
    if enti.is_empty() {
        return Err(AppError::Forbidden);
    }
    let today = rome_date(state.clock.now_ms()).to_string();
    let names = super::queue::operator_names(&state, &enti).await?;
    let mut summaries = Vec::new();
    for ente in &enti {
        let group = |column: &str| {
            format!(
                "SELECT COALESCE({column}, ''), COUNT(*) FROM applications WHERE ente_code = $1 AND numero IS NOT NULL AND {OPEN} GROUP BY {column} ORDER BY COUNT(*) DESC"
            )
        };
        let mut lines = Vec::new();
        for column in ["status", "service_code", "assigned_to"] {
            let rows: Vec<(String, i64)> = sqlx::query_as(&group(column))
                .bind(ente)
                .fetch_all(&state.db.pool)
                .await?;
            lines.push(
                rows.into_iter()
                    .map(|(key, count)| Line {
                        label: match column {
                            "status" => Status::parse(&key)
                                .map(Status::label)
                                .unwrap_or("?")
                                .to_string(),
                            "service_code" => state
                                .catalogue
                                .get(&key)
                                .map(|s| s.title.clone())
                                .unwrap_or(key),
                            _ if key.is_empty() => "Non assegnate".to_string(),
                            _ => names
                                .iter()
                                .find(|(cf, _)| *cf == key)
                                .map(|(_, n)| n.clone())
                                .unwrap_or(key),
                        },
                        count,
                    })
                    .collect::<Vec<_>>(),
            );
        }
        let overdue: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM applications WHERE ente_code = $1 AND numero IS NOT NULL AND {OPEN} AND due_date < $2"
        ))
        .bind(ente)
        .bind(&today)
        .fetch_one(&state.db.pool)
        .await?;
        let by_operator = lines.pop().unwrap_or_default();
        let by_service = lines.pop().unwrap_or_default();
        let by_status = lines.pop().unwrap_or_default();
        summaries.push(EnteSummary {
            ente: ente.clone(),
            open: by_status.iter().map(|l| l.count).sum(),
            overdue,
            by_status,
            by_service,
            by_operator,
        });
    }
    let mut ctx = Context::new();
    ctx.insert("summaries", &summaries);
    render(&state, &req, "triage/summary.html", ctx)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(summary);
}
