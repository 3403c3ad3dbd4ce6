//! The SQL of applications: drafts, the submission transaction, lists and history.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use time::{Date, Duration};

use super::form::Answers;
use super::status::Status;
use crate::db::Db;
use crate::domain::italian_time::rome_date;

/// One application as stored.
#[derive(Clone)]
pub struct Application {
    pub id: String,
    pub ente_code: String,
    pub service_code: String,
    pub form_version: i64,
    pub applicant_cf: String,
    pub status: Status,
    pub answers: Answers,
    pub current_step: i64,
    pub numero: Option<String>,
    pub submitted_at: Option<i64>,
    pub snapshot: Option<Snapshot>,
    /// The snapshot as stored, whose SHA-256 is the receipt's fingerprint.
    pub snapshot_text: Option<String>,
    pub verification_code: Option<String>,
    pub due_date: Option<Date>,
    pub taken_in_charge_at: Option<i64>,
    pub protocollo: Option<String>,
    pub rating: Option<i64>,
    /// Triage: the operator it is assigned to, the area of need it was classified in.
    pub assigned_to: Option<String>,
    pub need_area: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Answers are personal data: `Debug` shows only identifiers.
impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Application {{ id: {}, service: {}, status: {:?}, .. }}",
            self.id, self.service_code, self.status
        )
    }
}

/// What was sent, frozen at submission: the receipt and the CSI event are made from it alone.
#[derive(Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub numero: String,
    pub ente_code: String,
    pub ente_name: String,
    pub service_code: String,
    pub service_title: String,
    pub form_version: u32,
    pub submitted_at: i64,
    pub applicant_cf: String,
    pub applicant_name: String,
    pub answers: Answers,
    pub summary: Vec<super::form::SummarySection>,
    pub declarations: Vec<String>,
    pub attachments: Vec<SnapshotAttachment>,
    pub due_date: String,
    /// Who sent it for the applicant, when someone did (a delegate, a legal representative).
    #[serde(default)]
    pub delegate: Option<SnapshotDelegate>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct SnapshotDelegate {
    pub cf: String,
    pub name: String,
    /// "delegato", "genitore", "tutore", "amministratore di sostegno".
    pub role: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct SnapshotAttachment {
    pub slot: String,
    /// The slot's label on the form ("Documentazione sanitaria utile"); empty on older receipts.
    #[serde(default)]
    pub slot_label: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

const COLUMNS: &str = "id, ente_code, service_code, form_version, applicant_cf, status, answers, \
    current_step, numero, submitted_at, snapshot, verification_code, due_date, taken_in_charge_at, \
    protocollo, rating, assigned_to, need_area, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Application, sqlx::Error> {
    let decode = |column: &str, e: serde_json::Error| sqlx::Error::ColumnDecode {
        index: column.into(),
        source: Box::new(e),
    };
    let status: String = row.try_get("status")?;
    let answers: String = row.try_get("answers")?;
    let snapshot: Option<String> = row.try_get("snapshot")?;
    let due: Option<String> = row.try_get("due_date")?;
    Ok(Application {
        id: row.try_get("id")?,
        ente_code: row.try_get("ente_code")?,
        service_code: row.try_get("service_code")?,
        form_version: row.try_get("form_version")?,
        applicant_cf: row.try_get("applicant_cf")?,
        status: Status::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: format!("unknown status {status}").into(),
        })?,
        answers: serde_json::from_str(&answers).map_err(|e| decode("answers", e))?,
        current_step: row.try_get("current_step")?,
        numero: row.try_get("numero")?,
        submitted_at: row.try_get("submitted_at")?,
        snapshot: snapshot
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| decode("snapshot", e))?,
        snapshot_text: snapshot,
        verification_code: row.try_get("verification_code")?,
        due_date: due.as_deref().and_then(super::form::parse_date),
        taken_in_charge_at: row.try_get("taken_in_charge_at")?,
        protocollo: row.try_get("protocollo")?,
        rating: row.try_get("rating")?,
        assigned_to: row.try_get("assigned_to")?,
        need_area: row.try_get("need_area")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn json(answers: &Answers) -> String {
    serde_json::to_string(answers).unwrap_or_else(|_| "{}".into())
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Application>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM applications WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The person's applications, newest first.
pub async fn list_for(db: &Db, cf: &str) -> Result<Vec<Application>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM applications WHERE applicant_cf = $1 ORDER BY updated_at DESC"
    ))
    .bind(cf)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn draft_for(db: &Db, cf: &str, service: &str) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM applications WHERE applicant_cf = $1 AND service_code = $2 AND status = 'bozza' \
         ORDER BY updated_at DESC LIMIT 1",
    )
    .bind(cf)
    .bind(service)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|(id,)| id))
}

