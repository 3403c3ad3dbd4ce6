//! OCR: reading the standard forms back from spoiled scans and phone photos, and the speed of the
//! Tesseract pool.
//!
//!     cargo bench --bench ocr                   # 8 forms of each kind of damage
//!     cargo bench --bench ocr -- --per-kind 15
//!     cargo bench --bench ocr -- --speed 0      # accuracy only
//!     cargo bench --bench ocr -- --kind 3       # one kind of damage only (0–7, as listed)
//!     OCR_BENCH_SAVE=/tmp/pages cargo bench --bench ocr   # also keep each spoiled page (JPEG)
//!
//! 1. **accuracy**: standard forms (the SAD self-declaration and the delegation, in turn) printed
//!    by the portal's own code with hard values (accented names such as Zoë and Niccolò,
//!    apostrophes, Roman numerals in addresses — Vittorio Emanuele II, Pio XI, Giovanni XXIII —,
//!    decimals such as 7,5, optional fields left empty), signed or not, rendered by `pdftoppm` and
//!    spoiled by kind: scans at 300, 200 and 150 dpi (JPEG down to 40), phone photos in
//!    perspective up to a 15° tilt and turned up to 7°, uneven light and a shadow across the page,
//!    colour photos on a desk, faded photocopies, blurred photos. Each page goes the upload's way:
//!    the OCR worker processes read it (QR code, registration marks, each field's zone), then
//!    `paper::check` compares it with what the pratica says (the printed values), as the portal
//!    does. Reported per kind: fields exact, pages recognised as the form (of those whose QR code
//!    reads), wrong values that carry no problem (must be 0), false "Diverso" (a difference shown
//!    where the paper says what the pratica says), pages with no problem at all, seconds per page.
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
    "Rossi",
    "D'Angelo",
    "Esposito",
    "Dell'Acqua",
    "Romano",
    "Colombo",
    "Ricci",
    "Marino",
    "Greco",
    "De Luca",
    "Gallo",
    "Conti",
    "Mancini",
    "Costa",
    "Giordano",
    "Rizzo",
    "Lombardi",
    "Moretti",
    "Barbieri",
    "Fontana",
    "Santoro",
    "Mariani",
    "Rinaldi",
    "Nicolò",
];
const NAMES: &[&str] = &[
    "Mario",
    "Niccolò",
    "Zoë",
    "Francesca",
    "Luca",
    "Anna",
    "Giuseppe",
    "Chiara",
    "Noè",
    "Elena",
    "Marco",
    "Sofia",
    "Matteo",
    "Martina",
    "Lorenzo",
    "Alessia",
    "Gabriele",
    "Noemi",
    "Ilaria",
    "Lucía",
];
const STREETS: &[&str] = &[
    "Corso Vittorio Emanuele II",
    "Via Pio XI",
    "Piazza Giovanni XXIII",
    "Via Garibaldi",
    "Corso Italia",
    "Piazza Verdi",
    "Via dei Mille",
    "Viale dell'Unità d'Italia",
    "Via San Francesco",
    "Via Dante Alighieri",
];

/// The value printed in `field` of form `i`: what the pratica says.
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
        (_, "indirizzo") => format!(
            "{} {}",
            STREETS[(i / 2) % STREETS.len()],
            1 + (i * 13) % 140
        ),
        // Optional: left empty on one SAD form in five; decimals on some.
        (_, "ore") => match i % 10 {
            1 | 6 => String::new(),
            3 => "7,5".into(),
            8 => "12,5".into(),
            _ => format!("{}", 2 + i % 18),
        },
        (_, "fino_al") => format!("{:02}/{:02}/{}", 1 + i % 28, 1 + i % 12, 2027 + i % 3),
        _ => String::new(),
    }
}

/// A kind of damage: its name, the resolution of the render, and the damage of form `i`.
struct Spoiling {
    name: &'static str,
    dpi: u32,
    damage: fn(usize) -> Damage,
}

/// Either way, by up to `max` (deterministic in `i`).
fn spread(i: usize, max: f32) -> f32 {
    let t = ((i * 7919) % 101) as f32 / 100.0;
    (2.0 * t - 1.0) * max
}

