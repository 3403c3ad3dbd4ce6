//! Reading documents: a job per accepted document (`documents.ocr`). A PDF with a text layer was
//! read at inspection; a photo, or each page of a scanned PDF (its pictures, taken out at
//! inspection and kept in `document_scans`), goes through Tesseract — as one of the portal's
//! standard forms when it carries their QR code (each field read in its zone, checked, compared
//! with the pratica, the signature box checked for ink), otherwise as a page of text.
//!
//! Tesseract runs in a pool: `documents.ocr_engines` worker threads, each with its own engine
//! (made at its first page and kept), with `OMP_THREAD_LIMIT=1` so that each is single-threaded.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use intake::form::FormReading;
use intake::ocr::{Engine, Mode, OcrError, Reading};
use serde::Deserialize;

use super::paper::{self, CheckedField, PaperForms};
use super::vault::Vault;
use crate::db::Db;
use crate::jobs::{BoxFuture, Job, JobContext, JobError, JobHandler, NewJob};

pub const JOB: &str = "documents.ocr";

type Task = Box<dyn FnOnce(&mut Option<Engine>) + Send>;

/// The engines, each on its own thread.
pub struct OcrPool {
    sender: Mutex<Option<mpsc::Sender<Task>>>,
    pub size: usize,
}

impl std::fmt::Debug for OcrPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OcrPool {{ size: {} }}", self.size)
    }
}

impl OcrPool {
    /// `size` threads reading with the `language` model; each makes its engine at its first task.
    pub fn start(size: usize, language: &str) -> OcrPool {
        if size > 0 && std::env::var("OMP_THREAD_LIMIT").as_deref() != Ok("1") {
            tracing::warn!("OMP_THREAD_LIMIT is not 1: each OCR engine may use several threads");
        }
        let (sender, receiver) = mpsc::channel::<Task>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..size {
            let receiver = receiver.clone();
            let language = language.to_string();
            let spawned = std::thread::Builder::new()
                .name(format!("ocr-{n}"))
                .spawn(move || {
                    let mut engine: Option<Engine> = None;
                    loop {
                        let task = match receiver.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(task) = task else { return };
                        if engine.is_none() {
                            match Engine::new(&language) {
                                Ok(e) => engine = Some(e),
                                Err(e) => tracing::error!(error = %e, "OCR engine not started"),
                            }
                        }
                        task(&mut engine);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "OCR thread not started");
            }
        }
        OcrPool {
            sender: Mutex::new(Some(sender)),
            size,
        }
    }

    /// Runs `work` on the next free engine.
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine) -> Result<R, OcrError> + Send + 'static,
    ) -> Result<R, OcrError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move |engine: &mut Option<Engine>| {
            let result = match engine {
                Some(engine) => work(engine),
                None => Err(OcrError::Read("no OCR engine".into())),
            };
            let _ = tx.send(result);
        });
        let sent = match self.sender.lock() {
            Ok(guard) => guard.as_ref().map(|s| s.send(task).is_ok()),
            Err(_) => None,
        };
        if sent != Some(true) {
            return Err(OcrError::Read("the OCR pool is stopped".into()));
        }
        rx.await
            .map_err(|_| OcrError::Read("the OCR engine stopped".into()))?
    }

    /// Lets the threads end once their current page is read.
    pub fn stop(&self) {
        if let Ok(mut guard) = self.sender.lock() {
            guard.take();
        }
    }
}

/// OpenMP, which Tesseract uses, reads `OMP_THREAD_LIMIT` when the library is loaded, before
/// `main`: a process that runs the pool starts itself again, once, with it set to 1 (one thread
/// per engine; the pool gives the parallelism). Returns when it is set, or when the restart
/// failed (said on stderr).
pub fn ensure_single_threaded_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var("OMP_THREAD_LIMIT").as_deref() == Ok("1") {
        return;
    }
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(program)
        .args(std::env::args_os().skip(1))
        .env("OMP_THREAD_LIMIT", "1")
        .exec();
    eprintln!("sportello: could not start again with OMP_THREAD_LIMIT=1 ({error}); each OCR engine may use several threads");
}