/// Answers the person gave in their latest applications, for once-only prefilling.
pub async fn previous_answers(db: &Db, cf: &str) -> Result<Answers, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT answers FROM applications WHERE applicant_cf = $1 AND status <> 'bozza' \
         ORDER BY submitted_at DESC LIMIT 5",
    )
    .bind(cf)
    .fetch_all(&db.pool)
    .await?;
    let mut merged = Answers::new();
    // Oldest first, so the newest answer wins.
    for (text,) in rows.iter().rev() {
        if let Ok(answers) = serde_json::from_str::<Answers>(text) {
            merged.extend(answers);
        }
    }
    Ok(merged)
}

pub struct NewDraft<'a> {
    pub ente_code: &'a str,
    pub service_code: &'a str,
    pub form_version: u32,
    pub applicant_cf: &'a str,
    pub answers: &'a Answers,
}

pub async fn create_draft(
    db: &Db,
    now_ms: i64,
    draft: &NewDraft<'_>,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    sqlx::query(
        "INSERT INTO applications (id, ente_code, service_code, form_version, applicant_cf, status, answers, \
         current_step, consent_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'bozza', $6, 1, $7, $7, $7)",
    )
    .bind(&id)
    .bind(draft.ente_code)
    .bind(draft.service_code)
    .bind(i64::from(draft.form_version))
    .bind(draft.applicant_cf)
    .bind(json(draft.answers))
    .bind(now_ms)
    .execute(&db.pool)
    .await?;
    Ok(id)
}

