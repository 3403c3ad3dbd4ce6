//! Front-office triage: the staff desk where what came in waits, in order of urgency (`queue`), each
//! pratica with its actions (`pratica`), and the coordinator's summary (`summary`). Staff see only
//! the enti they serve; what they read of a person is in the audit log; every change goes through
//! the status rules and a version check, so that two operators never overwrite each other silently.

pub mod pratica;
pub mod queue;
pub mod summary;

use actix_web::{HttpMessage, HttpRequest};

use crate::auth::access::{self, Access, Action};
use crate::auth::{person_at_level, Principal, Role, LOGIN_LEVEL};
use crate::db::Db;
use crate::domain::CodiceFiscale;
use crate::web::error::AppError;
use crate::web::RequestId;

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    queue::routes(cfg);
    pratica::routes(cfg);
    summary::routes(cfg);
}

/// The enti the staff member serves, with any role; citizens get 403.
pub fn served_enti(req: &HttpRequest, principal: &Principal) -> Result<Vec<String>, AppError> {
    person_at_level(req, principal, LOGIN_LEVEL)?;
    let Principal::Staff { memberships, .. } = principal else {
        return Err(AppError::Forbidden);
    };
    let mut enti: Vec<String> = memberships.iter().map(|m| m.ente.clone()).collect();
    enti.sort();
    enti.dedup();
    Ok(enti)
}

/// Whether the principal holds one of `roles` in `ente`.
pub fn holds(principal: &Principal, ente: &str, roles: &[Role]) -> bool {
    roles
        .iter()
        .any(|r| principal.enti_with(*r).contains(&ente))
}

/// Writes one audit row per person read (a page of the queue shows many, in one statement); the
/// caller has already limited the rows to the enti the principal serves.
pub async fn audit_reads(
    db: &Db,
    now: i64,
    req: &HttpRequest,
    principal: &Principal,
    reads: &[(String, String)],
    purpose: &str,
) -> Result<(), AppError> {
    let Some(actor) = principal.person() else {
        return Err(AppError::Forbidden);
    };
    let reads: Vec<&(String, String)> = reads
        .iter()
        .filter(|(cf, _)| cf.as_str() != actor.cf.as_str())
        .collect();
    if reads.is_empty() {
        return Ok(());
    }
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let values: Vec<String> = (0..reads.len())
        .map(|i| {
            format!(
                "($1, $2, $3, ${}, 'read', ${}, $4, $5)",
                6 + 2 * i,
                7 + 2 * i
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO audit_log (at, actor_cf, actor_role, subject_cf, action, object, purpose, request_id) VALUES {}",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(now)
        .bind(actor.cf.as_str())
        .bind(principal.role_label())
        .bind(purpose)
        .bind(request_id);
    for (cf, object) in reads {
        query = query.bind(cf).bind(object);
    }
    query.execute(&db.pool).await?;
    Ok(())
}

/// Checks and audits a change of the pratica `app` by the principal (auditors may not change).
pub async fn authorize_change(
    state: &crate::server::AppState,
    req: &HttpRequest,
    principal: &Principal,
    app: &crate::applications::store::Application,
    purpose: &str,
) -> Result<(), AppError> {
    let subject = CodiceFiscale::parse(&app.applicant_cf).map_err(|_| AppError::NotFound)?;
    let object = format!("pratica:{}", app.numero.as_deref().unwrap_or_default());
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    access::authorize(
        &state.db,
        state.clock.now_ms(),
        principal,
        &Access {
            subject: &subject,
            action: Action::Change,
            object: &object,
            purpose,
            ente: Some(&app.ente_code),
        },
        request_id.as_deref(),
    )
    .await
}
