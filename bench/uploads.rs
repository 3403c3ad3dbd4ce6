//! Many large uploads at once, and their reading by OCR: memory and time.
//!
//!     cargo bench --bench uploads                          # 50 uploads of 20 MB at once
//!     cargo bench --bench uploads -- --uploads 20 --mb 10 --images 10
//!
//! Sportello runs in this process (release build) on a fresh SQLite database; `--uploads` citizens
//! (sessions seeded directly) each send one file of about `--mb` MB at the same moment through the
//! real `POST /domande/{id}/allegati/{slot}`: `--images` of them (half by default) a phone photo of
//! a printed standard form (rendered at 400 dpi by pdftoppm, in colour with sensor noise, JPEG at
//! high quality), the others a scanned PDF. Each goes through multipart parsing, the stream to a
//! temporary file with its SHA-256, the inspection in a child process (`sportello intake`,
//! `documents.inspect_concurrency` at a time), the encryption into the vault; then every photo is
//! read by OCR in the worker processes (`sportello ocr-worker`). The bodies are streamed from one
//! shared buffer per kind, so the load generator adds one file's size per kind, not fifty.
//! Reported: this process's resident memory (sampled every 5 ms until the last reading ended, and
//! the kernel's high-water mark), the peak resident memory of its children (the inspecting
//! children and the OCR workers, summed, sampled alike), each upload's time, the time to the last
//! reading, and the check that every upload was accepted and stored. The goal: this process under
//! 200 MB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "scans.rs"]
mod scans;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{arg, citizen, fresh_database, percentile, start_on};
use lopdf::{dictionary, Document, Object, Stream};
use portal::applications::form::Answers;
use portal::applications::store;
use portal::clock::{Clock, SystemClock};

/// A valid one-page PDF of about `bytes` bytes (an incompressible image-like stream).
fn big_pdf(bytes: usize) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let image = doc.add_object(Stream::new(
        dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => 1, "Height" => 1,
        "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8 },
        noise,
    ));
    let content = doc.add_object(Stream::new(
        dictionary! {},
        b"q 1 0 0 1 0 0 cm /Im1 Do Q".to_vec(),
    ));
    let page = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content,
        "Resources" => dictionary! { "XObject" => dictionary! { "Im1" => image } },
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()] },
        ),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn rss_kb(field: &str) -> u64 {
    status_kb("self", field)
}

/// The resident memory of this process's children, summed (kB).
fn children_rss_kb() -> u64 {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("PPid:") && l.split_whitespace().nth(1) == Some(&me))
        })
        .map(|pid| status_kb(&pid, "VmRSS:"))
        .sum()
}

/// A phone photo of a printed standard form, about `bytes` bytes: the page rendered at 400 dpi,
/// in colour, with sensor noise, as a high-quality JPEG (quality lowered until it fits).
fn photo(bytes: usize) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let forms = portal::documents::paper::PaperForms::load(&root.join("forms")).unwrap();
    let form = forms.get("autodichiarazione-sad").unwrap();
    let pdf = form
        .pdf(
            "Comune di Valleverde",
            "pratica-di-prova",
            &|f| match f.id.as_str() {
                "codice_fiscale" => "RSSMRA80A01H501U".into(),
                "ore" => "6".into(),
                _ => "Mario Rossi".into(),
            },
        )
        .unwrap();
    let page = scans::render(&pdf, 400);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let colour = image::RgbImage::from_fn(page.width(), page.height(), |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let grey = i32::from(page.get_pixel(x, y)[0]);
        let n = |k: u32| ((state >> k) & 0x1f) as i32 - 16;
        let c = |v: i32| v.clamp(0, 255) as u8;
        image::Rgb([c(grey - 8 + n(0)), c(grey - 3 + n(8)), c(grey + 4 + n(16))])
    });
    for quality in [98u8, 95, 92, 90, 85, 80, 75] {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&colour)
            .unwrap();
        if out.len() <= bytes {
            return out;
        }
    }
    panic!("the photo does not fit in {bytes} bytes");
}

