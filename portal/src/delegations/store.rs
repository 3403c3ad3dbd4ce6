//! The `mandates` table.

use sqlx::any::AnyRow;
use sqlx::Row;
use time::Date;

use super::{Kind, Mandate, Scope, State};
use crate::db::Db;

const COLUMNS: &str =
    "id, kind, origin, principal_cf, principal_given, principal_family, agent_cf, \
    agent_given, agent_family, scopes, valid_until, status, created_at, accepted_at, ended_at, \
    document, ente_code";

fn decode_error(column: &str, what: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.into(),
        source: what.to_string().into(),
    }
}

fn from_row(row: &AnyRow) -> Result<Mandate, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let scopes: String = row.try_get("scopes")?;
    let until: String = row.try_get("valid_until")?;
    Ok(Mandate {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind).ok_or_else(|| decode_error("kind", &kind))?,
        origin: row.try_get("origin")?,
        principal_cf: row.try_get("principal_cf")?,
        principal_given: row.try_get("principal_given")?,
        principal_family: row.try_get("principal_family")?,
        agent_cf: row.try_get("agent_cf")?,
        agent_given: row.try_get("agent_given")?,
        agent_family: row.try_get("agent_family")?,
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        valid_until: crate::applications::form::parse_date(&until)
            .ok_or_else(|| decode_error("valid_until", &until))?,
        state: State::parse(&status).ok_or_else(|| decode_error("status", &status))?,
        created_at: row.try_get("created_at")?,
        accepted_at: row.try_get("accepted_at")?,
        ended_at: row.try_get("ended_at")?,
        document: row.try_get("document")?,
        ente_code: row.try_get("ente_code")?,
    })
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Mandate>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM mandates WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The mandates where `cf` is represented (given) or acts (received), newest first.
pub async fn for_person(db: &Db, cf: &str) -> Result<Vec<Mandate>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM mandates WHERE principal_cf = $1 OR agent_cf = $1 ORDER BY created_at DESC, id"
    ))
    .bind(cf)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// The mandates the office recorded for `enti`, newest first (the latest 500).
pub async fn recorded_by_office(db: &Db, enti: &[String]) -> Result<Vec<Mandate>, sqlx::Error> {
    if enti.is_empty() {
        return Ok(Vec::new());
    }
    let places = crate::db::placeholders(1, enti.len());
    let sql = format!(
        "SELECT {COLUMNS} FROM mandates WHERE origin = 'ufficio' AND ente_code IN ({places}) \
         ORDER BY created_at DESC, id LIMIT 500"
    );
    let mut query = sqlx::query(&sql);
    for ente in enti {
        query = query.bind(ente);
    }
    query
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

pub struct NewMandate<'a> {
    pub kind: Kind,
    pub origin: &'a str,
    pub principal: (&'a str, &'a str, &'a str),
    pub agent: (&'a str, &'a str, &'a str),
    pub scopes: &'a [Scope],
    pub valid_until: Date,
    pub state: State,
    pub created_by: &'a str,
    pub document: Option<&'a str>,
    pub ente_code: Option<&'a str>,
}

pub async fn create(db: &Db, now: i64, m: &NewMandate<'_>) -> Result<String, sqlx::Error> {
    let id = crate::web::session::random_token(12);
    let scopes = m
        .scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    sqlx::query(
        "INSERT INTO mandates (id, kind, origin, principal_cf, principal_given, principal_family, \
         agent_cf, agent_given, agent_family, scopes, valid_until, status, created_at, created_by, \
         accepted_at, document, ente_code) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&id)
    .bind(m.kind.as_str())
    .bind(m.origin)
    .bind(m.principal.0)
    .bind(m.principal.1)
    .bind(m.principal.2)
    .bind(m.agent.0)
    .bind(m.agent.1)
    .bind(m.agent.2)
    .bind(scopes)
    .bind(m.valid_until.to_string())
    .bind(m.state.as_str())
    .bind(now)
    .bind(m.created_by)
    .bind((m.state == State::Attiva).then_some(now))
    .bind(m.document)
    .bind(m.ente_code)
    .execute(&db.pool)
    .await?;
    Ok(id)
}

/// The delegate accepts (their name as the identity provider asserts it replaces the one typed by
/// the person) or refuses a proposed delegation; false when it was no longer proposed.
pub async fn answer(
    db: &Db,
    now: i64,
    id: &str,
    agent_cf: &str,
    accept: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let done = match accept {
        Some((given, family)) => {
            sqlx::query(
                "UPDATE mandates SET status = 'attiva', accepted_at = $1, agent_given = $2, agent_family = $3 \
                 WHERE id = $4 AND agent_cf = $5 AND status = 'proposta'",
            )
            .bind(now)
            .bind(given)
            .bind(family)
            .bind(id)
            .bind(agent_cf)
            .execute(&db.pool)
            .await?
        }
        None => {
            sqlx::query(
                "UPDATE mandates SET status = 'rifiutata', ended_at = $1, ended_by = $2 \
                 WHERE id = $3 AND agent_cf = $2 AND status = 'proposta'",
            )
            .bind(now)
            .bind(agent_cf)
            .bind(id)
            .execute(&db.pool)
            .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

/// Ends a proposed or active mandate; false when it had already ended.
pub async fn revoke(db: &Db, now: i64, id: &str, by_cf: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE mandates SET status = 'revocata', ended_at = $1, ended_by = $2 \
         WHERE id = $3 AND status IN ('proposta', 'attiva')",
    )
    .bind(now)
    .bind(by_cf)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
