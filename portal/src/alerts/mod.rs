//! Alerts and messages: the right reminder, once, on time. Each alert is a durable job
//! (`alerts.deliver`) with a due time and one idempotency key, scheduled in the same transaction as
//! the change that causes it (a submission, a status change, a booking) or by the hourly sweep
//! (drafts whose service closes soon, ISEE expiring, pratiche near their legal term). When due, the
//! job checks the alert still applies, writes it to the person's inbox (once per key), and sends
//! the e-mail unless the person opted out of that kind; follow-up reminders are scheduled by the
//! alert they follow. SMTP failures are retried by the job runner with backoff, then marked failed
//! and shown to administrators.

pub mod deliver;
pub mod inbox;
pub mod mail;
pub mod sweep;

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use crate::jobs::NewJob;

pub const DELIVER_JOB: &str = "alerts.deliver";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ricevuta,
    Stato,
    Risposta,
    Integrazioni,
    ScadenzaIntegrazioni,
    Preavviso,
    ScadenzaPreavviso,
    Appuntamento,
    PromemoriaAppuntamento,
    BozzaInScadenza,
    IseeInScadenza,
    TermineLegale,
    ConfermaEmail,
    Delega,
}

/// The kinds a citizen can choose to receive by e-mail or not (the inbox always gets them).
pub const CHOOSABLE: [Kind; 12] = [
    Kind::Ricevuta,
    Kind::Stato,
    Kind::Risposta,
    Kind::Integrazioni,
    Kind::ScadenzaIntegrazioni,
    Kind::Preavviso,
    Kind::ScadenzaPreavviso,
    Kind::Appuntamento,
    Kind::PromemoriaAppuntamento,
    Kind::BozzaInScadenza,
    Kind::IseeInScadenza,
    Kind::Delega,
];

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ricevuta => "ricevuta",
            Kind::Stato => "stato",
            Kind::Risposta => "risposta",
            Kind::Integrazioni => "integrazioni",
            Kind::ScadenzaIntegrazioni => "scadenza_integrazioni",
            Kind::Preavviso => "preavviso",
            Kind::ScadenzaPreavviso => "scadenza_preavviso",
            Kind::Appuntamento => "appuntamento",
            Kind::PromemoriaAppuntamento => "promemoria_appuntamento",
            Kind::BozzaInScadenza => "bozza_in_scadenza",
            Kind::IseeInScadenza => "isee_in_scadenza",
            Kind::TermineLegale => "termine_legale",
            Kind::ConfermaEmail => "conferma_email",
            Kind::Delega => "delega",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        CHOOSABLE
            .into_iter()
            .chain([Kind::TermineLegale, Kind::ConfermaEmail])
            .find(|k| k.as_str() == s)
    }

    /// As the preferences page names it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ricevuta => "Ricevuta di una domanda inviata",
            Kind::Stato => "Cambi di stato delle pratiche",
            Kind::Risposta => "Messaggi dell'ufficio sulle pratiche",
            Kind::Integrazioni => "Richieste di documenti",
            Kind::ScadenzaIntegrazioni => "Promemoria delle scadenze per i documenti",
            Kind::Preavviso => "Preavviso di rigetto",
            Kind::ScadenzaPreavviso => "Promemoria della scadenza del preavviso",
            Kind::Appuntamento => "Conferma degli appuntamenti",
            Kind::PromemoriaAppuntamento => "Promemoria degli appuntamenti",
            Kind::BozzaInScadenza => "Domande in bozza da inviare prima della chiusura",
            Kind::IseeInScadenza => "ISEE in scadenza",
            Kind::TermineLegale => "Pratiche vicine al termine (operatori)",
            Kind::ConfermaEmail => "Conferma dell'indirizzo e-mail",
            Kind::Delega => "Deleghe ricevute, da accettare",
        }
    }
}

/// What an alert is about; `key` makes it happen once, however often it is scheduled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub kind: Kind,
    pub cf: String,
    pub key: String,
    /// The pratica or appointment id.
    pub about: String,
    #[serde(default)]
    pub extra: serde_json::Value,
}

impl Alert {
    pub fn new(kind: Kind, cf: &str, about: &str, key: impl Into<String>) -> Alert {
        Alert {
            kind,
            cf: cf.to_string(),
            key: key.into(),
            about: about.to_string(),
            extra: serde_json::Value::Null,
        }
    }

    pub fn with(mut self, extra: serde_json::Value) -> Alert {
        self.extra = extra;
        self
    }

    fn job(&self, due_ms: i64) -> Result<NewJob, sqlx::Error> {
        let payload =
            serde_json::to_value(self).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        Ok(NewJob::new(DELIVER_JOB, payload, due_ms)
            .idempotency_key(format!("alert:{}", self.key))
            .max_attempts(10))
    }
}

/// Schedules `alert` for `due_ms` inside the caller's transaction.
pub async fn schedule(
    tx: &mut Transaction<'_, Any>,
    now_ms: i64,
    due_ms: i64,
    alert: &Alert,
) -> Result<(), sqlx::Error> {
    crate::jobs::enqueue(&mut **tx, now_ms, &alert.job(due_ms)?).await?;
    Ok(())
}

/// Schedules `alerts`, each for its due time, inside the caller's transaction, with one statement.
pub async fn schedule_all(
    tx: &mut Transaction<'_, Any>,
    now_ms: i64,
    alerts: &[(i64, Alert)],
) -> Result<(), sqlx::Error> {
    let jobs = alerts
        .iter()
        .map(|(due_ms, a)| a.job(*due_ms))
        .collect::<Result<Vec<_>, _>>()?;
    crate::jobs::enqueue_all(&mut **tx, now_ms, &jobs).await?;
    Ok(())
}

/// Schedules `alert` outside a transaction (follow-up reminders, the sweep).
pub async fn schedule_now(
    db: &crate::db::Db,
    now_ms: i64,
    due_ms: i64,
    alert: &Alert,
) -> Result<(), sqlx::Error> {
    crate::jobs::enqueue(&db.pool, now_ms, &alert.job(due_ms)?).await?;
    Ok(())
}
