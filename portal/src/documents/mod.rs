//! Documents a citizen uploads for a pratica: streamed to a temporary file (never held whole in
//! memory) under the per-file limit and the quotas, the type decided by the content, inspected in
//! a child process with limits (`sandbox`, the `intake` crate), then kept encrypted (`vault`).
//! Downloads go through one handler that checks who is asking.
//!
//! Routes: the page of one attachment slot of a pratica (list, upload, remove), the upload itself
//! (multipart; a plain form works without JavaScript, `static/js/upload.js` adds a progress bar),
//! and `GET /documenti/{id}`.

pub mod clamd;
pub mod ocr;
pub mod paper;
pub mod purge;
pub mod sandbox;
pub mod storage;
pub mod vault;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tera::Context;
use tokio::io::AsyncWriteExt;

use crate::applications::form::FieldKind;
use crate::applications::status::Status;
use crate::applications::store::Application;
use crate::auth::access::{authorize, Access, Action};
use crate::auth::{see_other, Principal};
use crate::db::Db;
use crate::delegations::Scope;
use crate::domain::CodiceFiscale;
use crate::server::AppState;
use crate::web::error::AppError;
use crate::web::templates::render_status;

const MB: u64 = 1024 * 1024;

/// A document as the pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub id: String,
    pub application_id: String,
    pub owner_cf: String,
    pub slot: String,
    pub label: String,
    pub kind: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub status: String,
    pub reason: Option<String>,
    pub pages: Option<i32>,
    pub created_at: i64,
    /// `in_lettura`, `letto`, `illeggibile`, `da_verificare` (a standard form whose fields could
    /// not be read: for the office to check by hand), or nothing to read.
    pub ocr_status: Option<String>,
    /// Why it could not be read (`illeggibile`, `da_verificare`).
    pub ocr_reason: Option<String>,
    pub ocr_confidence: Option<i32>,
    /// The standard form recognised, and whether its signature box holds ink.
    pub form_code: Option<String>,
    pub signed: Option<bool>,
    /// The fields read from a standard form.
    pub fields: Vec<FieldRow>,
}

/// A field read from a standard form, as kept.
#[derive(Debug, Clone, Serialize)]
pub struct FieldRow {
    pub field: String,
    pub label: String,
    pub value: String,
    pub confidence: i32,
    pub problem: Option<String>,
    pub expected: Option<String>,
    pub corrected: Option<String>,
    pub confirmed: bool,
    /// The picture of the box is kept (its reading had a problem): `/documenti/{id}/campi/{field}`.
    pub has_crop: bool,
}

/// A document's state (`documents.status`) as the citizen reads it.
pub fn status_label(status: &str) -> &'static str {
    match status {
        "accettato" => "Accettato",
        "rifiutato" => "Rifiutato",
        _ => "In verifica",
    }
}

impl Document {
    pub fn status_label(&self) -> &'static str {
        status_label(&self.status)
    }

    pub fn reading_label(&self) -> Option<&'static str> {
        reading_label(self.ocr_status.as_deref())
    }
}

/// Where a document's reading is (`documents.ocr_status`): "In lettura", "Letto", "Non
/// leggibile", "Modulo da controllare"; nothing when there is nothing to read.
pub fn reading_label(ocr_status: Option<&str>) -> Option<&'static str> {
    match ocr_status {
        Some("in_lettura") => Some("In lettura"),
        Some("letto") => Some("Letto"),
        Some("illeggibile") => Some("Non leggibile"),
        Some("da_verificare") => Some("Modulo da controllare"),
        _ => None,
    }
}

#[derive(Serialize)]
struct DocumentView<'a> {
    #[serde(flatten)]
    doc: &'a Document,
    status_label: &'static str,
    reading_label: Option<&'static str>,
    size_label: String,
}

pub fn size_label(bytes: i64) -> String {
    if bytes >= MB as i64 {
        format!("{:.1} MB", bytes as f64 / MB as f64).replace('.', ",")
    } else {
        format!("{} kB", (bytes + 1023) / 1024)
    }
}

fn views(docs: &[Document]) -> Vec<DocumentView<'_>> {
    docs.iter()
        .map(|doc| DocumentView {
            doc,
            status_label: doc.status_label(),
            reading_label: doc.reading_label(),
            size_label: size_label(doc.size),
        })
        .collect()
}

const COLUMNS: &str =
    "id, application_id, owner_cf, slot, label, kind, size, sha256, status, reason, \
    pages, created_at, ocr_status, ocr_confidence, form_code, signed, ocr_reason";

