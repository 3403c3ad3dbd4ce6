//! Messages between the citizen and the office about a pratica: the citizen writes from the
//! pratica's page, the office answers from the desk; an unanswered citizen message puts the pratica
//! in evidence in the queue, an answer reaches the citizen as an alert. Both go to the CSI.

use serde::Serialize;
use sqlx::{Any, Transaction};

use crate::db::Db;
use crate::domain::italian_time::date_time;

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub when: String,
    pub from_office: bool,
    pub text: String,
}

pub async fn list(db: &Db, application_id: &str) -> Result<Vec<Message>, sqlx::Error> {
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT at, CAST(from_office AS BIGINT), text FROM pratica_messages WHERE application_id = $1 ORDER BY id",
    )
    .bind(application_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(at, from_office, text)| Message {
            when: date_time(at),
            from_office: from_office == 1,
            text,
        })
        .collect())
}

/// The text of a message as typed, or the Italian message saying what is wrong.
pub fn checked(text: &str) -> Result<&str, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        Err("Scrivi il messaggio.")
    } else if text.chars().count() > 2000 {
        Err("Scrivi al massimo 2000 caratteri.")
    } else {
        Ok(text)
    }
}

/// Writes a message in `tx` with its event for the CSI; an office message answers the citizen's
/// open ones.
pub async fn write(
    tx: &mut Transaction<'_, Any>,
    now: i64,
    ente: &str,
    application_id: &str,
    author_cf: &str,
    from_office: bool,
    text: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pratica_messages (application_id, at, author_cf, from_office, text) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(application_id)
    .bind(now)
    .bind(author_cf)
    .bind(i16::from(from_office))
    .bind(text)
    .execute(&mut **tx)
    .await?;
    if from_office {
        sqlx::query(
            "UPDATE pratica_messages SET handled_at = $2 WHERE application_id = $1 AND from_office = 0 AND handled_at IS NULL",
        )
        .bind(application_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    let payload = serde_json::json!({
        "pratica": application_id,
        "ente": ente,
        "da": if from_office { "ufficio" } else { "cittadino" },
        "autore": author_cf,
        "testo": text,
        "at": now,
    });
    let event = if from_office {
        "pratica.risposta"
    } else {
        "pratica.messaggio"
    };
    crate::csi::outbox(tx, now, "pratica", event, application_id, &payload).await
}
