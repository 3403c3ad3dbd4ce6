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

/// The ente of the person's most recent application (a draft included): the comune they applied to
/// before, offered first next time. `None` for someone who never applied.
pub async fn last_ente(db: &Db, cf: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT ente_code FROM applications WHERE applicant_cf = $1 ORDER BY consent_at DESC LIMIT 1",
    )
    .bind(cf)
    .fetch_optional(&db.pool)
    .await
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
#[derive(Clone)]
pub struct Submission {
    /// The draft's ente and service, as read with it.
    pub ente_code: String,
    pub service_code: String,
    pub applicant_cf: String,
    pub applicant_name: String,
    pub service_title: String,
    pub form_version: u32,
    pub term_days: u32,
    pub answers: Answers,
    pub summary: Vec<super::form::SummarySection>,
    pub declarations: Vec<String>,
    /// The label of each attachment slot, by slot id, for the receipt.
    pub slot_labels: Vec<(String, String)>,
    /// Who sends it for the applicant, if not the applicant.
    pub delegate: Option<SnapshotDelegate>,
}

/// A draft to send, at `now_ms`.
#[derive(Clone)]
pub struct Sending {
    pub now_ms: i64,
    pub id: String,
    pub submission: Submission,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Sent now, with this numero di pratica.
    New(String),
    /// Already sent before (a double click, a retried request): nothing new was created.
    Already,
}

/// Sends one draft: [`submit_all`] with one.
pub async fn submit(
    db: &Db,
    now_ms: i64,
    id: &str,
    s: &Submission,
) -> Result<Option<Submitted>, sqlx::Error> {
    let sending = Sending {
        now_ms,
        id: id.to_string(),
        submission: s.clone(),
    };
    let mut sent = submit_all(db, std::slice::from_ref(&sending)).await?;
    Ok(sent.pop().flatten())
}