/// Saves a draft's answers and the step to resume at. False when it is no longer a draft.
pub async fn save_draft(
    db: &Db,
    now_ms: i64,
    id: &str,
    answers: &Answers,
    step: usize,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE applications SET answers = $1, current_step = $2, updated_at = $3 WHERE id = $4 AND status = 'bozza'",
    )
    .bind(json(answers))
    .bind(step as i64)
    .bind(now_ms)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete_draft(db: &Db, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM applications WHERE id = $1 AND status = 'bozza'")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A code printed on the receipt: 80 random bits in four groups, without look-alike characters.
fn verification_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let chars: Vec<char> = (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// What the submission needs besides the draft.
pub struct Submission<'a> {
    /// The draft's ente and service, as read with it.
    pub ente_code: &'a str,
    pub service_code: &'a str,
    pub applicant_cf: &'a str,
    pub applicant_name: &'a str,
    pub ente_name: &'a str,
    pub service_title: &'a str,
    pub form_version: u32,
    pub term_days: u32,
    pub answers: &'a Answers,
    pub summary: Vec<super::form::SummarySection>,
    pub declarations: Vec<String>,
    /// The label of each attachment slot, by slot id, for the receipt.
    pub slot_labels: Vec<(String, String)>,
    /// Who sends it for the applicant, if not the applicant.
    pub delegate: Option<SnapshotDelegate>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Sent now, with this numero di pratica.
    New(String),
    /// Already sent before (a double click, a retried request): nothing new was created.
    Already,
}

/// Sends a draft, in one transaction: the numero di pratica (gapless per ente and year), the status
/// `inviata` and its history row, the frozen snapshot, and the outbox event for the CSI.
pub async fn submit(
    db: &Db,
    now_ms: i64,
    id: &str,
    s: &Submission<'_>,
) -> Result<Option<Submitted>, sqlx::Error> {
    let today = rome_date(now_ms);
    let year = today.year();
    let due = today + Duration::days(i64::from(s.term_days));
    let mut tx = db.pool.begin().await?;
    // The number first (on SQLite this write takes the lock at once), then the draft claimed with
    // it: a second request for the same draft finds nothing to claim and rolls back, number
    // included, so numbers stay gapless and the replay creates nothing.
    let (seq,): (i64,) = sqlx::query_as(
        "INSERT INTO application_counters (ente_code, year, last) VALUES ($1, $2, 1) \
         ON CONFLICT (ente_code, year) DO UPDATE SET last = application_counters.last + 1 RETURNING last",
    )
    .bind(s.ente_code)
    .bind(i64::from(year))
    .fetch_one(&mut *tx)
    .await?;
    let numero = format!("{year}/{seq:06}");
    let code = verification_code();
    // The documents accepted for the draft: the receipt lists them, the CSI hears of them.
    let documents = crate::documents::accepted(&mut tx, id, None).await?;
    let attachments = documents
        .iter()
        .map(|d| SnapshotAttachment {
            slot: d.slot.clone(),
            slot_label: s
                .slot_labels
                .iter()
                .find(|(slot, _)| *slot == d.slot)
                .map(|(_, label)| label.clone())
                .unwrap_or_default(),
            name: d.label.clone(),
            size: u64::try_from(d.size).unwrap_or(0),
            sha256: d.sha256.clone(),
        })
        .collect();
    let snapshot = Snapshot {
        numero: numero.clone(),
        ente_code: s.ente_code.to_string(),
        ente_name: s.ente_name.to_string(),
        service_code: s.service_code.to_string(),
        service_title: s.service_title.to_string(),
        form_version: s.form_version,
        submitted_at: now_ms,
        applicant_cf: s.applicant_cf.to_string(),
        applicant_name: s.applicant_name.to_string(),
        answers: s.answers.clone(),
        summary: s.summary.clone(),
        declarations: s.declarations.clone(),
        attachments,
        due_date: due.to_string(),
        delegate: s.delegate.clone(),
    };
    let snapshot_json =
        serde_json::to_string(&snapshot).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let claimed = sqlx::query(
        "UPDATE applications SET status = 'inviata', submitted_at = $1, updated_at = $1, \
         numero_year = $2, numero_seq = $3, numero = $4, snapshot = $5, answers = $6, \
         verification_code = $7, due_date = $8, form_version = $9, delegate_cf = $14 \
         WHERE id = $10 AND applicant_cf = $11 AND ente_code = $12 AND service_code = $13 AND status = 'bozza'",
    )
    .bind(now_ms)
    .bind(i64::from(year))
    .bind(seq)
    .bind(&numero)
    .bind(&snapshot_json)
    .bind(json(s.answers))
    .bind(&code)
    .bind(due.to_string())
    .bind(i64::from(s.form_version))
    .bind(id)
    .bind(s.applicant_cf)
    .bind(s.ente_code)
    .bind(s.service_code)
    .bind(s.delegate.as_ref().map(|d| d.cf.as_str()))
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() != 1 {
        tx.rollback().await?;
        let existing = get(db, id).await?;
        return Ok(existing
            .filter(|a| a.applicant_cf == s.applicant_cf && a.numero.is_some())
            .map(|_| Submitted::Already));
    }
    sqlx::query(
        "INSERT INTO application_history (application_id, from_status, to_status, at, actor_kind, actor_cf) \
         VALUES ($1, 'bozza', 'inviata', $2, 'cittadino', $3)",
    )
    .bind(id)
    .bind(now_ms)
    .bind(s.delegate.as_ref().map_or(s.applicant_cf, |d| d.cf.as_str()))
    .execute(&mut *tx)
    .await?;
    let mut event = serde_json::json!({
        "pratica": id,
        "numero": numero,
        "ente": s.ente_code,
        "service": s.service_code,
        "form_version": s.form_version,
        "submitted_at": now_ms,
        "applicant_cf": s.applicant_cf,
        "answers": s.answers,
        "due_date": due.to_string(),
    });
    if let Some(d) = &s.delegate {
        event["presentata_da"] = serde_json::json!({ "cf": d.cf, "ruolo": d.role });
    }
    crate::csi::outbox(&mut tx, now_ms, "pratica", "pratica.inviata", id, &event).await?;
    crate::documents::tell_csi(&mut tx, now_ms, id, s.ente_code, &documents).await?;
    let receipt = crate::alerts::Alert::new(
        crate::alerts::Kind::Ricevuta,
        s.applicant_cf,
        id,
        format!("ricevuta:{id}"),
    );
    crate::alerts::schedule(&mut tx, now_ms, now_ms, &receipt).await?;
    tx.commit().await?;
    Ok(Some(Submitted::New(numero)))
}

/// One row of a pratica's history, as the citizen sees it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub at: i64,
    pub from: Option<String>,
    pub to: String,
    pub actor_kind: String,
    pub reason: Option<String>,
    /// Who made a citizen's change for the applicant (name, or codice fiscale).
    pub on_behalf_by: Option<String>,
}