/// The documents of a pratica still kept (not removed), oldest first, with the fields read from
/// the standard forms among them.
pub async fn for_application(db: &Db, application_id: &str) -> Result<Vec<Document>, sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM documents WHERE application_id = $1 AND removed_at IS NULL ORDER BY created_at, id"
    ))
    .bind(application_id)
    .fetch_all(&db.pool)
    .await?;
    let mut docs = rows
        .iter()
        .map(|r| {
            Ok(Document {
                id: r.try_get("id")?,
                application_id: r.try_get("application_id")?,
                owner_cf: r.try_get("owner_cf")?,
                slot: r.try_get("slot")?,
                label: r.try_get("label")?,
                kind: r.try_get("kind")?,
                size: r.try_get("size")?,
                sha256: r.try_get("sha256")?,
                status: r.try_get("status")?,
                reason: r.try_get("reason")?,
                pages: r.try_get("pages")?,
                created_at: r.try_get("created_at")?,
                ocr_status: r.try_get("ocr_status")?,
                ocr_reason: r.try_get("ocr_reason")?,
                ocr_confidence: r.try_get("ocr_confidence")?,
                form_code: r.try_get("form_code")?,
                signed: r.try_get::<Option<i32>, _>("signed")?.map(|s| s != 0),
                fields: Vec::new(),
            })
        })
        .collect::<Result<Vec<Document>, sqlx::Error>>()?;
    type FieldTuple = (
        String,
        String,
        String,
        String,
        i32,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let fields: Vec<FieldTuple> = sqlx::query_as(
        "SELECT f.document_id, f.field, f.label, f.value, f.confidence, f.problem, f.expected, f.corrected, f.confirmed_at, f.crop_storage \
         FROM document_fields f JOIN documents d ON d.id = f.document_id \
         WHERE d.application_id = $1 ORDER BY f.document_id, f.position",
    )
    .bind(application_id)
    .fetch_all(&db.pool)
    .await?;
    for (doc, field, label, value, confidence, problem, expected, corrected, confirmed, crop) in
        fields
    {
        if let Some(d) = docs.iter_mut().find(|d| d.id == doc) {
            d.fields.push(FieldRow {
                field,
                label,
                value,
                confidence,
                problem,
                expected,
                corrected,
                confirmed: confirmed.is_some(),
                has_crop: crop.is_some(),
            });
        }
    }
    Ok(docs)
}

/// An accepted document of a pratica, as the receipt and the CSI see it.
pub struct Accepted {
    pub application_id: String,
    pub id: String,
    pub slot: String,
    pub label: String,
    pub kind: Option<String>,
    pub pages: Option<i32>,
    pub size: i64,
    pub sha256: String,
}

/// The accepted documents of the pratiche `application_ids` (`only`: just that document), oldest
/// first, read inside `tx`.
pub async fn accepted(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    application_ids: &[&str],
    only: Option<&str>,
) -> Result<Vec<Accepted>, sqlx::Error> {
    use sqlx::Row;
    if application_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT application_id, id, slot, label, kind, pages, size, sha256 FROM documents \
         WHERE application_id IN ({}) AND status = 'accettato' AND removed_at IS NULL \
         AND (CAST($1 AS TEXT) IS NULL OR id = CAST($1 AS TEXT)) ORDER BY created_at, id",
        crate::db::placeholders(2, application_ids.len())
    );
    let mut query = sqlx::query(&sql).bind(only);
    for id in application_ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| {
            Ok(Accepted {
                application_id: r.try_get("application_id")?,
                id: r.try_get("id")?,
                slot: r.try_get("slot")?,
                label: r.try_get("label")?,
                kind: r.try_get("kind")?,
                pages: r.try_get("pages")?,
                size: r.try_get("size")?,
                sha256: r.try_get("sha256")?,
            })
        })
        .collect()
}

/// The `documento.ricevuto` event of an accepted document for the CSI of `ente`: the document
/// travels by reference, `GET /csi/documenti/<id>` with the CSI's own (short-lived) token, never
/// inside the event.
pub fn csi_event<'a>(now_ms: i64, ente: &str, d: &'a Accepted) -> crate::csi::Event<'a> {
    crate::csi::Event {
        at_ms: now_ms,
        aggregate_type: "pratica",
        event_type: "documento.ricevuto",
        aggregate_id: &d.application_id,
        payload: serde_json::json!({
            "pratica": d.application_id,
            "ente": ente,
            "documento": d.id,
            "allegato": d.slot,
            "nome": d.label,
            "tipo": d.kind,
            "pagine": d.pages,
            "dimensione": d.size,
            "sha256": d.sha256,
            "href": format!("/csi/documenti/{}", d.id),
            "at": now_ms,
        }),
    }
}

/// The name given to the file, as a label only: the last path component, without control,
/// reordering or invisible characters, at most 120 characters; never used as a path.
pub fn clean_label(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !crate::domain::text::is_hidden(*c) && !c.is_control())
        .take(120)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "documento".into()
    } else {
        cleaned
    }
}