/// Enqueues the reading of document `id` (inside the caller's transaction or not).
pub async fn schedule<'e, E>(executor: E, now: i64, id: &str) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let job = NewJob::new(JOB, serde_json::json!({ "document": id }), now)
        .idempotency_key(format!("{JOB}:{id}"))
        .max_attempts(3);
    crate::jobs::enqueue(executor, now, &job).await?;
    Ok(())
}

/// What reading one image gave.
#[derive(Debug)]
pub enum Outcome {
    /// One of the portal's forms.
    Form(FormReading),
    /// Any other page.
    Text(Reading),
}

/// Reads one image: as a standard form if it carries one's QR code, else as a page of text.
pub fn read_image(
    engine: &mut Engine,
    image: &image::GrayImage,
    forms: &PaperForms,
) -> Result<Outcome, OcrError> {
    let layout_for = |code: &str| forms.for_code(code).map(|f| f.layout());
    // The form is known once its QR code is read; each field is judged by that form's rules.
    let plausible = |field: &str, text: &str| {
        forms
            .forms
            .iter()
            .filter_map(|f| f.field(field).map(|_| f))
            .any(|f| f.plausible(field, text))
    };
    match intake::form::read(image, &layout_for, engine, &plausible) {
        Ok(reading) => Ok(Outcome::Form(reading)),
        Err(intake::form::FormError::Ocr(e)) => Err(e),
        Err(_) => Ok(Outcome::Text(engine.read(image, 200, Mode::Page)?)),
    }
}

pub struct ReadDocuments {
    pub pool: Arc<OcrPool>,
    pub vault: Vault,
    pub forms: Arc<PaperForms>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    document: String,
}

fn err(e: impl std::fmt::Display) -> JobError {
    JobError(e.to_string())
}

impl JobHandler for ReadDocuments {
    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let payload: Payload = serde_json::from_str(&job.payload).map_err(err)?;
            let Some(doc) = super::find(&ctx.db, &payload.document).await.map_err(err)? else {
                return Ok(());
            };
            let outcome = self.read(&ctx.db, &doc).await?;
            let now = ctx.clock.now_ms();
            match outcome {
                Ok(Outcome::Text(reading)) => {
                    sqlx::query(
                        "UPDATE documents SET ocr_status = 'letto', ocr_text = $2, ocr_confidence = $3 WHERE id = $1",
                    )
                    .bind(&doc.id)
                    .bind(&reading.text)
                    .bind(i32::from(reading.confidence))
                    .execute(&ctx.db.pool)
                    .await
                    .map_err(err)?;
                }
                Ok(Outcome::Form(reading)) => {
                    store_form(&ctx.db, &self.forms, &doc, &reading).await?;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "document not read");
                    sqlx::query("UPDATE documents SET ocr_status = 'illeggibile' WHERE id = $1")
                        .bind(&doc.id)
                        .execute(&ctx.db.pool)
                        .await
                        .map_err(err)?;
                }
            }
            tracing::info!(took_ms = ctx.clock.now_ms() - now, "document read");
            Ok(())
        })
    }
}

/// The key a scanned PDF's page picture is stored under (its wrapped key is bound to it).
pub fn scan_key(document_id: &str, page: u32) -> String {
    format!("{document_id}/pagina-{page}")
}

