//! Reading documents: a job per accepted document (`documents.ocr`, in the documents lane). A PDF
//! with a text layer was read at inspection; a photo, or each page of a scanned PDF (its pictures,
//! taken out at inspection and kept in `document_scans`), goes through Tesseract — as one of the
//! portal's standard forms when it carries their QR code (each field read in its zone, checked,
//! compared with the pratica, the signature box checked for ink), otherwise as a page of text.
//!
//! Tesseract never runs in the portal's process. [`OcrPool`] keeps up to `documents.ocr_engines`
//! long-lived worker processes (`sportello ocr-worker`, see [`worker`]), each with its engine
//! loaded once, under an address-space limit, fed one page at a time over a pipe. Each page has
//! its own CPU and wall-clock limit, which the pool watches: a page over it kills that worker
//! (the next page starts another) and the document ends "Non leggibile" with a plain reason. A
//! worker that dies otherwise (killed, crashed) fails the attempt, and the job is retried.

use std::io::{BufRead, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intake::form::FormReading;
use intake::ocr::{Engine, Mode, OcrError, Reading};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::paper::{self, CheckedField, PaperForms};
use super::vault::Vault;
use crate::config::DocumentsConfig;
use crate::db::Db;
use crate::jobs::{BoxFuture, Job, JobContext, JobError, JobHandler, Lane, NewJob};

pub const JOB: &str = "documents.ocr";

/// What the citizen and the operator read when a document could not be read.
pub const TOO_HEAVY: &str = "La pagina è troppo pesante o confusa per essere letta automaticamente: l'ufficio la guarderà a mano. Se è una foto, rifalla con luce uniforme e la pagina intera nell'inquadratura.";
pub const UNPLACED: &str = "La foto non si legge come modulo: rifalla con luce uniforme, tutta la pagina nell'inquadratura. Il documento resta agli atti e l'ufficio lo controllerà a mano.";
pub const NOT_READ: &str =
    "Non è stato possibile leggere il documento automaticamente: l'ufficio lo guarderà a mano.";

/// The prefix of the worker's answer line on its stdout (anything else there is ignored).
const ANSWER: &str = "SPORTELLO-OCR ";

/// How a worker process is started and limited.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The program run as `<program> ocr-worker …` (this binary by default).
    pub program: PathBuf,
    pub language: String,
    pub forms_dir: PathBuf,
    pub page_cpu: Duration,
    pub page_wall: Duration,
    pub memory_mb: u64,
}

impl WorkerSettings {
    pub fn from_config(config: &DocumentsConfig, forms_dir: &std::path::Path) -> WorkerSettings {
        WorkerSettings {
            program: config
                .intake_program
                .clone()
                .or_else(|| std::env::current_exe().ok())
                .unwrap_or_else(|| PathBuf::from("sportello")),
            language: config.ocr_language.clone(),
            forms_dir: forms_dir.to_path_buf(),
            page_cpu: Duration::from_secs(config.ocr_page_cpu_seconds.max(1)),
            page_wall: Duration::from_secs(config.ocr_page_wall_seconds.max(1)),
            memory_mb: config.ocr_memory_mb,
        }
    }
}

/// Why a page was not read.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Over its CPU or wall-clock limit, or the reader died on it: the page is not readable.
    #[error("page over its limits: {0}")]
    OverLimit(String),
    /// The worker could not be started or was killed from outside: try again later.
    #[error("OCR worker: {0}")]
    Worker(String),
}

/// What reading one page gave (a worker's answer).
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    /// One of the portal's forms.
    Form(FormReading),
    /// One of the portal's forms by its QR code (the code), whose page could not be straightened
    /// to read its fields: for a person to read.
    Unplaced(String),
    /// Any other page.
    Text(Reading),
    /// Tesseract failed on it.
    Error(String),
}

/// The pids of the worker processes alive.
type Live = Arc<Mutex<std::collections::BTreeSet<u32>>>;

/// A live worker process (killed when dropped).
struct Process {
    child: Child,
    pid: Option<u32>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    live: Live,
}

impl Drop for Process {
    fn drop(&mut self) {
        if let (Some(pid), Ok(mut live)) = (self.pid, self.live.lock()) {
            live.remove(&pid);
        }
    }
}

/// The OCR worker processes.
pub struct OcrPool {
    settings: WorkerSettings,
    idle: Mutex<Vec<Process>>,
    turns: tokio::sync::Semaphore,
    live: Live,
    pub size: usize,
}

impl std::fmt::Debug for OcrPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OcrPool {{ size: {} }}", self.size)
    }
}

