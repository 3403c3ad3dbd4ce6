//! The hand-off to the back-office case-management system (CSI). Every change the CSI must hear of
//! writes an outbox row in the same transaction as the change itself. Without a broker (the
//! embedded default) the CSI reads them as CloudEvents from an authenticated HTTP feed with a
//! cursor and acknowledgements, and sends its own events (status, protocol, documents requested,
//! outcome, a message) to an HTTP endpoint that applies each at most once (`api`, `events`).

pub mod api;
pub mod broker;
pub mod demo;
pub mod events;

use sqlx::{Any, Transaction};

/// The PostgreSQL advisory lock that orders the feed's reads after the writers of events.
pub const OUTBOX_LOCK: i64 = 0x5350_4f52_5445_4c4c;

/// Writes one event for the CSI inside `tx`. `aggregate_type` and `aggregate_id` name the record
/// (`pratica`, `appuntamento`), so that the events of one record are relayed in order; the
/// payload's `ente` says which CSI may read it.
pub async fn outbox(
    tx: &mut Transaction<'_, Any>,
    now_ms: i64,
    aggregate_type: &str,
    event_type: &str,
    aggregate_id: &str,
    payload: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    outbox_all(
        tx,
        &[Event {
            at_ms: now_ms,
            aggregate_type,
            event_type,
            aggregate_id,
            payload: payload.clone(),
        }],
    )
    .await
}

/// An event for the CSI, as [`outbox_all`] writes it.
pub struct Event<'a> {
    pub at_ms: i64,
    pub aggregate_type: &'a str,
    pub event_type: &'a str,
    pub aggregate_id: &'a str,
    pub payload: serde_json::Value,
}

/// Writes `events` inside `tx`, in their order, with one statement.
pub async fn outbox_all(
    tx: &mut Transaction<'_, Any>,
    events: &[Event<'_>],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    if (**tx).backend_name() == "PostgreSQL" {
        // Ids are taken before commit: the HTTP feed, which reads by id, waits for the
        // transactions writing events (held shared here until commit) before it reads.
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(OUTBOX_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    let sql = format!(
        "INSERT INTO outbox (event_id, event_type, aggregate_type, aggregate_id, payload, available_at, created_at, ente_code) \
         VALUES {}",
        crate::db::value_rows(events.len(), 8)
    );
    let mut query = sqlx::query(&sql);
    for e in events {
        query = query
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(e.event_type)
            .bind(e.aggregate_type)
            .bind(e.aggregate_id)
            .bind(e.payload.to_string())
            .bind(e.at_ms)
            .bind(e.at_ms)
            .bind(e.payload["ente"].as_str().map(str::to_string));
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// The citizen's contacts changed: one event for each ente that holds a pratica of theirs, so that
/// its CSI can update the file.
pub async fn contacts_changed(
    tx: &mut Transaction<'_, Any>,
    now_ms: i64,
    cf: &str,
) -> Result<(), sqlx::Error> {
    let (email, phone): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT email, phone FROM people WHERE cf = $1")
            .bind(cf)
            .fetch_one(&mut **tx)
            .await?;
    let enti: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT ente_code FROM applications WHERE applicant_cf = $1 AND status <> 'bozza'",
    )
    .bind(cf)
    .fetch_all(&mut **tx)
    .await?;
    for ente in enti {
        let payload = serde_json::json!({
            "cf": cf,
            "ente": ente,
            "email": email,
            "telefono": phone,
            "at": now_ms,
        });
        outbox(tx, now_ms, "persona", "persona.contatti", cf, &payload).await?;
    }
    Ok(())
}