/// The pratica, if it is the caller's and its documents can still change (a draft, or a request
/// for more documents open), and the attachment slot of its form.
async fn uploadable(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    id: &str,
    slot: &str,
) -> Result<(Application, String), AppError> {
    let (subject, app, service) = crate::applications::flow::owned(
        state,
        req,
        principal,
        id,
        &[Scope::Domande, Scope::Integrazioni],
    )
    .await?;
    // A draft's documents are part of the application; the ones sent later answer a request.
    subject.require(if app.status == Status::Bozza {
        Scope::Domande
    } else {
        Scope::Integrazioni
    })?;
    let field = service
        .form
        .steps
        .iter()
        .flat_map(|s| s.fields.iter())
        .find(|f| f.id == slot && f.kind == FieldKind::Attachment)
        .ok_or(AppError::NotFound)?;
    Ok((app, field.label.clone()))
}

fn can_change(app: &Application) -> bool {
    matches!(app.status, Status::Bozza | Status::InAttesaDiIntegrazioni)
}

#[derive(Debug, Deserialize)]
struct SlotQuery {
    esito: Option<String>,
    passo: Option<usize>,
}

#[get("/domande/{id}/allegati/{slot}")]
async fn slot_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, String)>,
    query: web::Query<SlotQuery>,
) -> Result<HttpResponse, AppError> {
    let (id, slot) = path.into_inner();
    let (app, label) = uploadable(&state, &req, &principal, &id, &slot).await?;
    slot_response(
        &state,
        &req,
        &app,
        (&slot, &label),
        query.passo,
        query.esito.as_deref(),
    )
    .await
}

async fn slot_response(
    state: &AppState,
    req: &HttpRequest,
    app: &Application,
    (slot, label): (&str, &str),
    step: Option<usize>,
    outcome: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let docs: Vec<Document> = for_application(&state.db, &app.id)
        .await?
        .into_iter()
        .filter(|d| d.slot == slot)
        .collect();
    let csrf = crate::web::session::current(req)
        .map(|s| s.data.csrf)
        .unwrap_or_default();
    let mut ctx = Context::new();
    ctx.insert("app_id", &app.id);
    ctx.insert("numero", &app.numero);
    ctx.insert("slot", slot);
    ctx.insert("label", label);
    ctx.insert("documents", &views(&docs));
    ctx.insert(
        "forms",
        &state
            .paper_forms
            .of_service(&app.service_code)
            .iter()
            .map(|f| (f.code.as_str(), f.title.as_str()))
            .collect::<Vec<_>>(),
    );
    ctx.insert("can_change", &can_change(app));
    ctx.insert("outcome", &outcome);
    // URL-safe base64: it goes in the address as it is.
    ctx.insert("upload_csrf", &csrf);
    ctx.insert("max_mb", &state.config.documents.max_file_mb);
    let back = match (app.status, step) {
        (Status::Bozza, Some(n)) => format!("/domande/{}/passo/{n}", app.id),
        (Status::Bozza, None) => format!("/domande/{}/passo/{}", app.id, app.current_step.max(1)),
        _ => format!("/domande/{}", app.id),
    };
    ctx.insert("back", &back);
    ctx.insert("passo", &step);
    render_status(state, req, "documents/slot.html", ctx, StatusCode::OK)
}

/// Bytes and files of the pratica and of the citizen, counting what is kept and not refused.
async fn usage(db: &Db, application_id: &str, cf: &str) -> Result<(i64, i64, i64), sqlx::Error> {
    let (files, bytes): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM documents WHERE application_id = $1 AND removed_at IS NULL AND status <> 'rifiutato'",
    )
    .bind(application_id)
    .fetch_one(&db.pool)
    .await?;
    let citizen: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM documents WHERE owner_cf = $1 AND removed_at IS NULL AND status <> 'rifiutato'",
    )
    .bind(cf)
    .fetch_one(&db.pool)
    .await?;
    Ok((files, bytes.unwrap_or(0), citizen.unwrap_or(0)))
}

/// What an upload answers: the slot page again (a plain form), or JSON for the script.
fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("application/json"))
}

#[derive(Serialize)]
struct UploadAnswer<'a> {
    stato: &'a str,
    motivo: Option<&'a str>,
}

/// Removes a temporary file when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A document row about to be written, `in_verifica`.
struct NewDocument<'a> {
    id: &'a str,
    application_id: &'a str,
    owner_cf: &'a str,
    slot: &'a str,
    label: &'a str,
    size: i64,
    sha256: &'a str,
}

enum Reserved {
    Yes,
    TooManyFiles(i64),
    NoRoom,
}

/// The turns of the reservations in this process, by citizen (striped).
static RESERVATIONS: std::sync::LazyLock<Vec<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(|| (0..64).map(|_| tokio::sync::Mutex::new(())).collect());

fn stripe(cf: &str) -> usize {
    cf.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    }) % 64
}

