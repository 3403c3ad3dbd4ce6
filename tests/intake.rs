//! What an attacker (or bad luck) does to the intake and to the background work: parallel uploads
//! against the quotas, a crash between a document's acceptance and its CSI event, damaged PDFs,
//! misleading names, invisible characters; pages of noise that would hold Tesseract for minutes,
//! an OCR worker killed in the middle of a page, and the alerts that must go out meanwhile.

use std::time::{Duration, Instant};

use image::ImageEncoder;
use portal::clock::Clock;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;

use crate::applications::{ready_draft, submission};
use crate::appointments::Citizen;
use crate::documents::{multipart, pdf_with, upload, SLOT};
use crate::support::{spawn_app_with, TestApp};

/// A PNG of random grey noise: a valid image, and for the form reader and Tesseract a long
/// search for structure that is not there.
fn noise_png(seed: u64, side: u32) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let img = image::GrayImage::from_fn(side, side, |_, _| image::Luma([rng.random::<u8>()]));
    let mut out = Vec::new();
    // Noise does not compress: the fast settings only save time.
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(img.as_raw(), side, side, image::ExtendedColorType::L8)
    .unwrap();
    out
}

/// A plain PNG (reads in an instant: nothing on it).
fn blank_png() -> Vec<u8> {
    let img = image::GrayImage::from_pixel(400, 300, image::Luma([250]));
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

async fn document_id(app: &TestApp, application: &str, label: &str) -> String {
    sqlx::query_scalar(
        "SELECT id FROM documents WHERE application_id = $1 AND label = $2 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(application)
    .bind(label)
    .fetch_one(&app.db().pool)
    .await
    .unwrap()
}

/// Waits (bounded) until the document's reading is over; its state and reason.
async fn reading(app: &TestApp, doc: &str, within: Duration) -> (String, Option<String>) {
    let start = Instant::now();
    loop {
        let (state, reason): (Option<String>, Option<String>) =
            sqlx::query_as("SELECT ocr_status, ocr_reason FROM documents WHERE id = $1")
                .bind(doc)
                .fetch_one(&app.db().pool)
                .await
                .unwrap();
        if state.as_deref() != Some("in_lettura") {
            return (state.unwrap_or_default(), reason);
        }
        assert!(
            start.elapsed() < within,
            "document {doc} still being read after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until the purge job recorded document `doc` as deleted.
async fn wait_purged(app: &TestApp, doc: &str) {
    let start = Instant::now();
    loop {
        let purged: Option<i64> =
            sqlx::query_scalar("SELECT purged_at FROM documents WHERE id = $1")
                .bind(doc)
                .fetch_one(&app.db().pool)
                .await
                .unwrap();
        if purged.is_some() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "document {doc} was not purged within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ocr_workers(app: &TestApp) -> Vec<u32> {
    app.server.as_ref().unwrap().ocr_workers()
}

#[tokio::test]
async fn noise_images_keep_the_documents_lane_busy_but_the_receipt_goes_out_at_once() {
    let app = spawn_app_with(|c| {
        c.documents.ocr_page_cpu_seconds = 30;
        c.documents.inspect_concurrency = 4;
        c.jobs.lanes.documents.workers = 2;
        c.jobs.shutdown_grace_seconds = 1;
    })
    .await;
    let citizen = Citizen::new(&app, 61).await;
    let id = ready_draft(&app, &citizen.cf).await;
    let t = Instant::now();
    let noise = noise_png(1, 2000);
    let uploads = (0..20).map(|n| {
        let (citizen, id, bytes) = (&citizen, &id, &noise);
        async move { upload(citizen, id, &format!("rumore-{n}.png"), bytes).await }
    });
    for (status, answer) in futures_util::future::join_all(uploads).await {
        assert_eq!(
            (status, answer["stato"].as_str()),
            (StatusCode::OK, Some("accettato")),
            "a valid image, however useless"
        );
    }
    eprintln!("20 noise pages made and uploaded in {:?}", t.elapsed());
    // Both documents runners are inside Tesseract.
    let start = Instant::now();
    while ocr_workers(&app).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the OCR workers started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent_at = Instant::now();
    portal::applications::store::submit(
        app.db(),
        app.clock.now_ms(),
        &id,
        &submission(
            &citizen.cf,
            "valleverde",
            &portal::applications::form::Answers::new(),
        ),
    )
    .await
    .expect("submitted");
    let key = format!("alert:ricevuta:{id}");
    loop {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE idempotency_key = $1")
                .bind(&key)
                .fetch_optional(&app.db().pool)
                .await
                .unwrap();
        if status.as_deref() == Some("done") {
            break;
        }
        assert!(
            sent_at.elapsed() < Duration::from_secs(5),
            "the receipt waited behind the documents: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM documents WHERE application_id = $1 AND ocr_status = 'in_lettura'",
    )
    .bind(&id)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    assert!(
        waiting >= 10,
        "the documents lane was still busy ({waiting} pages waiting)"
    );
    eprintln!(
        "receipt delivered {} ms after the submission, with {waiting} noise pages waiting for OCR",
        sent_at.elapsed().as_millis()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_page_over_its_limit_is_not_readable_and_its_worker_is_replaced() {
    let app = spawn_app_with(|c| {
        c.documents.ocr_page_cpu_seconds = 2;
        c.documents.ocr_page_wall_seconds = 20;
        c.jobs.lanes.documents.workers = 1;
        c.documents.ocr_engines = 1;
    })
    .await;
    let citizen = Citizen::new(&app, 62).await;
    let id = ready_draft(&app, &citizen.cf).await;
    let (status, _) = upload(&citizen, &id, "rumore.png", &noise_png(7, 1600)).await;
    assert_eq!(status, StatusCode::OK);
    let doc = document_id(&app, &id, "rumore.png").await;
    // The worker that got the page.
    let start = Instant::now();
    let first = loop {
        if let Some(pid) = ocr_workers(&app).first().copied() {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a worker started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (state, reason) = reading(&app, &doc, Duration::from_secs(30)).await;
    assert_eq!(state, "illeggibile");
    assert_eq!(reason.as_deref(), Some(portal::documents::ocr::TOO_HEAVY));
    assert!(
        !std::path::Path::new(&format!("/proc/{first}")).exists()
            || std::fs::read_to_string(format!("/proc/{first}/stat"))
                .unwrap_or_default()
                .contains(") Z"),
        "the worker over its limit was stopped"
    );
    // The citizen reads why, on the slot's page and in the area personale.
    let page = citizen
        .text(&format!("/domande/{id}/allegati/{SLOT}"))
        .await;
    assert!(
        page.contains("Non leggibile") && page.contains("troppo pesante o confusa"),
        "{page}"
    );
    // The next page is read by a new worker.
    let (status, _) = upload(&citizen, &id, "bianca.png", &blank_png()).await;
    assert_eq!(status, StatusCode::OK);
    let next = document_id(&app, &id, "bianca.png").await;
    assert_eq!(
        reading(&app, &next, Duration::from_secs(30)).await.0,
        "letto"
    );
    let now = ocr_workers(&app);
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], first, "a new worker");
    app.stop().await;
}

#[tokio::test]
async fn an_ocr_worker_killed_in_the_middle_of_a_page_is_replaced_and_the_page_read() {
    use crate::scans::render;
    let app = spawn_app_with(|c| {
        c.documents.ocr_engines = 1;
        c.jobs.lanes.documents.workers = 1;
    })
    .await;
    let citizen = Citizen::new(&app, 63).await;
    let id = ready_draft(&app, &citizen.cf).await;
    // A full page of text: a few seconds of reading.
    let forms =
        portal::documents::paper::PaperForms::load(&crate::support::root().join("forms")).unwrap();
    let form = forms.get("autodichiarazione-sad").unwrap();
    let pdf = form
        .pdf("Comune di Valleverde", "altra-pratica", &|_| {
            "Valore di prova".into()
        })
        .unwrap();
    let page = render(&pdf, 300);
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(page)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let (status, _) = upload(&citizen, &id, "modulo.png", &png).await;
    assert_eq!(status, StatusCode::OK);
    let doc = document_id(&app, &id, "modulo.png").await;
    // Killed (SIGKILL) once it has worked on the page for a while.
    let start = Instant::now();
    let victim = loop {
        if let Some(pid) = ocr_workers(&app).first().copied() {
            if portal::documents::ocr::cpu_time(pid).unwrap_or_default()
                >= Duration::from_millis(600)
            {
                break pid;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker never got busy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let state: Option<String> =
        sqlx::query_scalar("SELECT ocr_status FROM documents WHERE id = $1")
            .bind(&doc)
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(state.as_deref(), Some("in_lettura"), "killed mid-page");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The retry is due after its backoff (5–6 s), on the app's clock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.clock.advance_ms(10_000);
    // The attempt fails, the job is retried (after its backoff) by a new worker, and completes.
    let (state, reason) = reading(&app, &doc, Duration::from_secs(60)).await;
    assert_eq!((state.as_str(), reason), ("letto", None));
    let (attempts, last_error): (i64, Option<String>) = sqlx::query_as(
        "SELECT attempts, last_error FROM jobs WHERE kind = 'documents.ocr' AND payload LIKE $1",
    )
    .bind(format!("%{doc}%"))
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    assert_eq!(attempts, 2, "{last_error:?}");
    assert!(!ocr_workers(&app).contains(&victim));
    app.stop().await;
}

/// A PDF of about 900 kB (a text page and an unused blob).
fn heavy_pdf(n: usize) -> Vec<u8> {
    pdf_with(&format!("Allegato {n}"), |doc, _| {
        doc.add_object(lopdf::Stream::new(
            lopdf::dictionary! {},
            vec![b' '; 900_000],
        ));
    })
}

#[tokio::test]
async fn parallel_uploads_never_store_more_than_the_pratica_s_quota() {
    let app = spawn_app_with(|c| {
        c.documents.max_file_mb = 2;
        c.documents.max_pratica_mb = 5;
        c.documents.inspect_concurrency = 4;
    })
    .await;
    let citizen = Citizen::new(&app, 64).await;
    let id = ready_draft(&app, &citizen.cf).await;
    let one = heavy_pdf(0);
    assert!(one.len() > 880_000 && one.len() < 1_000_000);
    let uploads: Vec<_> = (0..30)
        .map(|n| {
            let citizen = &citizen;
            let id = &id;
            let bytes = heavy_pdf(n);
            async move { upload(citizen, id, &format!("allegato-{n}.pdf"), &bytes).await }
        })
        .collect();
    let answers = futures_util::future::join_all(uploads).await;
    let accepted = answers
        .iter()
        .filter(|(s, a)| *s == StatusCode::OK && a["stato"] == "accettato")
        .count();
    let refused_for_room = answers
        .iter()
        .filter(|(s, a)| {
            *s == StatusCode::PAYLOAD_TOO_LARGE
                && a["motivo"]
                    .as_str()
                    .is_some_and(|m| m.contains("spazio per i documenti è esaurito"))
        })
        .count();
    let (count, bytes): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM documents \
         WHERE application_id = $1 AND removed_at IS NULL AND status <> 'rifiutato'",
    )
    .bind(&id)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    eprintln!("30 parallel uploads of ~0.9 MB against 5 MB: {accepted} accepted, {refused_for_room} refused for room, {bytes} bytes kept");
    assert!(
        bytes <= 5 * 1024 * 1024,
        "{bytes} bytes kept in a 5 MB pratica"
    );
    assert_eq!(count as usize, accepted);
    assert_eq!(accepted, 5, "as many as fit");
    assert_eq!(accepted + refused_for_room, 30, "{answers:?}");
    app.stop().await;
}

/// Makes the database refuse every new outbox row (as a crash or a full disk would stop it).
async fn refuse_outbox(app: &TestApp, on: bool) {
    let sql: Vec<&str> = match (crate::support::backend(), on) {
        (portal::db::Backend::Sqlite, true) => vec![
            "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'injected'); END",
        ],
        (portal::db::Backend::Sqlite, false) => vec!["DROP TRIGGER refuse_outbox"],
        (portal::db::Backend::Postgres, true) => vec![
            "CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$",
            "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse_outbox()",
        ],
        (portal::db::Backend::Postgres, false) => vec![
            "DROP TRIGGER refuse_outbox ON outbox",
            "DROP FUNCTION refuse_outbox()",
        ],
    };
    for s in sql {
        sqlx::query(s).execute(&app.db().pool).await.unwrap();
    }
}

#[tokio::test]
async fn a_document_is_accepted_with_its_csi_event_or_not_at_all() {
    let app = spawn_app_with(|_| {}).await;
    let citizen = Citizen::new(&app, 65).await;
    let id = ready_draft(&app, &citizen.cf).await;
    // The office asked for documents: an answer goes to the CSI as it is accepted.
    sqlx::query("UPDATE applications SET status = 'in_attesa_di_integrazioni' WHERE id = $1")
        .bind(&id)
        .execute(&app.db().pool)
        .await
        .unwrap();
    let events = |app: &TestApp| {
        let pool = app.db().pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM outbox WHERE event_type = 'documento.ricevuto'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let files = |app: &TestApp| {
        std::fs::read_dir(app.config.data_dir.join("files"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name() != "sportello-storage-check")
            })
            .count()
    };
    refuse_outbox(&app, true).await;
    let (status, _) = upload(
        &citizen,
        &id,
        "risposta.pdf",
        &pdf_with("Risposta", |_, _| {}),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let doc = document_id(&app, &id, "risposta.pdf").await;
    let (state, reason): (String, Option<String>) =
        sqlx::query_as("SELECT status, reason FROM documents WHERE id = $1")
            .bind(&doc)
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(state, "rifiutato", "not accepted without its event");
    assert!(reason.unwrap_or_default().contains("Riprova"));
    assert_eq!(events(&app).await, 0);
    assert_eq!(files(&app), 0, "its stored bytes were deleted");

    refuse_outbox(&app, false).await;
    let (status, answer) = upload(
        &citizen,
        &id,
        "risposta.pdf",
        &pdf_with("Risposta", |_, _| {}),
    )
    .await;
    assert_eq!(
        (status, answer["stato"].as_str()),
        (StatusCode::OK, Some("accettato"))
    );
    assert_eq!(events(&app).await, 1, "accepted with its event");
    assert_eq!(files(&app), 1);
    app.stop().await;
}

#[tokio::test]
async fn damaged_pdfs_misleading_names_and_invisible_characters_are_dealt_with() {
    let app = spawn_app_with(|_| {}).await;
    let citizen = Citizen::new(&app, 66).await;
    let id = ready_draft(&app, &citizen.cf).await;

    // A valid PDF cut in half.
    let whole = pdf_with("Certificato", |_, _| {});
    let (status, answer) =
        upload(&citizen, &id, "certificato.pdf", &whole[..whole.len() / 2]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["stato"], "rifiutato");
    assert!(
        answer["motivo"]
            .as_str()
            .unwrap()
            .contains("incompleto o danneggiato"),
        "{answer}"
    );

    // A PDF named as a web page, and a name that reverses itself on screen.
    let (_, answer) = upload(&citizen, &id, "relazione.html", &whole).await;
    assert_eq!(answer["stato"], "accettato");
    let (_, answer) = upload(&citizen, &id, "fattura\u{202E}fdp.exe", &whole).await;
    assert_eq!(answer["stato"], "accettato");
    let html_doc = document_id(&app, &id, "relazione.html").await;
    let r = citizen.get(&format!("/documenti/{html_doc}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.contains("filename=\"relazione.pdf\""),
        "{disposition}"
    );
    let labels: Vec<String> =
        sqlx::query_scalar("SELECT label FROM documents WHERE application_id = $1")
            .bind(&id)
            .fetch_all(&app.db().pool)
            .await
            .unwrap();
    assert!(labels.contains(&"fatturafdp.exe".to_string()), "{labels:?}");
    assert!(!labels.iter().any(|l| l.contains('\u{202E}')));
    let renamed = document_id(&app, &id, "fatturafdp.exe").await;
    let disposition = citizen
        .get(&format!("/documenti/{renamed}"))
        .await
        .headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.contains("filename=\"fatturafdp.pdf\""),
        "{disposition}"
    );

    // The refused one is listed in the area personale without a link that leads nowhere.
    let area = citizen.text("/area-personale/documenti").await;
    let refused = document_id(&app, &id, "certificato.pdf").await;
    assert!(area.contains("certificato.pdf"), "{area}");
    // (Tera writes "/" in attributes as "&#x2F;".)
    let link = |id: &str| format!("&#x2F;documenti&#x2F;{id}");
    assert!(!area.contains(&link(&refused)), "{area}");
    assert!(area.contains(&link(&html_doc)), "{area}");

    // A removed document's stored bytes are deleted by its job.
    let storage: String = sqlx::query_scalar("SELECT storage_id FROM documents WHERE id = $1")
        .bind(&renamed)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    let stored = app.config.data_dir.join("files").join(&storage);
    assert!(stored.exists());
    let r = citizen
        .post(
            &format!("/domande/{id}/allegati/{SLOT}/{renamed}/rimuovi"),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The job deletes the bytes, then records it: wait for the record.
    wait_purged(&app, &renamed).await;
    assert!(!stored.exists(), "the removed file's bytes were deleted");
    app.stop().await;
}

#[tokio::test]
async fn answers_made_only_of_invisible_characters_do_not_fill_a_required_field() {
    let app = spawn_app_with(|_| {}).await;
    app.login("mario-rossi").await;
    let id = crate::applications::start(&app, "fna-b2", "valleverde").await;
    let step1 = [
        ("richiedente_nome", "Mario"),
        ("richiedente_cognome", "Rossi"),
        ("richiedente_cf", "RSSMRA80A01H501U"),
        ("richiedente_nascita", "01/01/1980"),
        ("residenza_cap", "20100"),
        ("residenza_comune", "Valleverde"),
        ("email", "mario.rossi@example.it"),
        ("telefono", "333 1234567"),
        ("per_se_stesso", "si"),
    ];
    for invisible in [
        "\u{200B}",
        "\u{202E}",
        "\u{FEFF}",
        "\u{0000}",
        " \u{2066}\u{00A0}",
    ] {
        let mut fields = step1.to_vec();
        fields.push(("residenza_indirizzo", invisible));
        let r = crate::applications::step(&app, &id, 1, "avanti", &fields).await;
        assert_ne!(
            r.status(),
            StatusCode::SEE_OTHER,
            "{invisible:?} filled the field"
        );
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Questo campo è obbligatorio"),
            "{invisible:?}"
        );
    }
    // Visible text keeps its letters, without the characters that reorder it.
    let mut fields = step1.to_vec();
    fields.push(("residenza_indirizzo", "Via Roma\u{202E} 1\u{200B}"));
    let r = crate::applications::step(&app, &id, 1, "avanti", &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let answers: String = sqlx::query_scalar("SELECT answers FROM applications WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    assert!(answers.contains("\"Via Roma 1\""), "{answers}");
    app.stop().await;
}

#[tokio::test]
async fn a_plain_form_upload_keeps_its_name_clean_too() {
    // Without script: the multipart name through the same cleaning.
    let app = spawn_app_with(|_| {}).await;
    let citizen = Citizen::new(&app, 67).await;
    let id = ready_draft(&app, &citizen.cf).await;
    let (content_type, body) = multipart("\u{200B}\u{FEFF}.pdf", &pdf_with("x", |_, _| {}));
    let r = citizen
        .raw_post(
            &format!(
                "/domande/{id}/allegati/{SLOT}?csrf_token={}",
                citizen.csrf()
            ),
            &content_type,
            body,
            false,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let labels: Vec<String> =
        sqlx::query_scalar("SELECT label FROM documents WHERE application_id = $1")
            .bind(&id)
            .fetch_all(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(labels, vec!["pdf".to_string()]);
    app.stop().await;
}

#[tokio::test]
async fn a_closed_pratica_s_documents_lose_their_bytes_after_the_retention() {
    use portal::jobs::JobHandler;
    let app = spawn_app_with(|c| c.documents.retention_days = Some(30)).await;
    let citizen = Citizen::new(&app, 68).await;
    let now = app.clock.now_ms();
    let day = 86_400_000i64;
    // Two pratiche, each with a document: one accepted 31 days ago, one 10 days ago.
    let mut stored = Vec::new();
    for (n, closed_days_ago) in [(0, 31), (1, 10)] {
        let id = ready_draft(&app, &citizen.cf).await;
        let (_, answer) = upload(
            &citizen,
            &id,
            &format!("doc-{n}.pdf"),
            &pdf_with("Doc", |_, _| {}),
        )
        .await;
        assert_eq!(answer["stato"], "accettato");
        let doc = document_id(&app, &id, &format!("doc-{n}.pdf")).await;
        sqlx::query("UPDATE applications SET status = 'accolta' WHERE id = $1")
            .bind(&id)
            .execute(&app.db().pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO application_history (application_id, from_status, to_status, at, actor_kind) \
             VALUES ($1, 'presa_in_carico', 'accolta', $2, 'operatore')",
        )
        .bind(&id)
        .bind(now - closed_days_ago * day)
        .execute(&app.db().pool)
        .await
        .unwrap();
        let storage: String = sqlx::query_scalar("SELECT storage_id FROM documents WHERE id = $1")
            .bind(&doc)
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
        stored.push((doc, app.config.data_dir.join("files").join(storage)));
    }
    // The hourly sweep (run here at once) queues the old one's deletion; the documents lane does it.
    let ctx = portal::jobs::JobContext {
        db: app.db().clone(),
        clock: std::sync::Arc::new(app.clock.clone()),
    };
    let job = portal::jobs::Job {
        id: 0,
        kind: portal::documents::purge::RETENTION_JOB.into(),
        payload: "{}".into(),
        attempts: 1,
        max_attempts: 8,
    };
    portal::documents::purge::Retention {
        retention_days: Some(30),
    }
    .run(&ctx, &job)
    .await
    .unwrap();
    wait_purged(&app, &stored[0].0).await;
    assert!(!stored[0].1.exists(), "the old pratica's file was deleted");
    assert!(stored[1].1.exists(), "the recent one is kept");
    let label: String = sqlx::query_scalar("SELECT label FROM documents WHERE id = $1")
        .bind(&stored[0].0)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    assert_eq!(label, "doc-0.pdf", "the row stays, with what was sent");
    app.stop().await;
}