/// CPU time (user + system) of process `pid` so far, from `/proc` (clock ticks of 1/100 s).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

impl OcrPool {
    /// At most `size` worker processes, started when first needed and kept.
    pub fn start(size: usize, settings: WorkerSettings) -> OcrPool {
        OcrPool {
            settings,
            idle: Mutex::new(Vec::new()),
            turns: tokio::sync::Semaphore::new(size),
            live: Live::default(),
            size,
        }
    }

    fn spawn(&self) -> Result<Process, PageError> {
        let s = &self.settings;
        let mut child = tokio::process::Command::new("prlimit")
            .arg(format!("--as={}", s.memory_mb * 1024 * 1024))
            .arg("--core=0")
            .arg("--")
            .arg(&s.program)
            .arg("ocr-worker")
            .arg("--language")
            .arg(&s.language)
            .arg("--forms-dir")
            .arg(&s.forms_dir)
            .env_clear()
            // One thread per engine: OpenMP reads it when Tesseract loads.
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PageError::Worker(format!("start: {e}")))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| PageError::Worker("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| PageError::Worker("no stdout".into()))?;
        let pid = child.id();
        if let (Some(pid), Ok(mut live)) = (pid, self.live.lock()) {
            live.insert(pid);
        }
        Ok(Process {
            child,
            pid,
            stdin,
            stdout: BufReader::new(stdout),
            live: self.live.clone(),
        })
    }

    /// Reads one page (an encoded PNG or JPEG) on the next free worker. Dropping the future kills
    /// the worker that had the page.
    pub async fn read(&self, image: &[u8]) -> Result<Answer, PageError> {
        self.read_with(image, &Hints::new()).await
    }

    /// [`OcrPool::read`], with what the pratica says of the forms the page may be (see [`Hints`]).
    pub async fn read_with(&self, image: &[u8], hints: &Hints) -> Result<Answer, PageError> {
        let _turn = self
            .turns
            .acquire()
            .await
            .map_err(|_| PageError::Worker("the OCR pool is stopped".into()))?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut process = match idle {
            Some(p) => p,
            None => self.spawn()?,
        };
        let answer = self.on(&mut process, image, hints).await;
        match &answer {
            // A worker that answered is kept for the next page.
            Ok(_) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(process);
                }
            }
            Err(_) => {
                let _ = process.child.start_kill();
                let _ = process.child.wait().await;
            }
        }
        answer
    }

    async fn on(
        &self,
        process: &mut Process,
        image: &[u8],
        hints: &Hints,
    ) -> Result<Answer, PageError> {
        let Process {
            child,
            pid,
            stdin,
            stdout,
            ..
        } = process;
        let pid = *pid;
        let cpu_before = pid.and_then(cpu_time).unwrap_or_default();
        // The hints, if any, on a line of their own (JSON has no raw newline), then the count.
        let mut header = String::new();
        if !hints.is_empty() {
            header = serde_json::to_string(hints).unwrap_or_default();
            header.push('\n');
        }
        header.push_str(&format!("{}\n", image.len()));
        let sent = async {
            stdin.write_all(header.as_bytes()).await?;
            stdin.write_all(image).await?;
            stdin.flush().await
        };
        let started = Instant::now();
        let limits = &self.settings;
        let answer = async {
            sent.await.map_err(|e| e.to_string())?;
            let mut line = String::new();
            loop {
                line.clear();
                if stdout
                    .read_line(&mut line)
                    .await
                    .map_err(|e| e.to_string())?
                    == 0
                {
                    return Err("the worker ended".to_string());
                }
                if let Some(json) = line.trim_end().strip_prefix(ANSWER) {
                    return serde_json::from_str::<Answer>(json).map_err(|e| e.to_string());
                }
            }
        };
        tokio::pin!(answer);
        let mut watch = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                result = &mut answer => {
                    return match result {
                        Ok(a) => Ok(a),
                        Err(why) => Err(why_it_ended(child, why).await),
                    };
                }
                _ = watch.tick() => {
                    if started.elapsed() > limits.page_wall {
                        tracing::warn!(limit_s = limits.page_wall.as_secs(), "OCR page over its wall-clock limit: worker stopped");
                        return Err(PageError::OverLimit("wall-clock limit".into()));
                    }
                    let used = pid.and_then(cpu_time).unwrap_or_default().saturating_sub(cpu_before);
                    if used > limits.page_cpu {
                        tracing::warn!(limit_s = limits.page_cpu.as_secs(), "OCR page over its CPU limit: worker stopped");
                        return Err(PageError::OverLimit("CPU limit".into()));
                    }
                }
            }
        }
    }

    /// The pids of the worker processes now alive (for `/metrics` and the tests).
    pub fn workers(&self) -> Vec<u32> {
        self.live
            .lock()
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Ends the idle workers (a page being read ends its worker when its caller goes).
    pub fn stop(&self) {
        self.turns.close();
        if let Ok(mut idle) = self.idle.lock() {
            for mut p in idle.drain(..) {
                let _ = p.child.start_kill();
            }
        }
    }
}