/// Writes the document's row (`in_verifica`) only if the pratica's file and byte quotas and the
/// citizen's byte quota still have room for it: the check and the write are one statement, and
/// on PostgreSQL the citizen's uploads take turns on a lock, so parallel uploads cannot pass the
/// quotas together.
async fn reserve(
    db: &Db,
    doc: &NewDocument<'_>,
    limits: &crate::config::DocumentsConfig,
    now: i64,
) -> Result<Reserved, AppError> {
    // In this process a citizen's reservations take turns before they take a connection, so
    // that parallel uploads never hold the pool while they wait for each other.
    let _turn = RESERVATIONS[stripe(doc.owner_cf)].lock().await;
    let mut tx = db.pool.begin().await?;
    if db.backend == crate::config::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('documents:' || $1))")
            .bind(doc.owner_cf)
            .execute(&mut *tx)
            .await?;
    }
    let kept = "removed_at IS NULL AND status <> 'rifiutato'";
    let written = sqlx::query(&format!(
        "INSERT INTO documents (id, application_id, owner_cf, slot, label, size, sha256, status, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, 'in_verifica', $8 \
         WHERE (SELECT COUNT(*) FROM documents WHERE application_id = $2 AND {kept}) < $9 \
           AND (SELECT COALESCE(SUM(size), 0) FROM documents WHERE application_id = $2 AND {kept}) + $6 <= $10 \
           AND (SELECT COALESCE(SUM(size), 0) FROM documents WHERE owner_cf = $3 AND {kept}) + $6 <= $11"
    ))
    .bind(doc.id)
    .bind(doc.application_id)
    .bind(doc.owner_cf)
    .bind(doc.slot)
    .bind(doc.label)
    .bind(doc.size)
    .bind(doc.sha256)
    .bind(now)
    .bind(limits.max_pratica_files)
    .bind(i64::try_from(limits.max_pratica_mb * MB).unwrap_or(i64::MAX))
    .bind(i64::try_from(limits.max_citizen_mb * MB).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if written.rows_affected() == 1 {
        return Ok(Reserved::Yes);
    }
    let (files, _, _) = usage(db, doc.application_id, doc.owner_cf).await?;
    Ok(if files >= limits.max_pratica_files {
        Reserved::TooManyFiles(files)
    } else {
        Reserved::NoRoom
    })
}

const NOT_SAVED: &str = "Non è stato possibile salvare il documento. Riprova tra qualche minuto.";

/// Encrypts and keeps the file at `path` under `key`: its storage id and wrapped key.
async fn store_file(
    state: &AppState,
    key: &str,
    path: &std::path::Path,
) -> Result<(String, Vec<u8>), AppError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| AppError::Internal(format!("stored copy: {e}")))?;
    state
        .vault
        .store(key, file)
        .await
        .map_err(|e| AppError::Internal(format!("vault: {e}")))
}

/// How an accepted document is read.
enum Reading {
    /// A PDF's text layer, read at inspection.
    Text(String),
    /// A photo or a scan: by the OCR job.
    Ocr,
    None,
}

struct Acceptance<'a> {
    id: &'a str,
    kind: intake::Kind,
    pages: usize,
    /// The file's storage id and wrapped key, then each scanned page's.
    stored: &'a [(String, Vec<u8>)],
    scans: &'a [u32],
    reading: Reading,
}

