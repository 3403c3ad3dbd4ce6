//! Many large uploads at once: memory and time.
//!
//!     cargo bench --bench uploads                          # 50 uploads of 20 MB at once
//!     cargo bench --bench uploads -- --uploads 20 --mb 10
//!
//! Sportello runs in this process (release build) on a fresh SQLite database; `--uploads` citizens
//! (sessions seeded directly) each send one PDF of `--mb` MB at the same moment through the real
//! `POST /domande/{id}/allegati/{slot}`: multipart parsing, the stream to a temporary file with its
//! SHA-256, the inspection in a child process (`sportello intake`, `documents.inspect_concurrency`
//! at a time), the encryption into the vault. The bodies are streamed from one shared buffer, so the
//! load generator adds one file's size, not fifty. Reported: this process's resident memory
//! (sampled every 5 ms, and the kernel's high-water mark), each upload's time, and the check that
//! every upload was accepted and stored. The goal: peak under 200 MB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

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

fn rss_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let uploads: usize = arg("--uploads", 50);
    let mb: usize = arg("--mb", 20);
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
    let boundary = "----sportello-bench";
    let head = web_bytes(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scansione.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").into_bytes(),
    );
    let tail = web_bytes(format!("\r\n--{boundary}--\r\n").into_bytes());
    let client = reqwest::Client::new();
    let before = rss_kb("VmRSS:");

    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kb("VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (s, draft) in targets {
        let (client, base) = (client.clone(), base.clone());
        let parts = vec![head.clone(), file.clone(), tail.clone()];
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
    sampler.abort();
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
        "memory of this process (server + load generator): {:.0} MiB before, peak {:.0} MiB sampled, high-water mark {:.0} MiB (includes building the {mb} MB test file)",
        mib(before),
        mib(peak.load(Ordering::Relaxed)),
        mib(rss_kb("VmHWM:"))
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