/// After a worker stopped answering: killed from outside (SIGKILL, SIGTERM) is worth another try;
/// any other death (an abort when out of memory, a crash) happened on this page.
async fn why_it_ended(child: &mut Child, why: String) -> PageError {
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    match status {
        Ok(Ok(status)) => match status.signal() {
            Some(9) | Some(15) => {
                tracing::warn!(signal = status.signal(), "OCR worker killed");
                PageError::Worker(format!("worker killed ({status})"))
            }
            Some(_) => {
                tracing::warn!(%status, "OCR worker died on a page");
                PageError::OverLimit(format!("worker died ({status})"))
            }
            None => PageError::Worker(format!("worker ended ({status}): {why}")),
        },
        _ => PageError::Worker(why),
    }
}

/// What the pratica says, for the standard forms a page may be: form code → field → value. The
/// reader takes each as the first hypothesis of its box (`intake::form::read`).
pub type Hints = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// The hints of a pratica whose answers are `answers`: each form's fields that come from an
/// answer with a value.
pub fn hints(forms: &PaperForms, answers: &crate::applications::form::Answers) -> Hints {
    let mut hints = Hints::new();
    for form in &forms.forms {
        let values: std::collections::BTreeMap<String, String> = form
            .fields
            .iter()
            .filter_map(|f| {
                let value = answer_text(answers, f.from.as_deref()?)?;
                (!value.trim().is_empty()).then(|| (f.id.clone(), value))
            })
            .collect();
        if !values.is_empty() {
            hints.insert(form.code.clone(), values);
        }
    }
    hints
}

/// The pratica's answer `from` as text (a string, or a number as written), if it has one.
fn answer_text(answers: &crate::applications::form::Answers, from: &str) -> Option<String> {
    match answers.get(from)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The worker process (`sportello ocr-worker`): loads the engine and the standard forms once,
/// then reads pages from stdin (optionally a line of JSON [`Hints`], then a line with the byte
/// count, then the encoded image) and answers each with one line on stdout. Ends at the end of
/// its input.
pub fn worker(language: &str, forms_dir: &std::path::Path) -> std::io::Result<()> {
    let forms = PaperForms::load(forms_dir).map_err(std::io::Error::other)?;
    let mut engine = Engine::new(language).map_err(std::io::Error::other)?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut hints = Hints::new();
        if line.starts_with('{') {
            hints = serde_json::from_str(line.trim()).map_err(std::io::Error::other)?;
            line.clear();
            input.read_line(&mut line)?;
        }
        let len: usize = line
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other("expected a byte count"))?;
        let mut bytes = vec![0u8; len];
        input.read_exact(&mut bytes)?;
        let answer = match image::load_from_memory(&bytes) {
            Ok(image) => read_image(&mut engine, &image.to_luma8(), &forms, &hints)
                .unwrap_or_else(|e| Answer::Error(e.to_string())),
            Err(e) => Answer::Error(format!("image: {e}")),
        };
        drop(bytes);
        let json = serde_json::to_string(&answer).map_err(std::io::Error::other)?;
        let mut out = stdout.lock();
        writeln!(out, "{ANSWER}{json}")?;
        out.flush()?;
    }
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

/// Reads one image: as a standard form if it carries one's QR code, else as a page of text.
pub fn read_image(
    engine: &mut Engine,
    image: &image::GrayImage,
    forms: &PaperForms,
    hints: &Hints,
) -> Result<Answer, OcrError> {
    let layout_for = |code: &str| forms.for_code(code).map(|f| f.layout());
    // The form is known once its QR code is read; each field is judged by that form's rules.
    let plausible = |field: &str, text: &str| {
        forms
            .forms
            .iter()
            .filter_map(|f| f.field(field).map(|_| f))
            .any(|f| f.plausible(field, text))
    };
    // Whether a reading is what the pratica says (but for OCR's confusions); `None` when the
    // pratica says nothing of that box.
    let confirms = |code: &str, field: &str, text: &str| {
        let form = forms.for_code(code)?;
        let expected = hints.get(&form.code)?.get(field)?;
        Some(paper::same(form.field(field)?.kind, expected, text))
    };
    match intake::form::read(image, &layout_for, engine, &plausible, &confirms) {
        Ok(reading) => Ok(Answer::Form(reading)),
        Err(intake::form::FormError::Ocr(e)) => Err(e),
        Err(intake::form::FormError::NoMarks(code)) => Ok(Answer::Unplaced(code)),
        Err(_) => {
            let text = engine.read(image, 200, Mode::Page)?;
            // No QR code read, but the form's own footer is: the form, to be checked by hand.
            Ok(match printed_form(forms, &text.text) {
                Some(code) => Answer::Unplaced(code),
                None => Answer::Text(text),
            })
        }
    }
}