#[tokio::main]
async fn main() {
    let uploads: usize = arg("--uploads", 50);
    let mb: usize = arg("--mb", 20);
    let images: usize = arg("--images", uploads / 2).min(uploads);
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = fresh_database(dir.path()).await;
    let (server, base) = start_on(dir.path(), &url, |c| {
        c.documents.intake_program = Some(env!("CARGO_BIN_EXE_sportello").into());
        c.documents.max_file_mb = mb as u64 + 1;
    })
    .await;
    let db = server.db.clone();
    let now = SystemClock.now_ms();
    let mut targets = Vec::new();
    for i in 0..uploads {
        let s = citizen(&db, now, i).await;
        let draft = store::create_draft(
            &db,
            now,
            &store::NewDraft {
                ente_code: "valleverde",
                service_code: "sad",
                form_version: 1,
                applicant_cf: &s.cf,
                answers: &Answers::new(),
            },
        )
        .await
        .unwrap();
        targets.push((s, draft));
    }
    // Just under the limit, with room for the PDF's own structure.
    let file = web_bytes(big_pdf(mb * 1024 * 1024 - 4096));
    let picture = web_bytes(photo(mb * 1024 * 1024 - 4096));
    println!(
        "files: a PDF of {:.1} MB, a photo of {:.1} MB; {images} photos and {} PDFs",
        file.len() as f64 / 1048576.0,
        picture.len() as f64 / 1048576.0,
        uploads - images
    );
    let boundary = "----sportello-bench";
    let head = web_bytes(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scansione.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").into_bytes(),
    );
    let photo_head = web_bytes(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"foto.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").into_bytes(),
    );
    let tail = web_bytes(format!("\r\n--{boundary}--\r\n").into_bytes());
    let client = reqwest::Client::new();
    let before = rss_kb("VmRSS:");

    let peak = Arc::new(AtomicU64::new(before));
    let children_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, children_peak) = (peak.clone(), children_peak.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                peak.fetch_max(rss_kb("VmRSS:"), Ordering::Relaxed);
                // Walking /proc costs more: every 50 ms.
                if n.is_multiple_of(10) {
                    children_peak.fetch_max(children_rss_kb(), Ordering::Relaxed);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, (s, draft)) in targets.into_iter().enumerate() {
        let (client, base) = (client.clone(), base.clone());
        let parts = if n < images {
            vec![photo_head.clone(), picture.clone(), tail.clone()]
        } else {
            vec![head.clone(), file.clone(), tail.clone()]
        };
        tasks.push(tokio::spawn(async move {
            // The body in 64 KiB slices of the shared buffer: nothing copied per upload.
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = parts
                .into_iter()
                .flat_map(|p| {
                    (0..p.len())
                        .step_by(64 * 1024)
                        .map(move |at| Ok(p.slice(at..(at + 64 * 1024).min(p.len()))))
                        .collect::<Vec<_>>()
                })
                .collect();
            let t = Instant::now();
            let r = client
                .post(format!(
                    "{base}/domande/{draft}/allegati/documentazione_sanitaria"
                ))
                .header("Cookie", format!("sportello_session={}", s.token))
                .header("X-CSRF-Token", &s.csrf)
                .header("Accept", "application/json")
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )))
                .send()
                .await
                .unwrap();
            let answer: serde_json::Value = r.json().await.unwrap_or_default();
            (t.elapsed(), answer["stato"].as_str() == Some("accettato"))
        }));
    }
    let mut times = Vec::new();
    let mut accepted = 0;
    for t in tasks {
        let (took, ok) = t.await.unwrap();
        times.push(took);
        accepted += usize::from(ok);
    }
    let wall = started.elapsed();
    // Then every reading ends (read, or not readable within its limits).
    let reading = Instant::now();
    loop {
        let waiting: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE ocr_status = 'in_lettura'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if waiting == 0 || reading.elapsed() > Duration::from_secs(1800) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let read_in = reading.elapsed();
    sampler.abort();
    let outcomes: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT ocr_status, COUNT(*) FROM documents GROUP BY ocr_status ORDER BY ocr_status",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    times.sort();
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM documents WHERE status = 'accettato' AND storage_id IS NOT NULL",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "{uploads} uploads of {mb} MB at once: {:.1} s in all ({:.1} MB/s); per upload p50 {:.1} s, max {:.1} s",
        wall.as_secs_f64(),
        (uploads * mb) as f64 / wall.as_secs_f64(),
        percentile(&times, 0.5).as_secs_f64(),
        times.last().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "readings: all ended {:.1} s after the last upload; {outcomes:?}",
        read_in.as_secs_f64()
    );
    println!(
        "memory of this process (server + load generator): {:.0} MiB before, peak {:.0} MiB sampled, high-water mark {:.0} MiB (includes building the {mb} MB test files)",
        mib(before),
        mib(peak.load(Ordering::Relaxed)),
        mib(rss_kb("VmHWM:"))
    );
    println!(
        "memory of its children (inspection, OCR workers), summed: peak {:.0} MiB sampled",
        mib(children_peak.load(Ordering::Relaxed))
    );
    println!("check: {accepted}/{uploads} accepted, {stored} stored encrypted");
    server.stop().await;
    if accepted != uploads || stored != uploads as i64 {
        std::process::exit(1);
    }
}

fn web_bytes(v: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(v)
}