/// Sends drafts in one transaction: for each, the numero di pratica (gapless per ente and year),
/// the status `inviata` and its history row, the frozen snapshot, the outbox events for the CSI
/// and the receipt's alert. Answers in the order of `all`: `New` with the numero, `Already` for a
/// draft sent before (a replay, or the same draft twice in `all`), `None` for a draft that is not
/// the applicant's or no longer exists. Sending many at once is how a click day is absorbed: one
/// transaction, one counter update per ente and a statement per table, whatever their number.
pub async fn submit_all(db: &Db, all: &[Sending]) -> Result<Vec<Option<Submitted>>, sqlx::Error> {
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = db.pool.begin().await?;
    // The drafts claimed first (on SQLite this write takes the lock at once): a draft already sent
    // is not claimed, and takes no number, so numbers stay gapless and a replay creates nothing.
    // `id IN (…)` names the primary key outright. (What made PostgreSQL walk an ente's drafts
    // through the triage index was missing statistics, not this statement: see bench/README.)
    let sql = format!(
        "UPDATE applications SET status = 'inviata' WHERE id IN ({}) AND status = 'bozza' AND ({}) RETURNING id",
        (0..all.len())
            .map(|i| format!("${}", 4 * i + 1))
            .collect::<Vec<_>>()
            .join(", "),
        (0..all.len())
            .map(|i| {
                let p = 4 * i;
                format!(
                    "(id = ${} AND applicant_cf = ${} AND ente_code = ${} AND service_code = ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    let mut claim = sqlx::query_scalar::<_, String>(&sql);
    for x in all {
        claim = claim
            .bind(&x.id)
            .bind(&x.submission.applicant_cf)
            .bind(&x.submission.ente_code)
            .bind(&x.submission.service_code);
    }
    let mut claimed: std::collections::HashSet<String> =
        claim.fetch_all(&mut *tx).await?.into_iter().collect();
    // In the order they came; a draft named twice is sent by the first.
    let new: Vec<&Sending> = all.iter().filter(|x| claimed.remove(&x.id)).collect();
    if new.is_empty() {
        tx.rollback().await?;
        return outcomes(db, all, &[]).await;
    }

    // The numbers: one counter update per ente and year, in a fixed order (no deadlock between
    // processes), the next `k` numbers taken at once.
    let year_of = |x: &Sending| rome_date(x.now_ms).year();
    let mut counters: std::collections::BTreeMap<(&str, i32), (i64, i64)> = Default::default();
    for x in &new {
        counters
            .entry((x.submission.ente_code.as_str(), year_of(x)))
            .or_default()
            .0 += 1;
    }
    for ((ente, year), (count, first)) in counters.iter_mut() {
        let (last,): (i64,) = sqlx::query_as(
            "INSERT INTO application_counters (ente_code, year, last) VALUES ($1, $2, $3) \
             ON CONFLICT (ente_code, year) DO UPDATE SET last = application_counters.last + excluded.last \
             RETURNING last",
        )
        .bind(*ente)
        .bind(i64::from(*year))
        .bind(*count)
        .fetch_one(&mut *tx)
        .await?;
        *first = last - *count + 1;
    }

    let ente_codes: Vec<&str> = counters.keys().map(|(e, _)| *e).collect();
    let sql = format!(
        "SELECT code, name FROM enti WHERE code IN ({})",
        crate::db::placeholders(1, ente_codes.len())
    );
    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
    for code in &ente_codes {
        query = query.bind(*code);
    }
    let names: std::collections::HashMap<String, String> =
        query.fetch_all(&mut *tx).await?.into_iter().collect();
    // The documents accepted for the drafts: the receipt lists them, the CSI hears of them.
    let ids: Vec<&str> = new.iter().map(|x| x.id.as_str()).collect();
    let documents = crate::documents::accepted(&mut tx, &ids, None).await?;

    struct Row {
        year: i32,
        seq: i64,
        numero: String,
        snapshot: String,
        code: String,
        due: String,
    }
    let mut rows = Vec::with_capacity(new.len());
    // The CSI's events, in order: each pratica's, then its documents'.
    let mut events = Vec::with_capacity(new.len() + documents.len());
    for x in &new {
        let s = &x.submission;
        let today = rome_date(x.now_ms);
        let year = today.year();
        let counter = counters
            .get_mut(&(s.ente_code.as_str(), year))
            .ok_or_else(|| sqlx::Error::Protocol("no counter for a claimed draft".into()))?;
        let seq = counter.1;
        counter.1 += 1;
        let numero = format!("{year}/{seq:06}");
        let due = (today + Duration::days(i64::from(s.term_days))).to_string();
        let its_documents: Vec<_> = documents
            .iter()
            .filter(|d| d.application_id == x.id)
            .collect();
        let attachments = its_documents
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
            ente_code: s.ente_code.clone(),
            ente_name: names
                .get(&s.ente_code)
                .cloned()
                .unwrap_or_else(|| s.ente_code.clone()),
            service_code: s.service_code.clone(),
            service_title: s.service_title.clone(),
            form_version: s.form_version,
            submitted_at: x.now_ms,
            applicant_cf: s.applicant_cf.clone(),
            applicant_name: s.applicant_name.clone(),
            answers: s.answers.clone(),
            summary: s.summary.clone(),
            declarations: s.declarations.clone(),
            attachments,
            due_date: due.clone(),
            delegate: s.delegate.clone(),
        };
        let mut event = serde_json::json!({
            "pratica": x.id,
            "numero": numero,
            "ente": s.ente_code,
            "service": s.service_code,
            "form_version": s.form_version,
            "submitted_at": x.now_ms,
            "applicant_cf": s.applicant_cf,
            "answers": s.answers,
            "due_date": due,
        });
        if let Some(d) = &s.delegate {
            event["presentata_da"] = serde_json::json!({ "cf": d.cf, "ruolo": d.role });
        }
        events.push(crate::csi::Event {
            at_ms: x.now_ms,
            aggregate_type: "pratica",
            event_type: "pratica.inviata",
            aggregate_id: &x.id,
            payload: event,
        });
        events.extend(
            its_documents
                .into_iter()
                .map(|d| crate::documents::csi_event(x.now_ms, &s.ente_code, d)),
        );
        rows.push(Row {
            year,
            seq,
            snapshot: serde_json::to_string(&snapshot)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            numero,
            code: verification_code(),
            due,
        });
    }

    let sql = format!(
        "WITH sent (id, at, year, seq, numero, snapshot, answers, code, due, version, delegate) AS (VALUES {}) \
         UPDATE applications SET submitted_at = sent.at, updated_at = sent.at, numero_year = sent.year, \
         numero_seq = sent.seq, numero = sent.numero, snapshot = sent.snapshot, answers = sent.answers, \
         verification_code = sent.code, due_date = sent.due, form_version = sent.version, delegate_cf = sent.delegate \
         FROM sent WHERE applications.id = sent.id",
        crate::db::value_rows(new.len(), 11)
    );
    let mut update = sqlx::query(&sql);
    for (x, r) in new.iter().zip(&rows) {
        update = update
            .bind(&x.id)
            .bind(x.now_ms)
            .bind(i64::from(r.year))
            .bind(r.seq)
            .bind(&r.numero)
            .bind(&r.snapshot)
            .bind(json(&x.submission.answers))
            .bind(&r.code)
            .bind(&r.due)
            .bind(i64::from(x.submission.form_version))
            .bind(x.submission.delegate.as_ref().map(|d| d.cf.clone()));
    }
    update.execute(&mut *tx).await?;

    let sql = format!(
        "INSERT INTO application_history (application_id, from_status, to_status, at, actor_kind, actor_cf) VALUES {}",
        (0..new.len())
            .map(|i| format!("(${}, 'bozza', 'inviata', ${}, 'cittadino', ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut history = sqlx::query(&sql);
    for x in &new {
        let s = &x.submission;
        history = history
            .bind(&x.id)
            .bind(x.now_ms)
            .bind(s.delegate.as_ref().map_or(&s.applicant_cf, |d| &d.cf));
    }
    history.execute(&mut *tx).await?;

    crate::csi::outbox_all(&mut tx, &events).await?;
    let receipts: Vec<(i64, crate::alerts::Alert)> = new
        .iter()
        .map(|x| {
            let alert = crate::alerts::Alert::new(
                crate::alerts::Kind::Ricevuta,
                &x.submission.applicant_cf,
                &x.id,
                format!("ricevuta:{}", x.id),
            );
            (x.now_ms, alert)
        })
        .collect();
    let now_ms = new.iter().map(|x| x.now_ms).max().unwrap_or_default();
    crate::alerts::schedule_all(&mut tx, now_ms, &receipts).await?;
    tx.commit().await?;

    let numeri: Vec<(&str, String)> = new
        .iter()
        .zip(rows)
        .map(|(x, r)| (x.id.as_str(), r.numero))
        .collect();
    outcomes(db, all, &numeri).await
}

/// The answers of [`submit_all`] once `numeri` (draft, numero) were sent: each of those `New`
/// with its numero, the first time it is named; the others `Already` when the applicant's draft
/// carries a numero, `None` otherwise.
async fn outcomes(
    db: &Db,
    all: &[Sending],
    numeri: &[(&str, String)],
) -> Result<Vec<Option<Submitted>>, sqlx::Error> {
    let mut answered = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(all.len());
    for x in all {
        let new = numeri.iter().find(|(id, _)| *id == x.id);
        out.push(match new {
            Some((id, numero)) if answered.insert(*id) => Some(Submitted::New(numero.clone())),
            _ => get(db, &x.id)
                .await?
                .filter(|a| a.applicant_cf == x.submission.applicant_cf && a.numero.is_some())
                .map(|_| Submitted::Already),
        });
    }
    Ok(out)
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
