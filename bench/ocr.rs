//! OCR: speed of the Tesseract pool, and field accuracy on spoiled scans of the standard forms.
//!
//!     cargo bench --bench ocr                   # 40 forms
//!     cargo bench --bench ocr -- --forms 100
//!
//! 1. **accuracy**: `--forms` standard forms (the SAD self-declaration and the delegation, in
//!    turn) printed by the portal's own code with varied values (names with accents and
//!    apostrophes, codici fiscali, addresses, numbers, dates), rendered by `pdftoppm` at 200 dpi,
//!    then spoiled as scans and phone photos are — turned up to 3° either way, noise, blur, a
//!    phone's perspective, JPEG quality 50 — and read back by the portal's reader (QR code,
//!    registration marks, zones, Tesseract with each field's character set, the kind's
//!    normalisation). A field counts when the value read is exactly the one printed.
//! 2. **speed**: the same pages (clean renders) read by the portal's pool of OCR worker processes
//!    (`sportello ocr-worker`, the path of an upload: form detection, then the page's text) with 1
//!    and with 2 workers; beside them Tesseract engines in this process (page mode, one thread
//!    each, as the portal did before the worker processes) and the `tesseract` command on the
//!    same images, one after the other, with `OMP_THREAD_LIMIT=1`: seconds per page and pages
//!    per minute.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "scans.rs"]
mod scans;

use std::time::Instant;

use portal::documents::ocr::{Answer, OcrPool, WorkerSettings};
use portal::documents::paper::{self, PaperForms};
use scans::{render, spoil, Damage};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SURNAMES: &[&str] = &[
    "Rossi", "D'Angelo", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco",
    "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo", "Lombardi",
    "Moretti", "Barbieri", "Fontana", "Santoro", "Mariani", "Rinaldi",
];
const NAMES: &[&str] = &[
    "Mario",
    "Niccolò",
    "Giulia",
    "Francesca",
    "Luca",
    "Anna",
    "Giuseppe",
    "Chiara",
    "Andrea",
    "Elena",
    "Marco",
    "Sofia",
    "Matteo",
    "Martina",
    "Lorenzo",
    "Alessia",
    "Gabriele",
    "Noemi",
];
const STREETS: &[&str] = &[
    "Via Roma",
    "Via Garibaldi",
    "Corso Italia",
    "Piazza Verdi",
    "Via dei Mille",
    "Viale Europa",
    "Via San Francesco",
    "Via Dante Alighieri",
];

fn value(form: &str, field: &str, i: usize) -> String {
    let cf = |k: usize| {
        portal::domain::CodiceFiscale::synthetic(k)
            .expect("codice fiscale")
            .to_string()
    };
    match (form, field) {
        (_, "cognome" | "delegante_cognome") => SURNAMES[i % SURNAMES.len()].into(),
        (_, "nome" | "delegante_nome") => NAMES[(i * 7) % NAMES.len()].into(),
        (_, "delegato_cognome") => SURNAMES[(i * 5 + 3) % SURNAMES.len()].into(),
        (_, "delegato_nome") => NAMES[(i * 3 + 1) % NAMES.len()].into(),
        (_, "codice_fiscale" | "delegante_cf") => cf(1000 + i),
        (_, "delegato_cf") => cf(5000 + i),
        (_, "indirizzo") => format!("{} {}", STREETS[i % STREETS.len()], 1 + (i * 13) % 120),
        (_, "ore") => format!("{}", 2 + i % 18),
        (_, "fino_al") => format!("{:02}/{:02}/{}", 1 + i % 28, 1 + i % 12, 2027 + i % 3),
        _ => String::new(),
    }
}

fn damage(i: usize) -> Damage {
    Damage {
        rotation: (i % 7) as f32 - 3.0,
        noise: 4.0 + (i % 4) as f32 * 2.0,
        blur: (i % 3 == 2) as u32,
        perspective: if i % 4 == 1 { 0.03 } else { 0.0 },
        jpeg_quality: 50,
        seed: i as u64 + 1,
    }
}

/// The pool of worker processes, as the portal configures it by default.
fn worker_pool(workers: usize, root: &std::path::Path) -> OcrPool {
    let config = portal::config::DocumentsConfig {
        intake_program: Some(env!("CARGO_BIN_EXE_sportello").into()),
        ..Default::default()
    };
    OcrPool::start(
        workers,
        WorkerSettings::from_config(&config, &root.join("forms")),
    )
}

fn png(image: &image::GrayImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("PNG");
    out
}