/// The standard form a page's text names in the footer every form carries ("Modulo <code> v<n> —
/// riferimento <reference>"), as its QR code would say.
fn printed_form(forms: &PaperForms, text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    (0..words.len()).find_map(|i| {
        let w = words.get(i..i + 3)?;
        let version: u32 = w[2].strip_prefix('v')?.parse().ok()?;
        let form = forms
            .get(w[1])
            .filter(|f| f.version == version && w[0] == "Modulo")?;
        // Then "— riferimento <reference>" (the dash may be read or not).
        let rest = words.get(i + 3..(i + 6).min(words.len()))?;
        let at = rest.iter().position(|r| r.starts_with("riferimento"))?;
        let reference = rest.get(at + 1).or_else(|| words.get(i + 3 + at + 1))?;
        Some(form.code_for(reference))
    })
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

/// Marks a document as not readable, with the reason its owner and the office read.
async fn unreadable(db: &Db, id: &str, reason: &str) -> Result<(), JobError> {
    sqlx::query("UPDATE documents SET ocr_status = 'illeggibile', ocr_reason = $2 WHERE id = $1")
        .bind(id)
        .bind(reason)
        .execute(&db.pool)
        .await
        .map_err(err)?;
    Ok(())
}

impl JobHandler for ReadDocuments {
    fn lane(&self) -> Lane {
        Lane::Documents
    }

    fn run<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let payload: Payload = serde_json::from_str(&job.payload).map_err(err)?;
            let Some(doc) = super::find(&ctx.db, &payload.document).await.map_err(err)? else {
                return Ok(());
            };
            let now = ctx.clock.now_ms();
            // What the pratica says: hints for the reading, the values to compare with.
            let answers = crate::applications::store::get(&ctx.db, &doc.application_id)
                .await
                .map_err(err)?
                .map(|app| app.answers)
                .unwrap_or_default();
            let hints = hints(&self.forms, &answers);
            match self.read(&ctx.db, &doc, &hints).await? {
                Got::Text(reading) => {
                    sqlx::query(
                        "UPDATE documents SET ocr_status = 'letto', ocr_text = $2, ocr_confidence = $3, ocr_reason = NULL WHERE id = $1",
                    )
                    .bind(&doc.id)
                    .bind(&reading.text)
                    .bind(i32::from(reading.confidence))
                    .execute(&ctx.db.pool)
                    .await
                    .map_err(err)?;
                }
                Got::Form(reading) => {
                    store_form(&ctx.db, &self.vault, &self.forms, &doc, &answers, &reading).await?;
                }
                Got::Unplaced(code) => {
                    let form = self.forms.for_code(&code).map(|f| f.code.clone());
                    sqlx::query(
                        "UPDATE documents SET ocr_status = 'da_verificare', form_code = $2, ocr_reason = $3 WHERE id = $1",
                    )
                    .bind(&doc.id)
                    .bind(form)
                    .bind(UNPLACED)
                    .execute(&ctx.db.pool)
                    .await
                    .map_err(err)?;
                }
                Got::Unreadable(reason) => unreadable(&ctx.db, &doc.id, reason).await?,
            }
            tracing::info!(took_ms = ctx.clock.now_ms() - now, "document read");
            Ok(())
        })
    }

    /// Every attempt failed (the worker killed each time, or the lane's time limit): the document
    /// is not left "In lettura" for ever.
    fn gave_up<'a>(&'a self, ctx: &'a JobContext, job: &'a Job) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok(payload) = serde_json::from_str::<Payload>(&job.payload) else {
                return;
            };
            if let Err(e) = unreadable(&ctx.db, &payload.document, NOT_READ).await {
                tracing::warn!(error = %e, "marking an unread document failed");
            }
        })
    }
}

/// The key a scanned PDF's page picture is stored under (its wrapped key is bound to it).
pub fn scan_key(document_id: &str, page: u32) -> String {
    format!("{document_id}/pagina-{page}")
}

