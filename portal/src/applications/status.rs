//! The status of a pratica and the one place where its changes are allowed or refused. Every change
//! is written with who made it, when and why; changes the CSI did not make itself are also put in
//! the outbox for it, in the same transaction.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::db::Db;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Bozza,
    Inviata,
    Protocollata,
    PresaInCarico,
    InAttesaDiIntegrazioni,
    IntegrazioniRicevute,
    PreavvisoDiRigetto,
    Accolta,
    Respinta,
    Ritirata,
    Annullata,
}

pub const ALL: [Status; 11] = [
    Status::Bozza,
    Status::Inviata,
    Status::Protocollata,
    Status::PresaInCarico,
    Status::InAttesaDiIntegrazioni,
    Status::IntegrazioniRicevute,
    Status::PreavvisoDiRigetto,
    Status::Accolta,
    Status::Respinta,
    Status::Ritirata,
    Status::Annullata,
];

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Bozza => "bozza",
            Status::Inviata => "inviata",
            Status::Protocollata => "protocollata",
            Status::PresaInCarico => "presa_in_carico",
            Status::InAttesaDiIntegrazioni => "in_attesa_di_integrazioni",
            Status::IntegrazioniRicevute => "integrazioni_ricevute",
            Status::PreavvisoDiRigetto => "preavviso_di_rigetto",
            Status::Accolta => "accolta",
            Status::Respinta => "respinta",
            Status::Ritirata => "ritirata",
            Status::Annullata => "annullata",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// As the citizen reads it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Bozza => "Bozza",
            Status::Inviata => "Inviata",
            Status::Protocollata => "Protocollata",
            Status::PresaInCarico => "Presa in carico",
            Status::InAttesaDiIntegrazioni => "In attesa di integrazioni",
            Status::IntegrazioniRicevute => "Integrazioni ricevute",
            Status::PreavvisoDiRigetto => "Preavviso di rigetto",
            Status::Accolta => "Accolta",
            Status::Respinta => "Respinta",
            Status::Ritirata => "Ritirata",
            Status::Annullata => "Annullata",
        }
    }

    /// The procedure is over: nothing changes any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Accolta | Status::Respinta | Status::Ritirata | Status::Annullata
        )
    }
}

/// Who makes a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Cittadino,
    Operatore,
    Csi,
    Sistema,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Cittadino => "cittadino",
            Actor::Operatore => "operatore",
            Actor::Csi => "csi",
            Actor::Sistema => "sistema",
        }
    }
}

/// Whether `actor` may move a pratica from `from` to `to`. The status model of DESIGN.md:
/// bozza → inviata → protocollata → presa in carico → (in attesa di integrazioni → integrazioni
/// ricevute)* → (preavviso di rigetto →) accolta / respinta; the citizen may withdraw until the
/// outcome; the office may annul with a reason.
pub fn allowed(from: Status, to: Status, actor: Actor) -> bool {
    use Status::*;
    let office = matches!(actor, Actor::Operatore | Actor::Csi);
    match (from, to) {
        (Bozza, Inviata) => actor == Actor::Cittadino,
        (Inviata, Protocollata) => office,
        (Inviata | Protocollata, PresaInCarico) => office,
        (PresaInCarico | IntegrazioniRicevute, InAttesaDiIntegrazioni) => office,
        (InAttesaDiIntegrazioni, IntegrazioniRicevute) => actor == Actor::Cittadino,
        // The deadline passed with no answer: the office goes on with what it has.
        (InAttesaDiIntegrazioni, PresaInCarico) => office || actor == Actor::Sistema,
        (PresaInCarico | IntegrazioniRicevute | InAttesaDiIntegrazioni, PreavvisoDiRigetto) => {
            office
        }
        // The citizen's observations convinced the office: back to the assessment.
        (PreavvisoDiRigetto, PresaInCarico) => office,
        (PresaInCarico | IntegrazioniRicevute | PreavvisoDiRigetto, Accolta) => office,
        // Art. 10-bis L. 241/1990: no rejection without the notice first.
        (PreavvisoDiRigetto, Respinta) => office,
        (from, Ritirata) => actor == Actor::Cittadino && from != Bozza && !from.is_final(),
        (from, Annullata) => office && from != Bozza && !from.is_final(),
        _ => false,
    }
}