impl ReadDocuments {
    /// Reads a photo, or a scanned PDF page by page: the first page that is one of the portal's
    /// forms gives the reading; otherwise the pages' text, one after the other.
    async fn read(
        &self,
        db: &Db,
        doc: &super::Found,
    ) -> Result<Result<Outcome, OcrError>, JobError> {
        let pictures: Vec<(String, String, Vec<u8>)> = if doc.kind == Some(intake::Kind::Pdf) {
            let rows: Vec<(i32, String, Vec<u8>)> = sqlx::query_as(
                "SELECT page, storage_id, wrapped_key FROM document_scans WHERE document_id = $1 ORDER BY page",
            )
            .bind(&doc.id)
            .fetch_all(&db.pool)
            .await
            .map_err(err)?;
            rows.into_iter()
                .map(|(page, storage, wrapped)| {
                    (
                        scan_key(&doc.id, u32::try_from(page).unwrap_or(0)),
                        storage,
                        wrapped,
                    )
                })
                .collect()
        } else {
            let (storage, wrapped) = doc.stored();
            vec![(doc.id.clone(), storage.to_string(), wrapped.to_vec())]
        };
        let mut texts = Vec::new();
        for (key, storage, wrapped) in &pictures {
            let bytes = self
                .vault
                .read_all(key, storage, wrapped)
                .await
                .map_err(err)?;
            let image = image::load_from_memory(&bytes).map_err(err)?.to_luma8();
            let forms = self.forms.clone();
            match self
                .pool
                .run(move |engine| read_image(engine, &image, &forms))
                .await
            {
                Ok(Outcome::Form(reading)) => return Ok(Ok(Outcome::Form(reading))),
                Ok(Outcome::Text(reading)) => texts.push(reading),
                Err(e) => return Ok(Err(e)),
            }
        }
        if texts.is_empty() {
            return Ok(Err(OcrError::Read("no page to read".into())));
        }
        let confidence =
            texts.iter().map(|r| u32::from(r.confidence)).sum::<u32>() / texts.len() as u32;
        Ok(Ok(Outcome::Text(Reading {
            text: texts
                .iter()
                .map(|r| r.text.trim())
                .collect::<Vec<_>>()
                .join("\n\n"),
            confidence: u8::try_from(confidence).unwrap_or(u8::MAX),
        })))
    }
}

/// Checks and keeps the fields read from a standard form.
async fn store_form(
    db: &Db,
    forms: &PaperForms,
    doc: &super::Found,
    reading: &FormReading,
) -> Result<(), JobError> {
    let Some(form) = forms.for_code(&reading.code) else {
        return Ok(());
    };
    let reference = paper::parse_code(&reading.code).map(|(_, _, r)| r.to_string());
    let app = crate::applications::store::get(db, &doc.application_id)
        .await
        .map_err(err)?;
    let answer = |from: &str| -> Option<String> {
        let value = app.as_ref()?.answers.get(from)?;
        match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let mut checked: Vec<CheckedField> = paper::check(form, &reading.fields, &|f| {
        f.from.as_deref().and_then(answer)
    });
    // A form printed for another pratica is flagged on every field it would set.
    let other_pratica = reference.as_deref() != Some(doc.application_id.as_str());
    let mut tx = db.pool.begin().await.map_err(err)?;
    sqlx::query("DELETE FROM document_fields WHERE document_id = $1")
        .bind(&doc.id)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    if other_pratica {
        for c in &mut checked {
            c.problem = Some("Il modulo è stato stampato per un'altra pratica: scarica quello di questa pratica.".into());
        }
    }
    for (i, c) in checked.iter().enumerate() {
        sqlx::query(
            "INSERT INTO document_fields (document_id, position, field, label, value, confidence, problem, expected) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&doc.id)
        .bind(i as i32)
        .bind(&c.id)
        .bind(&c.label)
        .bind(&c.value)
        .bind(i32::from(c.confidence))
        .bind(&c.problem)
        .bind(&c.expected)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    }
    let mean = if checked.is_empty() {
        0
    } else {
        checked.iter().map(|c| i32::from(c.confidence)).sum::<i32>() / checked.len() as i32
    };
    sqlx::query(
        "UPDATE documents SET ocr_status = 'letto', form_code = $2, signed = $3, ocr_confidence = $4 WHERE id = $1",
    )
    .bind(&doc.id)
    .bind(&form.code)
    .bind(reading.signed.map(i32::from))
    .bind(mean)
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(())
}