/// What reading a document gave.
enum Got {
    Form(FormReading),
    /// A form (its code) whose fields could not be read: to be checked by hand.
    Unplaced(String),
    Text(Reading),
    /// Not readable, for this reason (for the citizen and the office).
    Unreadable(&'static str),
}

impl ReadDocuments {
    /// Reads a photo, or a scanned PDF page by page: the first page that is one of the portal's
    /// forms gives the reading; otherwise the pages' text, one after the other. A page over its
    /// limits makes the document unreadable; a worker killed from outside fails the attempt.
    async fn read(&self, db: &Db, doc: &super::Found, hints: &Hints) -> Result<Got, JobError> {
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
            match self.pool.read_with(&bytes, hints).await {
                Ok(Answer::Form(reading)) => return Ok(Got::Form(reading)),
                Ok(Answer::Unplaced(code)) => return Ok(Got::Unplaced(code)),
                Ok(Answer::Text(reading)) => texts.push(reading),
                Ok(Answer::Error(e)) => {
                    tracing::warn!(error = %e, "page not read");
                    return Ok(Got::Unreadable(NOT_READ));
                }
                Err(PageError::OverLimit(_)) => return Ok(Got::Unreadable(TOO_HEAVY)),
                Err(e @ PageError::Worker(_)) => return Err(err(e)),
            }
        }
        if texts.is_empty() {
            return Ok(Got::Unreadable(NOT_READ));
        }
        let confidence =
            texts.iter().map(|r| u32::from(r.confidence)).sum::<u32>() / texts.len() as u32;
        Ok(Got::Text(Reading {
            text: texts
                .iter()
                .map(|r| r.text.trim())
                .collect::<Vec<_>>()
                .join("\n\n"),
            confidence: u8::try_from(confidence).unwrap_or(u8::MAX),
        }))
    }
}

/// The key a field's picture is stored under (its wrapped key is bound to it).
pub fn crop_key(document_id: &str, field: &str) -> String {
    format!("{document_id}/campo-{field}")
}

/// Checks and keeps the fields read from a standard form, with the picture of each box whose
/// reading has a problem.
async fn store_form(
    db: &Db,
    vault: &Vault,
    forms: &PaperForms,
    doc: &super::Found,
    answers: &crate::applications::form::Answers,
    reading: &FormReading,
) -> Result<(), JobError> {
    let Some(form) = forms.for_code(&reading.code) else {
        return Ok(());
    };
    let reference = paper::parse_code(&reading.code).map(|(_, _, r)| r.to_string());
    let mut checked: Vec<CheckedField> = paper::check(form, &reading.fields, &|f| {
        f.from
            .as_deref()
            .and_then(|from| answer_text(answers, from))
    });
    // A form printed for another pratica is flagged on every field it would set.
    let other_pratica = reference.as_deref() != Some(doc.application_id.as_str());
    // The pictures of the boxes in doubt, encrypted; those of an earlier reading go.
    let mut crops: std::collections::HashMap<String, (String, Vec<u8>)> = Default::default();
    for c in checked.iter().filter(|c| c.problem.is_some()) {
        let Some(png) = reading
            .fields
            .iter()
            .find(|f| f.id == c.id)
            .and_then(|f| f.evidence.as_deref())
            .and_then(|b| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
        else {
            continue;
        };
        let stored = vault
            .store(&crop_key(&doc.id, &c.id), std::io::Cursor::new(png))
            .await
            .map_err(err)?;
        crops.insert(c.id.clone(), stored);
    }
    let earlier: Vec<String> = sqlx::query_scalar(
        "SELECT crop_storage FROM document_fields WHERE document_id = $1 AND crop_storage IS NOT NULL",
    )
    .bind(&doc.id)
    .fetch_all(&db.pool)
    .await
    .map_err(err)?;
    for storage in earlier {
        vault.delete(&storage).await.map_err(err)?;
    }
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
            "INSERT INTO document_fields (document_id, position, field, label, value, confidence, problem, expected, crop_storage, crop_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&doc.id)
        .bind(i as i32)
        .bind(&c.id)
        .bind(&c.label)
        .bind(&c.value)
        .bind(i32::from(c.confidence))
        .bind(&c.problem)
        .bind(&c.expected)
        .bind(crops.get(&c.id).map(|(storage, _)| storage.clone()))
        .bind(crops.get(&c.id).map(|(_, key)| key.clone()))
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
        "UPDATE documents SET ocr_status = 'letto', form_code = $2, signed = $3, ocr_confidence = $4, ocr_reason = NULL WHERE id = $1",
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