/// Whether the change needs a reason, written in the history and shown to the citizen.
pub fn needs_reason(to: Status) -> bool {
    matches!(
        to,
        Status::PreavvisoDiRigetto | Status::Respinta | Status::Annullata
    )
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("pratica not found")]
    NotFound,
    #[error("the change from {from:?} to {to:?} is not allowed to {actor:?}")]
    NotAllowed {
        from: Status,
        to: Status,
        actor: Actor,
    },
    #[error("a reason is required for {0:?}")]
    ReasonRequired(Status),
    #[error("the protocol number is required")]
    ProtocolRequired,
    #[error("a request for documents needs a message and a deadline after today")]
    RequestIncomplete,
    #[error("the pratica changed meanwhile")]
    Conflict,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A change of status, with what some changes carry.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub to: Status,
    pub actor: Actor,
    /// The person who acted (none for the CSI or the system).
    pub actor_cf: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// `protocollata`: the protocol number.
    pub protocollo: Option<&'a str>,
    /// `in attesa di integrazioni`: what is asked and the last day to answer.
    pub request: Option<(&'a str, Date)>,
    /// `integrazioni ricevute`: the citizen's answer.
    pub answer: Option<&'a str>,
}

impl<'a> Change<'a> {
    pub fn to(to: Status, actor: Actor, actor_cf: Option<&'a str>) -> Change<'a> {
        Change {
            to,
            actor,
            actor_cf,
            reason: None,
            protocollo: None,
            request: None,
            answer: None,
        }
    }
}

/// What the citizen is told of a change they did not make themselves.
fn alert_for(
    id: &str,
    cf: &str,
    change: &Change<'_>,
    now_ms: i64,
    today: Date,
) -> Option<crate::alerts::Alert> {
    use crate::alerts::{Alert, Kind};
    if change.actor == Actor::Cittadino {
        return None;
    }
    Some(match change.to {
        Status::InAttesaDiIntegrazioni => {
            let deadline = change.request.map(|(_, d)| d)?;
            Alert::new(
                Kind::Integrazioni,
                cf,
                id,
                format!("integrazioni:{id}:{deadline}"),
            )
        }
        Status::PreavvisoDiRigetto => {
            // Ten days to answer (L. 241/1990, art. 10-bis).
            let term = today + time::Duration::days(10);
            Alert::new(Kind::Preavviso, cf, id, format!("preavviso:{id}:{now_ms}"))
                .with(serde_json::json!({ "term": term.to_string() }))
        }
        to => Alert::new(
            Kind::Stato,
            cf,
            id,
            format!("stato:{id}:{}:{now_ms}", to.as_str()),
        )
        .with(serde_json::json!({ "to": to.as_str() })),
    })
}

/// Applies `change` to the pratica `id`, if the model allows it from its current status.
/// Returns the status it came from.
pub async fn transition(
    db: &Db,
    now_ms: i64,
    today: Date,
    id: &str,
    change: &Change<'_>,
) -> Result<Status, TransitionError> {
    let current: Option<(String,)> =
        sqlx::query_as("SELECT status FROM applications WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?;
    let from = current
        .and_then(|(s,)| Status::parse(&s))
        .ok_or(TransitionError::NotFound)?;
    if !allowed(from, change.to, change.actor) || change.to == Status::Inviata {
        // Submission has its own path (numbering, snapshot): see `store::submit`.
        return Err(TransitionError::NotAllowed {
            from,
            to: change.to,
            actor: change.actor,
        });
    }
    let reason = change.reason.map(str::trim).filter(|r| !r.is_empty());
    if needs_reason(change.to) && reason.is_none() {
        return Err(TransitionError::ReasonRequired(change.to));
    }
    let protocollo = change.protocollo.map(str::trim).filter(|p| !p.is_empty());
    if change.to == Status::Protocollata && protocollo.is_none() {
        return Err(TransitionError::ProtocolRequired);
    }
    if change.to == Status::InAttesaDiIntegrazioni
        && !matches!(change.request, Some((m, d)) if !m.trim().is_empty() && d > today)
    {
        return Err(TransitionError::RequestIncomplete);
    }

    let mut tx = db.pool.begin().await?;
    // The write comes first, so SQLite takes its lock at once; the status check makes a concurrent
    // change lose cleanly instead of overwriting.
    let applicant: Option<(String, String)> = sqlx::query_as(
        "UPDATE applications SET status = $1, updated_at = $2, \
         protocollo = COALESCE($3, protocollo), \
         taken_in_charge_at = CASE WHEN $1 = 'presa_in_carico' AND taken_in_charge_at IS NULL THEN $2 ELSE taken_in_charge_at END \
         WHERE id = $4 AND status = $5 RETURNING applicant_cf, ente_code",
    )
    .bind(change.to.as_str())
    .bind(now_ms)
    .bind(protocollo)
    .bind(id)
    .bind(from.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((applicant, ente)) = applicant else {
        return Err(TransitionError::Conflict);
    };
    sqlx::query(
        "INSERT INTO application_history (application_id, from_status, to_status, at, actor_kind, actor_cf, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(change.to.as_str())
    .bind(now_ms)
    .bind(change.actor.as_str())
    .bind(change.actor_cf)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    if let Some((message, deadline)) = change.request {
        sqlx::query(
            "INSERT INTO application_requests (application_id, message, deadline, requested_at, requested_by) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(message.trim())
        .bind(deadline.to_string())
        .bind(now_ms)
        .bind(change.actor_cf)
        .execute(&mut *tx)
        .await?;
    }
    if change.to == Status::IntegrazioniRicevute {
        sqlx::query(
            "UPDATE application_requests SET answered_at = $1, answer = $2 \
             WHERE application_id = $3 AND answered_at IS NULL",
        )
        .bind(now_ms)
        .bind(change.answer.map(str::trim).unwrap_or(""))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    if change.actor != Actor::Csi {
        let payload = serde_json::json!({
            "pratica": id,
            "ente": ente,
            "from": from.as_str(),
            "to": change.to.as_str(),
            "at": now_ms,
            "actor": change.actor.as_str(),
            "reason": reason,
            "answer": change.answer,
        });
        crate::csi::outbox(&mut tx, now_ms, "pratica", "pratica.stato", id, &payload).await?;
    }
    if let Some(alert) = alert_for(id, &applicant, change, now_ms, today) {
        crate::alerts::schedule(&mut tx, now_ms, now_ms, &alert).await?;
    }
    tx.commit().await?;
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_model_s_changes_are_allowed() {
        use Status::*;
        assert!(allowed(Bozza, Inviata, Actor::Cittadino));
        assert!(!allowed(Bozza, Inviata, Actor::Operatore));
        assert!(allowed(Inviata, Protocollata, Actor::Csi));
        assert!(!allowed(Inviata, Protocollata, Actor::Cittadino));
        assert!(!allowed(Inviata, Accolta, Actor::Operatore));
        // No rejection without the 10-bis notice.
        assert!(!allowed(PresaInCarico, Respinta, Actor::Operatore));
        assert!(allowed(PreavvisoDiRigetto, Respinta, Actor::Operatore));
        assert!(allowed(
            InAttesaDiIntegrazioni,
            IntegrazioniRicevute,
            Actor::Cittadino
        ));
        assert!(!allowed(
            InAttesaDiIntegrazioni,
            IntegrazioniRicevute,
            Actor::Operatore
        ));
        assert!(allowed(PresaInCarico, Ritirata, Actor::Cittadino));
        assert!(!allowed(Bozza, Ritirata, Actor::Cittadino));
        assert!(!allowed(Accolta, Ritirata, Actor::Cittadino));
        assert!(!allowed(Inviata, Ritirata, Actor::Operatore));
        assert!(allowed(Inviata, Annullata, Actor::Operatore));
        assert!(!allowed(Inviata, Annullata, Actor::Cittadino));
    }

    #[test]
    fn nothing_leaves_a_final_status() {
        for from in ALL.into_iter().filter(|s| s.is_final()) {
            for to in ALL {
                for actor in [
                    Actor::Cittadino,
                    Actor::Operatore,
                    Actor::Csi,
                    Actor::Sistema,
                ] {
                    assert!(!allowed(from, to, actor), "{from:?} → {to:?} by {actor:?}");
                }
            }
        }
    }

    #[test]
    fn names_read_back() {
        for s in ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }
}