/// Marks the document accepted, with its scanned pages, its reading (text, or the OCR job) and,
/// once the pratica was sent, the CSI's event: one transaction.
async fn accept(
    state: &AppState,
    app: &Application,
    doc: Acceptance<'_>,
    now: i64,
) -> Result<(), AppError> {
    let Some(((storage_id, wrapped), pages)) = doc.stored.split_first() else {
        return Err(AppError::Internal("nothing stored".into()));
    };
    let (ocr_status, text) = match &doc.reading {
        Reading::Text(text) => (Some("letto"), Some(text.as_str())),
        Reading::Ocr => (Some("in_lettura"), None),
        Reading::None => (None, None),
    };
    let mut tx = state.db.pool.begin().await?;
    sqlx::query(
        "UPDATE documents SET status = 'accettato', kind = $2, pages = $3, storage_id = $4, wrapped_key = $5, \
         ocr_status = $6, ocr_text = $7 WHERE id = $1",
    )
    .bind(doc.id)
    .bind(doc.kind.extension())
    .bind(i32::try_from(doc.pages).unwrap_or(i32::MAX))
    .bind(storage_id)
    .bind(wrapped)
    .bind(ocr_status)
    .bind(text)
    .execute(&mut *tx)
    .await?;
    for (page, (storage_id, wrapped)) in doc.scans.iter().zip(pages) {
        sqlx::query(
            "INSERT INTO document_scans (document_id, page, storage_id, wrapped_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(doc.id)
        .bind(i32::try_from(*page).unwrap_or(i32::MAX))
        .bind(storage_id)
        .bind(wrapped)
        .execute(&mut *tx)
        .await?;
    }
    if matches!(doc.reading, Reading::Ocr) {
        ocr::schedule(&mut *tx, now, doc.id).await?;
    }
    if app.status != Status::Bozza {
        // An answer to a request for documents: the CSI hears of it now (a draft's documents go
        // with its submission).
        let this = accepted(&mut tx, &[&app.id], Some(doc.id)).await?;
        let events: Vec<_> = this
            .iter()
            .map(|d| csi_event(now, &app.ente_code, d))
            .collect();
        crate::csi::outbox_all(&mut tx, &events).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[post("/domande/{id}/allegati/{slot}")]
async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, String)>,
    mut payload: Multipart,
) -> Result<HttpResponse, AppError> {
    let (id, slot) = path.into_inner();
    let (app, _) = uploadable(&state, &req, &principal, &id, &slot).await?;
    let refuse = |message: String, status: StatusCode| -> Result<HttpResponse, AppError> {
        if wants_json(&req) {
            return Ok(HttpResponse::build(status).json(UploadAnswer {
                stato: "rifiutato",
                motivo: Some(&message),
            }));
        }
        Err(AppError::BadRequest(message))
    };
    if !can_change(&app) {
        return refuse(
            "Questa pratica è già stata inviata: i documenti non si possono più cambiare, salvo quando l'ufficio li richiede.".into(),
            StatusCode::CONFLICT,
        );
    }
    let limits = &state.config.documents;
    let (files, bytes, citizen_bytes) = usage(&state.db, &app.id, &app.applicant_cf).await?;
    if files >= limits.max_pratica_files {
        return refuse(
            format!("Hai già caricato {files} documenti per questa pratica, il massimo. Rimuovi quelli che non servono."),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let max_file = limits.max_file_mb * MB;
    let room = (limits.max_pratica_mb * MB)
        .saturating_sub(u64::try_from(bytes).unwrap_or(0))
        .min(
            (limits.max_citizen_mb * MB).saturating_sub(u64::try_from(citizen_bytes).unwrap_or(0)),
        );

    // The file part, streamed to a temporary file with its SHA-256 and size.
    let tmp_dir = state.config.data_dir.join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(|e| AppError::Internal(format!("tmp: {e}")))?;
    let mut received: Option<(TempFile, String, u64, String)> = None;
    while let Some(field) = payload.next().await {
        let mut field = field
            .map_err(|_| AppError::BadRequest("Il caricamento si è interrotto. Riprova.".into()))?;
        if field.name() != Some("file") {
            // Other parts are small form fields: read and ignore.
            while let Some(chunk) = field.next().await {
                chunk.map_err(|_| {
                    AppError::BadRequest("Il caricamento si è interrotto. Riprova.".into())
                })?;
            }
            continue;
        }
        let name = field
            .content_disposition()
            .and_then(|cd| cd.get_filename().map(str::to_string))
            .unwrap_or_default();
        let tmp = TempFile(tmp_dir.join(crate::web::session::random_token(16)));
        let mut out = tokio::fs::File::create(&tmp.0)
            .await
            .map_err(|e| AppError::Internal(format!("tmp: {e}")))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|_| {
                AppError::BadRequest("Il caricamento si è interrotto. Riprova.".into())
            })?;
            size += chunk.len() as u64;
            if size > max_file {
                return refuse(
                    format!("Il file supera i {} MB consentiti. Riducilo (per esempio scansionando a 200 dpi, o in bianco e nero) e ricaricalo.", limits.max_file_mb),
                    StatusCode::PAYLOAD_TOO_LARGE,
                );
            }
            if size > room {
                return refuse(
                    "Lo spazio per i documenti è esaurito. Rimuovi quelli che non servono e riprova.".into(),
                    StatusCode::PAYLOAD_TOO_LARGE,
                );
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| AppError::Internal(format!("tmp: {e}")))?;
        }
        out.flush()
            .await
            .map_err(|e| AppError::Internal(format!("tmp: {e}")))?;
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        received = Some((tmp, clean_label(&name), size, digest));
        break;
    }
    let Some((tmp, name, size, sha256)) = received else {
        return refuse(
            "Scegli un file da caricare.".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };

    let doc_id = uuid::Uuid::new_v4().to_string();
    let now = state.clock.now_ms();
    let document = NewDocument {
        id: &doc_id,
        application_id: &app.id,
        owner_cf: &app.applicant_cf,
        slot: &slot,
        label: &name,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        sha256: &sha256,
    };
    match reserve(&state.db, &document, limits, now).await? {
        Reserved::Yes => {}
        Reserved::TooManyFiles(files) => {
            return refuse(
                format!("Hai già caricato {files} documenti per questa pratica, il massimo. Rimuovi quelli che non servono."),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Reserved::NoRoom => {
            return refuse(
                "Lo spazio per i documenti è esaurito. Rimuovi quelli che non servono e riprova."
                    .into(),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
        }
    }

    let clean = TempFile(tmp.0.with_extension("clean"));
    let scanned = match &limits.clamd {
        Some(address) => clamd::scan(address, &tmp.0).await,
        None => clamd::Scan::Clean,
    };
    let verdict = match scanned {
        clamd::Scan::Refused(motivo) => intake::Verdict::Rifiutato {
            motivo: motivo.into(),
        },
        clamd::Scan::Clean => {
            // A few at a time: each child holds its file in memory.
            let _turn = state
                .inspections
                .acquire()
                .await
                .map_err(|e| AppError::Internal(format!("inspection: {e}")))?;
            sandbox::inspect(limits, &tmp.0, &clean.0)
                .await
                .map_err(|e| AppError::Internal(format!("inspection: {e}")))?
        }
    };
    let (stato, motivo) = match verdict {
        intake::Verdict::Accettato {
            kind,
            pages,
            reencoded,
            text,
            scans,
        } => {
            // A scanned PDF's page pictures, written by the child beside the clean copy: removed
            // whatever happens here.
            let pictures: Vec<TempFile> = scans
                .iter()
                .map(|page| TempFile(intake::scan_path(&clean.0, *page)))
                .collect();
            let source = if reencoded { &clean.0 } else { &tmp.0 };
            // The bytes first (synced), then the rows that point at them, in one transaction
            // with the OCR job and the CSI's event: never one without the other.
            let mut stored = Vec::with_capacity(1 + scans.len());
            let kept = async {
                stored.push(store_file(&state, &doc_id, source).await?);
                for (page, picture) in scans.iter().zip(&pictures) {
                    stored.push(
                        store_file(&state, &ocr::scan_key(&doc_id, *page), &picture.0).await?,
                    );
                }
                Ok::<_, AppError>(())
            }
            .await;
            let committed = match kept {
                Ok(()) => {
                    let reading = match (kind, text) {
                        (intake::Kind::Pdf, Some(text)) => Reading::Text(text),
                        (intake::Kind::Jpeg | intake::Kind::Png, _) | (intake::Kind::Pdf, None)
                            if state.ocr.size > 0
                                && (kind != intake::Kind::Pdf || !scans.is_empty()) =>
                        {
                            Reading::Ocr
                        }
                        _ => Reading::None,
                    };
                    accept(
                        &state,
                        &app,
                        Acceptance {
                            id: &doc_id,
                            kind,
                            pages,
                            stored: &stored,
                            scans: &scans,
                            reading,
                        },
                        now,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = committed {
                // Nothing points at the stored bytes: they go, and the document is not counted.
                for (storage_id, _) in &stored {
                    let _ = state.vault.delete(storage_id).await;
                }
                let _ = sqlx::query(
                    "UPDATE documents SET status = 'rifiutato', reason = $2 WHERE id = $1 AND status = 'in_verifica'",
                )
                .bind(&doc_id)
                .bind(NOT_SAVED)
                .execute(&state.db.pool)
                .await;
                return Err(e);
            }
            ("accettato", None)
        }
        intake::Verdict::Rifiutato { motivo } => {
            sqlx::query("UPDATE documents SET status = 'rifiutato', reason = $2 WHERE id = $1")
                .bind(&doc_id)
                .bind(&motivo)
                .execute(&state.db.pool)
                .await?;
            ("rifiutato", Some(motivo))
        }
    };
    tracing::info!(outcome = stato, size, "document uploaded");
    if wants_json(&req) {
        return Ok(HttpResponse::Ok().json(UploadAnswer {
            stato,
            motivo: motivo.as_deref(),
        }));
    }
    let passo = query_step(&req);
    Ok(see_other(&format!(
        "/domande/{}/allegati/{slot}?esito={stato}{passo}",
        app.id
    )))
}

#[post("/domande/{id}/allegati/{slot}/{doc}/rimuovi")]
async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, AppError> {
    let (id, slot, doc) = path.into_inner();
    let (app, _) = uploadable(&state, &req, &principal, &id, &slot).await?;
    if !can_change(&app) {
        return Err(AppError::BadRequest(
            "Questa pratica è già stata inviata: i documenti non si possono più cambiare.".into(),
        ));
    }
    // Removed, and its stored bytes deleted by a job queued with it.
    let now = state.clock.now_ms();
    let mut tx = state.db.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE documents SET removed_at = $1 WHERE id = $2 AND application_id = $3 AND removed_at IS NULL",
    )
    .bind(now)
    .bind(&doc)
    .bind(&app.id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    purge::schedule(&mut *tx, now, &doc).await?;
    tx.commit().await?;
    let passo = query_step(&req);
    Ok(see_other(&format!(
        "/domande/{}/allegati/{slot}?esito=rimosso{passo}",
        app.id
    )))
}

/// `&passo=N` when the request came from step N of the form (kept across the slot's actions).
fn query_step(req: &HttpRequest) -> String {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "passo")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .map(|n| format!("&passo={n}"))
        .unwrap_or_default()
}

/// An accepted document that can be sent, with what deciding who may have it needs.
pub struct Found {
    pub id: String,
    pub owner_cf: String,
    pub application_id: String,
    pub application_status: String,
    /// The pratica's number, once sent.
    pub numero: Option<String>,
    pub ente_code: String,
    pub label: String,
    pub kind: Option<intake::Kind>,
    storage_id: String,
    wrapped: Vec<u8>,
}

impl Found {
    /// Where the encrypted copy is, and its wrapped key.
    pub fn stored(&self) -> (&str, &[u8]) {
        (self.storage_id.as_str(), self.wrapped.as_slice())
    }
}

/// The accepted, stored document `id`, if there is one.
pub async fn find(db: &Db, id: &str) -> Result<Option<Found>, sqlx::Error> {
    use sqlx::Row;
    // Ids are UUIDs: anything else is no document (and never reaches the database).
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT d.owner_cf, d.application_id, a.status, a.numero, a.ente_code, d.label, d.kind, d.storage_id, d.wrapped_key \
         FROM documents d JOIN applications a ON a.id = d.application_id \
         WHERE d.id = $1 AND d.status = 'accettato' AND d.removed_at IS NULL AND d.storage_id IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let kind: Option<String> = r.try_get("kind")?;
    Ok(Some(Found {
        id: id.to_string(),
        owner_cf: r.try_get("owner_cf")?,
        application_id: r.try_get("application_id")?,
        application_status: r.try_get("status")?,
        numero: r.try_get("numero")?,
        ente_code: r.try_get("ente_code")?,
        label: r.try_get("label")?,
        kind: kind.as_deref().and_then(intake::Kind::from_extension),
        storage_id: r.try_get("storage_id")?,
        wrapped: r
            .try_get::<Option<Vec<u8>>, _>("wrapped_key")?
            .unwrap_or_default(),
    }))
}

#[derive(Debug, Deserialize)]
struct DownloadQuery {
    /// Shown in the browser (PDFs and images) instead of saved.
    vedi: Option<String>,
}

/// The document, decrypted as it is sent: to its owner, or to staff of the pratica's ente (an
/// audited read). To anyone else it does not exist.
#[get("/documenti/{id}")]
async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<DownloadQuery>,
) -> Result<HttpResponse, AppError> {
    let doc = find(&state.db, id.as_str())
        .await?
        .ok_or(AppError::NotFound)?;
    may_read(&state, &req, &principal, &doc).await?;
    send(&state, &doc, query.vedi.is_some()).await
}

/// The picture of a form's box whose reading had a problem, to whoever may read the document.
#[get("/documenti/{id}/campi/{field}")]
async fn field_crop(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (id, field) = path.into_inner();
    let doc = find(&state.db, &id).await?.ok_or(AppError::NotFound)?;
    let stored: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT crop_storage, crop_key FROM document_fields WHERE document_id = $1 AND field = $2",
    )
    .bind(&doc.id)
    .bind(&field)
    .fetch_optional(&state.db.pool)
    .await?;
    let Some((Some(storage), Some(key))) = stored else {
        return Err(AppError::NotFound);
    };
    may_read(&state, &req, &principal, &doc).await?;
    let png = state
        .vault
        .read_all(&ocr::crop_key(&doc.id, &field), &storage, &key)
        .await
        .map_err(|e| tampered(&e))?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("Cache-Control", "private, no-store"))
        .body(png))
}

/// Whether `principal` may read document `doc`: its owner, someone acting for the owner under a
/// mandate that shows their pratiche, or staff of the pratica's ente (an audited read). To anyone
/// else it does not exist (`NotFound`).
async fn may_read(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    doc: &Found,
) -> Result<(), AppError> {
    if principal.person().is_none() {
        crate::citizen::signed_in(req, principal)?;
    }
    let owner_cf = CodiceFiscale::parse(&doc.owner_cf).map_err(|_| AppError::NotFound)?;
    // Acting for the owner under a mandate that shows their pratiche (audited by `subject`).
    if crate::web::session::current(req).is_some_and(|s| s.data.acting_for.is_some()) {
        let subject = crate::delegations::subject(
            state,
            req,
            principal,
            crate::auth::LOGIN_LEVEL,
            &[Scope::Stato],
        )
        .await?;
        if subject.mandate.is_some() {
            if subject.cf() != owner_cf.as_str() {
                return Err(AppError::NotFound);
            }
            return Ok(());
        }
    }
    let object = format!("documento:{}", doc.id);
    // Said in words: the citizen reads it under "Chi ha consultato i tuoi dati".
    let purpose = match &doc.numero {
        Some(n) => format!("Istruttoria della pratica {n}"),
        None => "Istruttoria di una domanda".to_string(),
    };
    let request_id = req
        .extensions()
        .get::<crate::web::RequestId>()
        .map(|r| r.0.clone());
    authorize(
        &state.db,
        state.clock.now_ms(),
        principal,
        &Access {
            subject: &owner_cf,
            action: Action::Read,
            object: &object,
            purpose: &purpose,
            ente: Some(&doc.ente_code),
        },
        request_id.as_deref(),
    )
    .await
    .map_err(|e| match e {
        AppError::Forbidden => AppError::NotFound,
        other => other,
    })
}

/// The document decrypted as it is sent, checked segment by segment; `inline` to show it in the
/// browser, otherwise as an attachment. Whoever calls this has checked who is asking.
pub async fn send(state: &AppState, doc: &Found, inline: bool) -> Result<HttpResponse, AppError> {
    let mut reader = state
        .vault
        .open_file(&doc.id, &doc.storage_id, &doc.wrapped)
        .await
        .map_err(|e| tampered(&e))?;
    // The first segment is checked before anything is sent, so that a tampered file answers an
    // error page; a later bad segment ends the download short (the browser reports it failed).
    let first = reader.next_segment().await.map_err(|e| tampered(&e))?;
    let kind = doc.kind.unwrap_or(intake::Kind::Pdf);
    let body = futures_util::stream::unfold(
        (Some(first), reader),
        |(first, mut reader)| async move {
            if let Some(Some(part)) = first {
                return Some((
                    Ok::<_, actix_web::Error>(web::Bytes::from(part)),
                    (None, reader),
                ));
            }
            match reader.next_segment().await {
                Ok(Some(part)) => Some((Ok(web::Bytes::from(part)), (None, reader))),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "a stored document failed its check while being sent");
                    Some((
                        Err(actix_web::error::ErrorInternalServerError("altered")),
                        (None, reader),
                    ))
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type(kind.content_type())
        .insert_header((
            "Content-Disposition",
            content_disposition(&doc.label, kind, inline),
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-store"))
        // Sent as stored: photos and PDFs do not shrink, and the compression middleware skips it.
        .insert_header(actix_web::http::header::ContentEncoding::Identity)
        .streaming(body))
}

/// The name a download is saved under: the label's name with the extension of the type the
/// content was verified to be (`relazione.html` holding a PDF is saved as `relazione.pdf`).
pub fn download_name(label: &str, kind: intake::Kind) -> String {
    let label = clean_label(label);
    let stem = match label.rsplit_once('.') {
        Some((stem, _)) if !stem.trim().is_empty() => stem.trim().to_string(),
        _ => label,
    };
    format!("{stem}.{}", kind.extension())
}

/// `Content-Disposition` with the download name: an ASCII fallback and the UTF-8 name (RFC 6266).
fn content_disposition(label: &str, kind: intake::Kind, inline: bool) -> String {
    let name = download_name(label, kind);
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "{}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}",
        if inline { "inline" } else { "attachment" }
    )
}

fn tampered(e: &vault::VaultError) -> AppError {
    tracing::error!(error = %e, "a stored document could not be read back");
    AppError::Internal("documento non leggibile".into())
}

/// The citizen confirms the values read from a standard form, correcting those read wrong
/// (`campo_<field>`); the operator sees both the reading and the correction.
#[post("/domande/{id}/allegati/{slot}/{doc}/campi")]
async fn confirm_fields(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, String, String)>,
    sent: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (id, slot, doc_id) = path.into_inner();
    let (app, _) = uploadable(&state, &req, &principal, &id, &slot).await?;
    let doc = for_application(&state.db, &app.id)
        .await?
        .into_iter()
        .find(|d| d.id == doc_id && d.slot == slot)
        .ok_or(AppError::NotFound)?;
    let now = state.clock.now_ms();
    let mut tx = state.db.pool.begin().await?;
    for field in &doc.fields {
        let typed = sent
            .iter()
            .find(|(k, _)| k.strip_prefix("campo_") == Some(field.field.as_str()))
            .map(|(_, v)| v.trim().chars().take(200).collect::<String>());
        let corrected = typed.filter(|v| !v.is_empty() && *v != field.value);
        sqlx::query(
            "UPDATE document_fields SET corrected = $3, confirmed_at = $4 WHERE document_id = $1 AND field = $2",
        )
        .bind(&doc.id)
        .bind(&field.field)
        .bind(corrected)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(see_other(&format!(
        "/domande/{}/allegati/{slot}?esito=confermato{}",
        app.id,
        query_step(&req)
    )))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(slot_page)
        .service(upload)
        .service(confirm_fields)
        .service(remove)
        .service(field_crop)
        .service(download);
    paper::routes(cfg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_download_name_takes_the_verified_type_s_extension() {
        assert_eq!(
            download_name("relazione.html", intake::Kind::Pdf),
            "relazione.pdf"
        );
        assert_eq!(download_name("foto.svg", intake::Kind::Jpeg), "foto.jpg");
        assert_eq!(
            download_name("fattura\u{202E}fdp.exe", intake::Kind::Pdf),
            "fatturafdp.pdf"
        );
        assert_eq!(
            download_name("certificato", intake::Kind::Png),
            "certificato.png"
        );
        assert_eq!(download_name(".exe", intake::Kind::Pdf), "exe.pdf");
        assert_eq!(download_name("", intake::Kind::Pdf), "documento.pdf");
        assert_eq!(
            content_disposition("Attestazione ISEE è.pdf", intake::Kind::Pdf, false),
            "attachment; filename=\"Attestazione ISEE _.pdf\"; filename*=UTF-8''Attestazione%20ISEE%20%C3%A8.pdf"
        );
    }
}
