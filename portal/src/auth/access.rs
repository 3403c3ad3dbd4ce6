//! The one place where "may this principal see or change this person's data?" is answered, and
//! where every access to someone else's data is written to the audit log.

use crate::auth::{Principal, Role};
use crate::db::Db;
use crate::domain::CodiceFiscale;
use crate::web::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Change,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Change => "change",
        }
    }
}

/// What is being accessed and why; `object` names the record (e.g. `area-personale`,
/// `pratica:VV-2026-000123`), `purpose` the reason (the pratica or task being worked on).
#[derive(Debug, Clone)]
pub struct Access<'a> {
    pub subject: &'a CodiceFiscale,
    pub action: Action,
    pub object: &'a str,
    pub purpose: &'a str,
    /// The ente the subject's record belongs to, when the access is through a record of an ente.
    pub ente: Option<&'a str>,
}

/// Allows or refuses `access`; writes an audit row whenever it is allowed for someone other than the
/// subject. Citizens reach only their own data (delegations come with their own issue); staff reach
/// the records of the enti they serve, read-only for auditors.
pub async fn authorize(
    db: &Db,
    now_ms: i64,
    principal: &Principal,
    access: &Access<'_>,
    request_id: Option<&str>,
) -> Result<(), AppError> {
    let person = principal.person().ok_or(AppError::Forbidden)?;
    if &person.cf == access.subject {
        return Ok(());
    }
    let allowed = match (principal, access.ente) {
        (Principal::Staff { memberships, .. }, Some(ente)) => memberships.iter().any(|m| {
            m.ente == ente
                && match access.action {
                    Action::Read => true,
                    Action::Change => m.role != Role::Revisore,
                }
        }),
        _ => false,
    };
    if !allowed {
        return Err(AppError::Forbidden);
    }
    sqlx::query(
        "INSERT INTO audit_log (at, actor_cf, actor_role, subject_cf, action, object, purpose, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(now_ms)
    .bind(person.cf.as_str())
    .bind(principal.role_label())
    .bind(access.subject.as_str())
    .bind(access.action.as_str())
    .bind(access.object)
    .bind(access.purpose)
    .bind(request_id)
    .execute(&db.pool)
    .await?;
    Ok(())
}