const KINDS: &[Spoiling] = &[
    Spoiling {
        name: "scan 300 dpi",
        dpi: 300,
        damage: |i| Damage {
            rotation: spread(i, 1.0),
            noise: 3.0,
            jpeg_quality: 75,
            seed: i as u64 + 1,
            ..Damage::NONE
        },
    },
    Spoiling {
        name: "scan 200 dpi",
        dpi: 200,
        damage: |i| Damage {
            rotation: spread(i, 2.0),
            noise: 5.0,
            jpeg_quality: 60,
            seed: i as u64 + 1,
            ..Damage::NONE
        },
    },
    Spoiling {
        name: "scan 150 dpi, JPEG 40",
        dpi: 150,
        damage: |i| Damage {
            rotation: spread(i, 2.0),
            noise: 4.0,
            jpeg_quality: 40,
            seed: i as u64 + 1,
            ..Damage::NONE
        },
    },
    Spoiling {
        name: "phone photo (tilt up to 15°, turned up to 7°)",
        dpi: 200,
        damage: |i| Damage {
            rotation: spread(i, 7.0),
            tilt: 15.0 * ((i % 5) as f32 / 4.0),
            // The whole page in the picture, as a person takes it.
            on_desk: 0.86,
            light: 0.25,
            noise: 6.0,
            blur: (i % 2) as u32,
            jpeg_quality: 50 + (i % 3) as u8 * 12,
            seed: i as u64 + 1,
            ..Damage::NONE
        },
    },
    Spoiling {
        name: "phone photo, uneven light and a shadow",
        dpi: 200,
        damage: |i| Damage {
            rotation: spread(i, 4.0),
            tilt: 6.0,
            on_desk: 0.88,
            light: 0.4,
            shadow: 0.35 + 0.2 * ((i % 3) as f32 / 2.0),
            noise: 6.0,
            jpeg_quality: 60,
            seed: i as u64 + 1,
            ..Damage::NONE
        },
    },
    Spoiling {
        name: "colour photo on a desk",
        dpi: 200,
        damage: |i| Damage {
            rotation: spread(i, 5.0),
            tilt: 8.0,
            on_desk: 0.82,
            colour: true,
            light: 0.3,
            noise: 5.0,
            jpeg_quality: 60,
            seed: i as u64 + 1,
            ..Damage::NONE
        },
    },
    Spoiling {
        name: "faded photocopy",
        dpi: 200,
        damage: |i| Damage {
            rotation: spread(i, 2.0),
            fade: 0.55,
            noise: 8.0,
            jpeg_quality: 60,
            seed: i as u64 + 1,
            ..Damage::NONE
        },
    },
    Spoiling {
        name: "blurred photo",
        dpi: 200,
        damage: |i| Damage {
            rotation: spread(i, 3.0),
            tilt: 4.0,
            on_desk: 0.9,
            blur: 2,
            noise: 5.0,
            jpeg_quality: 50,
            seed: i as u64 + 1,
            ..Damage::NONE
        },
    },
];

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
    let per_kind = arg("--per-kind", 8);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let forms = PaperForms::load(&root.join("forms")).expect("forms/paper");
    let codes = ["autodichiarazione-sad", "delega"];
    println!(
        "OCR benchmark: {per_kind} forms of each of {} kinds of damage",
        KINDS.len()
    );

    // The corpus: (kind, form, i, clean render, spoiled JPEG, whether its QR code reads).
    let started = Instant::now();
    let mut corpus = Vec::new();
    // `--kind K`: that kind only (when working on it).
    let only = arg("--kind", usize::MAX);
    for (k, kind) in KINDS.iter().enumerate() {
        if only != usize::MAX && k != only {
            continue;
        }
        for j in 0..per_kind {
            let i = k * per_kind + j;
            let form = forms.get(codes[i % codes.len()]).expect("form");
            let pdf = form
                .pdf("Comune di Valleverde", &format!("pratica-{i}"), &|f| {
                    value(&form.code, &f.id, i)
                })
                .expect("PDF");
            let mut page = render(&pdf, kind.dpi);
            if let (true, Some(r)) = (i.is_multiple_of(2), form.layout().signature) {
                scans::sign(&mut page, (r.x, r.y, r.w, r.h), kind.dpi);
            }
            let jpeg = spoil(&page, (kind.damage)(i));
            if let Ok(dir) = std::env::var("OCR_BENCH_SAVE") {
                std::fs::write(format!("{dir}/{k}-{i}.jpg"), &jpeg).expect("saved");
            }
            let decoded = image::load_from_memory(&jpeg).expect("JPEG").to_luma8();
            let qr_reads = !intake::form::qr_codes(&decoded).is_empty();
            corpus.push((k, form.clone(), i, page, jpeg, qr_reads));
        }
    }
    println!("corpus made in {:.1} s", started.elapsed().as_secs_f64());

    // 1. Accuracy: each page read by the pool (one worker, one page at a time, so that the time
    // per page is an upload's), then checked against the pratica as the portal does.
    let pool = worker_pool(1, root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    #[derive(Default)]
    struct Tally {
        fields: usize,
        exact: usize,
        pages: usize,
        qr_readable: usize,
        recognised: usize,
        silent_wrong: usize,
        false_differs: usize,
        clean_pages: usize,
        seconds: f64,
    }
    impl Tally {
        fn add(&mut self, t: &Tally) {
            self.fields += t.fields;
            self.exact += t.exact;
            self.pages += t.pages;
            self.qr_readable += t.qr_readable;
            self.recognised += t.recognised;
            self.silent_wrong += t.silent_wrong;
            self.false_differs += t.false_differs;
            self.clean_pages += t.clean_pages;
            self.seconds += t.seconds;
        }
    }
    let mut tallies: Vec<Tally> = KINDS.iter().map(|_| Tally::default()).collect();
    let mut notes: Vec<String> = Vec::new();
    runtime.block_on(async {
        for (k, form, i, _, spoiled, qr_reads) in &corpus {
            let t = &mut tallies[*k];
            t.pages += 1;
            t.fields += form.fields.len();
            t.qr_readable += usize::from(*qr_reads);
            let started = Instant::now();
            // What the pratica says, as the portal sends it along with the page.
            let mut hints = portal::documents::ocr::Hints::new();
            hints.insert(
                form.code.clone(),
                form.fields
                    .iter()
                    .map(|f| (f.id.clone(), value(&form.code, &f.id, *i)))
                    .filter(|(_, v)| !v.is_empty())
                    .collect(),
            );
            let answer = pool.read_with(spoiled, &hints).await;
            t.seconds += started.elapsed().as_secs_f64();
            let reading = match answer {
                Ok(Answer::Form(reading)) => reading,
                other => {
                    let what = match other {
                        Ok(Answer::Text(_)) => "read as text, not as the form".to_string(),
                        Ok(Answer::Unplaced(_)) => {
                            "QR code read, page not straightened: told (for a manual check)"
                                .to_string()
                        }
                        Ok(Answer::Error(e)) => e,
                        Err(e) => e.to_string(),
                        Ok(Answer::Form(_)) => unreachable!(),
                    };
                    notes.push(format!("{} #{i} ({}): {what}", KINDS[*k].name, form.code));
                    continue;
                }
            };
            t.recognised += 1;
            let printed = |f: &paper::PaperField| Some(value(&form.code, &f.id, *i));
            let checked = paper::check(form, &reading.fields, &printed);
            let mut clean = true;
            for (field, c) in form.fields.iter().zip(&checked) {
                let expected = value(&form.code, &field.id, *i);
                if c.value == expected {
                    t.exact += 1;
                } else if c.problem.is_none() {
                    t.silent_wrong += 1;
                    notes.push(format!(
                        "{} #{i} {}: SILENTLY WRONG {:?} for {expected:?}",
                        KINDS[*k].name, field.id, c.value
                    ));
                }
                if c.expected.is_some() {
                    t.false_differs += 1;
                }
                if let Some(problem) = &c.problem {
                    clean = false;
                    notes.push(format!(
                        "{} #{i} {}: {:?} for {expected:?} ({}%): {problem}",
                        KINDS[*k].name, field.id, c.value, c.confidence
                    ));
                }
            }
            t.clean_pages += usize::from(clean);
        }
    });
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    println!(
        "| kind | fields exact | recognised (QR readable) | wrong without a problem | false \"Diverso\" | pages with no problem | s per page |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut all = Tally::default();
    for (kind, t) in KINDS.iter().zip(&tallies) {
        println!(
            "| {} | {}/{} = {:.1}% | {}/{} ({}) | {} | {} = {:.1}% | {}/{} | {:.2} |",
            kind.name,
            t.exact,
            t.fields,
            pct(t.exact, t.fields),
            t.recognised,
            t.pages,
            t.qr_readable,
            t.silent_wrong,
            t.false_differs,
            pct(t.false_differs, t.fields),
            t.clean_pages,
            t.pages,
            t.seconds / t.pages.max(1) as f64
        );
        all.add(t);
    }
    println!(
        "| **all** | {}/{} = **{:.1}%** (goal ≥ 98%) | {}/{} ({} QR readable; goal: all of them) | **{}** (goal 0) | {} = **{:.1}%** (goal ≤ 1%) | {}/{} | **{:.2}** (goal ≤ 1.5) |",
        all.exact,
        all.fields,
        pct(all.exact, all.fields),
        all.recognised,
        all.pages,
        all.qr_readable,
        all.silent_wrong,
        all.false_differs,
        pct(all.false_differs, all.fields),
        all.clean_pages,
        all.pages,
        all.seconds / all.pages.max(1) as f64
    );
    for note in notes.iter().take(arg("--notes", 40)) {
        println!("  {note}");
    }
    pool.stop();

    if arg("--speed", 1) == 0 {
        return;
    }
    // 2. Speed: the worker processes (the upload's path), in-process engines, the command.
    let pages: Vec<image::GrayImage> = corpus.iter().map(|c| c.3.clone()).take(12).collect();
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