fn main() {
    // OpenMP reads OMP_THREAD_LIMIT when Tesseract loads: the in-process engines below need it
    // set before this process starts, so it starts again with it once.
    if std::env::var("OMP_THREAD_LIMIT").as_deref() != Ok("1") {
        use std::os::unix::process::CommandExt;
        let error = std::process::Command::new(std::env::current_exe().expect("this program"))
            .args(std::env::args_os().skip(1))
            .env("OMP_THREAD_LIMIT", "1")
            .exec();
        panic!("could not start again with OMP_THREAD_LIMIT=1: {error}");
    }
    let n = arg("--forms", 40);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let forms = PaperForms::load(&root.join("forms")).expect("forms/paper");
    let codes = ["autodichiarazione-sad", "delega"];
    println!("OCR benchmark: {n} forms at 200 dpi, spoiled (rotation ±3°, noise, blur, perspective, JPEG 50)");

    // The corpus.
    let started = Instant::now();
    let mut corpus = Vec::new();
    for i in 0..n {
        let form = forms.get(codes[i % codes.len()]).expect("form");
        let pdf = form
            .pdf("Comune di Valleverde", &format!("pratica-{i}"), &|f| {
                value(&form.code, &f.id, i)
            })
            .expect("PDF");
        let clean = render(&pdf, 200);
        let jpeg = spoil(&clean, damage(i));
        corpus.push((form.clone(), i, clean, jpeg));
    }
    println!("corpus made in {:.1} s", started.elapsed().as_secs_f64());

    // 1. Accuracy, read by the pool as the portal does.
    let pool = worker_pool(2, root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut right, mut total, mut recognised) = (0usize, 0usize, 0usize);
    let mut wrong: Vec<String> = Vec::new();
    let mut by_kind: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for (form, i, _, spoiled) in &corpus {
            let pool = &pool;
            tasks.push(async move {
                let reading = match pool.read(spoiled).await {
                    Ok(Answer::Form(reading)) => Ok(reading),
                    Ok(Answer::Text(_)) => Err("not recognised as a form".to_string()),
                    Ok(Answer::Error(e)) => Err(e),
                    Err(e) => Err(e.to_string()),
                };
                (form.clone(), *i, reading)
            });
        }
        for (form, i, reading) in futures_util::future::join_all(tasks).await {
            total += form.fields.len();
            let reading = match reading {
                Ok(r) => r,
                Err(e) => {
                    wrong.push(format!(
                        "form {i} ({}, {:?}): not recognised: {e}",
                        form.code,
                        damage(i)
                    ));
                    continue;
                }
            };
            recognised += 1;
            let checked = paper::check(&form, &reading.fields, &|_| None);
            for (field, c) in form.fields.iter().zip(&checked) {
                let expected = value(&form.code, &field.id, i);
                let entry = by_kind.entry(format!("{:?}", field.kind)).or_default();
                entry.1 += 1;
                if c.value == expected {
                    right += 1;
                    entry.0 += 1;
                } else {
                    wrong.push(format!(
                        "form {i} {}: read {:?}, printed {:?} ({}%)",
                        field.id, c.value, expected, c.confidence
                    ));
                }
            }
        }
    });
    let took = started.elapsed().as_secs_f64();
    println!(
        "accuracy: {right}/{total} fields exactly right = {:.2}% (goal ≥ 98%); forms recognised {recognised}/{n}; {:.2} s per form with 2 engines",
        100.0 * right as f64 / total.max(1) as f64,
        took / n as f64
    );
    for (kind, (ok, all)) in &by_kind {
        println!("  {kind}: {ok}/{all}");
    }
    for w in wrong.iter().take(20) {
        println!("  wrong: {w}");
    }
    pool.stop();

    // 2. Speed: the worker processes (the upload's path), in-process engines, the command.
    let pages: Vec<image::GrayImage> = corpus.iter().map(|c| c.2.clone()).take(12.min(n)).collect();
    let encoded: Vec<Vec<u8>> = pages.iter().map(png).collect();
    let report = |what: &str, secs: f64| {
        println!(
            "{what}: {} pages in {secs:.1} s = {:.2} s per page, {:.1} pages per minute",
            pages.len(),
            secs / pages.len() as f64,
            60.0 * pages.len() as f64 / secs
        );
    };
    for workers in [1usize, 2] {
        let pool = worker_pool(workers, root);
        // Each worker's first page loads its model: not counted.
        runtime.block_on(async {
            let warm: Vec<_> = (0..workers).map(|_| pool.read(&encoded[0])).collect();
            futures_util::future::join_all(warm).await;
        });
        let started = Instant::now();
        runtime.block_on(async {
            let reads: Vec<_> = encoded.iter().map(|p| pool.read(p)).collect();
            for r in futures_util::future::join_all(reads).await {
                assert!(
                    matches!(r, Ok(Answer::Text(_) | Answer::Form(_))),
                    "page read"
                );
            }
        });
        report(
            &format!("worker processes, {workers}"),
            started.elapsed().as_secs_f64(),
        );
        pool.stop();
    }
    for engines in [1usize, 2] {
        let queue = std::sync::Mutex::new(pages.iter());
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..engines {
                scope.spawn(|| {
                    let mut engine = intake::ocr::Engine::new("ita").expect("engine");
                    // The model's load, as above: not counted (a little of it is, here).
                    loop {
                        let Some(page) = queue.lock().expect("queue").next() else {
                            return;
                        };
                        engine
                            .read(page, 200, intake::ocr::Mode::Page)
                            .expect("page read");
                    }
                });
            }
        });
        report(
            &format!("in-process engines (page mode), {engines}"),
            started.elapsed().as_secs_f64(),
        );
    }
    let dir = tempfile::tempdir().expect("folder");
    let started = Instant::now();
    for (k, page) in pages.iter().enumerate() {
        let path = dir.path().join(format!("p{k}.png"));
        page.save(&path).expect("PNG");
        let out = std::process::Command::new("tesseract")
            .arg(&path)
            .arg("-")
            .args(["-l", "ita", "--dpi", "200"])
            .env("OMP_THREAD_LIMIT", "1")
            .output()
            .expect("tesseract (tesseract-ocr, installed by .ci/setup)");
        assert!(out.status.success());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "tesseract command, one after the other: {} pages in {secs:.1} s = {:.2} s per page, {:.1} pages per minute (PNG written and model loaded each time)",
        pages.len(),
        secs / pages.len() as f64,
        60.0 * pages.len() as f64 / secs
    );
}