pub async fn history(db: &Db, id: &str) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    type Row = (
        i64,
        Option<String>,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    // A citizen's change made by someone else (a delegate, a representative) names them.
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT h.at, h.from_status, h.to_status, h.actor_kind, h.reason, \
         CASE WHEN h.actor_kind = 'cittadino' AND h.actor_cf <> a.applicant_cf THEN h.actor_cf END, \
         (SELECT p.given_name || ' ' || p.family_name FROM people p WHERE p.cf = h.actor_cf) \
         FROM application_history h JOIN applications a ON a.id = h.application_id \
         WHERE h.application_id = $1 ORDER BY h.id",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(at, from, to, actor_kind, reason, on_behalf, name)| HistoryEntry {
                at,
                from,
                to,
                actor_kind,
                reason,
                on_behalf_by: on_behalf.map(|cf| name.unwrap_or(cf)),
            },
        )
        .collect())
}

/// A request for more documents.
#[derive(Debug, Clone)]
pub struct DocumentRequest {
    pub message: String,
    pub deadline: Option<Date>,
    pub requested_at: i64,
    pub answered_at: Option<i64>,
    pub answer: Option<String>,
}

pub async fn requests(db: &Db, id: &str) -> Result<Vec<DocumentRequest>, sqlx::Error> {
    type Row = (String, String, i64, Option<i64>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT message, deadline, requested_at, answered_at, answer FROM application_requests \
         WHERE application_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(message, deadline, requested_at, answered_at, answer)| DocumentRequest {
                message,
                deadline: super::form::parse_date(&deadline),
                requested_at,
                answered_at,
                answer,
            },
        )
        .collect())
}

/// Keeps the citizen's rating of the service (once per pratica) and tells the CSI.
pub async fn rate(
    db: &Db,
    now_ms: i64,
    app: &Application,
    rating: i64,
    detail: &str,
    comment: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE applications SET rating = $1, rating_detail = $2, rating_comment = $3 \
         WHERE id = $4 AND status <> 'bozza' AND rating IS NULL",
    )
    .bind(rating)
    .bind(detail)
    .bind(comment)
    .bind(&app.id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    let event = serde_json::json!({
        "pratica": app.id,
        "ente": app.ente_code,
        "servizio": app.service_code,
        "stelle": rating,
        "dettaglio": detail,
        "commento": comment,
        "at": now_ms,
    });
    crate::csi::outbox(
        &mut tx,
        now_ms,
        "pratica",
        "servizio.valutazione",
        &app.id,
        &event,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// What the public verification page may show of a receipt: nothing personal.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub numero: String,
    pub ente_name: String,
    pub service_title: String,
    pub submitted_at: i64,
    pub fingerprint: String,
}

pub async fn verify(db: &Db, code: &str) -> Result<Option<Verified>, sqlx::Error> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT snapshot FROM applications WHERE verification_code = $1")
            .bind(code)
            .fetch_optional(&db.pool)
            .await?;
    Ok(row
        .and_then(|(text,)| {
            serde_json::from_str::<Snapshot>(&text)
                .ok()
                .map(|s| (text, s))
        })
        .map(|(text, s)| Verified {
            numero: s.numero,
            ente_name: s.ente_name,
            service_title: s.service_title,
            submitted_at: s.submitted_at,
            fingerprint: fingerprint(&text),
        }))
}

/// The SHA-256 of the snapshot as stored, printed on the receipt and shown by the verification page.
pub fn fingerprint(snapshot_json: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(snapshot_json.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
