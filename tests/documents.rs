//! Document intake through HTTP: uploads for a pratica's attachment slots, inspected in a child
//! process with limits, kept encrypted, listed on the receipt, downloaded only by who may. A corpus
//! of hostile files made here, each refused with its message while the portal keeps answering.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};
use portal::clock::Clock;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::applications::{ready_draft, submission};
use crate::appointments::Citizen;
use crate::support::{spawn_app_with, S3Server, TestApp};

pub(crate) const SLOT: &str = "documentazione_sanitaria";

async fn app() -> TestApp {
    spawn_app_with(|c| {
        c.documents.max_file_mb = 2;
        c.csi.clients = vec![
            crate::csi::client("cartella-vv", "segreto-vv", "valleverde"),
            crate::csi::client("cartella-mb", "segreto-mb", "montebello"),
        ];
    })
    .await
}

/// A one-page PDF saying `text`; `change` may add to it before it is saved.
pub(crate) fn pdf_with(text: &str, change: impl FnOnce(&mut Document, lopdf::ObjectId)) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let content = Content {
        operations: vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("Td", vec![72.into(), 720.into()]),
            Operation::new("Tj", vec![Object::string_literal(text)]),
            Operation::new("ET", vec![]),
        ],
    };
    let stream = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
    let page = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => stream,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1,
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    change(&mut doc, catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([20, 90, 200]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([120, 120, 120]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    out
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A multipart body with one file part.
pub(crate) fn multipart(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----sportello-test-boundary-7d1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads as the script does (JSON answer); returns the status and the answer.
pub(crate) async fn upload(
    c: &Citizen,
    id: &str,
    name: &str,
    bytes: &[u8],
) -> (StatusCode, serde_json::Value) {
    let (content_type, body) = multipart(name, bytes);
    let r = c
        .raw_post(
            &format!("/domande/{id}/allegati/{SLOT}"),
            &content_type,
            body,
            true,
        )
        .await;
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn documents_are_checked_kept_encrypted_and_listed_on_the_receipt() {
    let app = app().await;
    let citizen = Citizen::new(&app, 31).await;
    let id = ready_draft(&app, &citizen.cf).await;

    // From the step: the button saves the step and opens the slot's page.
    let page = citizen
        .text(&format!("/domande/{id}/allegati/{SLOT}?passo=3"))
        .await;
    assert!(
        page.contains("Carica un documento") && page.contains("Nessun documento ancora"),
        "{page}"
    );

    // A PDF, sent as a plain form would (no script: the token in the address, a redirect back).
    let certificate = pdf_with("Relazione del medico di base", |_, _| {});
    let (content_type, body) = multipart("../../etc/relazione medico.pdf", &certificate);
    let r = citizen
        .raw_post(
            &format!(
                "/domande/{id}/allegati/{SLOT}?csrf_token={}&passo=3",
                citizen.csrf()
            ),
            &content_type,
            body,
            false,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        back.contains("esito=accettato") && back.contains("passo=3"),
        "{back}"
    );
    let page = citizen.text(&back).await;
    assert!(
        page.contains("relazione medico.pdf") && page.contains("Accettato"),
        "{page}"
    );
    assert!(
        !page.contains("etc&#x2F;"),
        "the name is a label, never a path"
    );

    // A photo: accepted, and stored re-encoded (its metadata and anything after it gone).
    let (status, answer) = upload(&citizen, &id, "verbale.jpg", &jpeg(64, 48)).await;
    assert_eq!(
        (status, answer["stato"].as_str()),
        (StatusCode::OK, Some("accettato"))
    );

    let docs: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id, label, sha256, storage_id FROM documents WHERE application_id = $1 ORDER BY created_at, label",
    )
    .bind(&id)
    .fetch_all(&app.db().pool)
    .await
    .unwrap();
    assert_eq!(docs.len(), 2);
    let (pdf_id, _, pdf_sha, pdf_storage) = docs
        .iter()
        .find(|d| d.1.ends_with(".pdf"))
        .cloned()
        .unwrap();
    assert_eq!(pdf_sha, sha256(&certificate));
    // Encrypted at rest, under a random name.
    let stored = std::fs::read(app.config.data_dir.join("files").join(&pdf_storage)).unwrap();
    assert!(!stored.windows(8).any(|w| w == b"Relazion") && !stored.starts_with(b"%PDF"));
    assert!(!pdf_storage.contains("relazione"));

    // Downloaded by its owner as it was uploaded, as an attachment.
    let r = citizen.get(&format!("/documenti/{pdf_id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), certificate.as_slice());

    // Another citizen: it does not exist. An operator of another ente neither; of this ente, an
    // audited read.
    let other = Citizen::new(&app, 32).await;
    assert_eq!(
        other.get(&format!("/documenti/{pdf_id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other
            .get(&format!("/domande/{id}/allegati/{SLOT}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let (ct, body) = multipart("x.pdf", &certificate);
    assert_eq!(
        other
            .raw_post(&format!("/domande/{id}/allegati/{SLOT}"), &ct, body, true)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let stranger = Citizen::staff(&app, 33, "montebello", portal::auth::Role::Operatore).await;
    assert_eq!(
        stranger.get(&format!("/documenti/{pdf_id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let operator = Citizen::staff(&app, 34, "valleverde", portal::auth::Role::Operatore).await;
    assert_eq!(
        operator.get(&format!("/documenti/{pdf_id}")).await.status(),
        StatusCode::OK
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE subject_cf = $1 AND object = $2")
            .bind(&citizen.cf)
            .bind(format!("documento:{pdf_id}"))
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(audited, 1, "the operator's read is audited");

    // At submission the receipt's snapshot lists both, with size and SHA-256.
    let answers = portal::applications::form::Answers::new();
    portal::applications::store::submit(
        app.db(),
        app.clock.now_ms(),
        &id,
        &submission(&citizen.cf, "valleverde", &answers),
    )
    .await
    .unwrap();
    let snapshot: String = sqlx::query_scalar("SELECT snapshot FROM applications WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    let listed = snapshot["attachments"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .any(|a| a["sha256"] == pdf_sha.as_str() && a["size"] == certificate.len()));
    // The CSI hears of each document, by reference, and downloads it with its own token; the CSI
    // of another ente cannot.
    let vv = crate::csi::token(&app, "cartella-vv", "segreto-vv").await;
    let feed: serde_json::Value = app
        .client
        .get(app.absolute("/csi/eventi"))
        .bearer_auth(&vv)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let received: Vec<&serde_json::Value> = feed["eventi"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "it.sportello.documento.ricevuto.v1")
        .collect();
    assert_eq!(received.len(), 2, "{feed}");
    for e in &received {
        portal::csi::events::validate("documento.ricevuto", &e["data"]).unwrap();
    }
    let href = received
        .iter()
        .find(|e| e["data"]["documento"] == pdf_id.as_str())
        .map(|e| e["data"]["href"].as_str().unwrap().to_string())
        .unwrap();
    let by_csi = app
        .client
        .get(app.absolute(&href))
        .bearer_auth(&vv)
        .send()
        .await
        .unwrap();
    assert_eq!(by_csi.status(), StatusCode::OK);
    assert_eq!(
        by_csi.bytes().await.unwrap().as_ref(),
        certificate.as_slice()
    );
    let mb = crate::csi::token(&app, "cartella-mb", "segreto-mb").await;
    let other_csi = app
        .client
        .get(app.absolute(&href))
        .bearer_auth(&mb)
        .send()
        .await
        .unwrap();
    assert_eq!(other_csi.status(), StatusCode::NOT_FOUND);
    let anonymous = app.client.get(app.absolute(&href)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // The operator sees them on the pratica's page and opens one in the browser.
    let desk = operator.text(&format!("/ufficio/pratiche/{id}")).await;
    assert!(
        desk.contains("relazione medico.pdf")
            && desk.contains(&format!("/documenti/{pdf_id}?vedi=1")),
        "{desk}"
    );
    let inline = operator.get(&format!("/documenti/{pdf_id}?vedi=1")).await;
    assert!(inline.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline"));
    // Sent: the documents can no longer change.
    let (status, _) = upload(&citizen, &id, "tardi.pdf", &certificate).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A stored file altered on disk is detected, never served.
    let path = app.config.data_dir.join("files").join(&pdf_storage);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let r = citizen.get(&format!("/documenti/{pdf_id}")).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!r.text().await.unwrap().contains("Relazione"));
    app.stop().await;
}

#[tokio::test]
async fn hostile_files_are_refused_with_their_message_and_the_portal_carries_on() {
    let app = app().await;
    let citizen = Citizen::new(&app, 41).await;
    let id = ready_draft(&app, &citizen.cf).await;
    let valid = pdf_with("Certificato", |_, _| {});

    let nested = {
        let mut f = b"%PDF-1.5\n1 0 obj\n".to_vec();
        f.extend(std::iter::repeat_n(b'[', 200_000));
        f.extend(std::iter::repeat_n(b']', 200_000));
        f.extend_from_slice(b"\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
        f
    };
    let bomb = pdf_with("x", |doc, _| {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..24 {
            z.write_all(&zeros).unwrap();
        }
        let packed = z.finish().unwrap();
        let pages = doc.get_pages();
        let page = *pages.values().next().unwrap();
        let stream = doc.add_object(Stream::new(
            dictionary! { "Filter" => "FlateDecode" },
            packed,
        ));
        if let Ok(Object::Dictionary(d)) = doc.get_object_mut(page) {
            d.set("Contents", stream);
        }
    });
    let javascript = pdf_with("x", |doc, catalog| {
        if let Ok(Object::Dictionary(d)) = doc.get_object_mut(catalog) {
            d.set(
                "OpenAction",
                dictionary! { "S" => "JavaScript", "JS" => Object::string_literal("app.alert(1)") },
            );
        }
    });
    let encrypted = pdf_with("x", |doc, _| {
        doc.trailer.set(
            "Encrypt",
            dictionary! {
                "Filter" => "Standard", "V" => 1, "R" => 2, "P" => -4,
                "O" => Object::string_literal(vec![7u8; 32]),
                "U" => Object::string_literal(vec![9u8; 32]),
            },
        );
        doc.trailer.set(
            "ID",
            vec![
                Object::string_literal(vec![1u8; 16]),
                Object::string_literal(vec![1u8; 16]),
            ],
        );
    });
    let polyglot = {
        let mut f = jpeg(16, 16);
        f.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00secret.txt");
        f
    };
    let huge = {
        let mut f = png(1, 1);
        f[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        f[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        // The header's checksum made right again: only the size is a lie.
        let mut crc = flate2::Crc::new();
        crc.update(&f[12..29]);
        f[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        f
    };
    let too_big = vec![b'%'; 3 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("vuoto.pdf", Vec::new(), StatusCode::OK, "vuoto"),
        (
            "troncato.pdf",
            valid[..40].to_vec(),
            StatusCode::OK,
            "danneggiato",
        ),
        ("annidato.pdf", nested, StatusCode::OK, "Il "),
        (
            "senza-pagine.pdf",
            b"%PDF-1.4\ntrailer\n<< >>\n%%EOF\n".to_vec(),
            StatusCode::OK,
            "danneggiato",
        ),
        ("bomba.pdf", bomb, StatusCode::OK, "enormi"),
        ("script.pdf", javascript, StatusCode::OK, "codice"),
        ("protetto.pdf", encrypted, StatusCode::OK, "password"),
        ("foto.jpg", polyglot, StatusCode::OK, "nascosti"),
        ("gigante.png", huge, StatusCode::OK, "pixel"),
        (
            "programma.pdf",
            b"MZ\x90\x00\x03".to_vec(),
            StatusCode::OK,
            "non è un PDF, un JPEG o un PNG",
        ),
        (
            "grande.pdf",
            too_big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "supera i 2 MB",
        ),
    ];
    for (name, bytes, expected, message) in cases {
        let (status, answer) = upload(&citizen, &id, name, &bytes).await;
        assert_eq!(status, expected, "{name}: {answer}");
        assert_eq!(answer["stato"], "rifiutato", "{name}: {answer}");
        let reason = answer["motivo"].as_str().unwrap_or_default();
        assert!(reason.contains(message), "{name}: {reason}");
        assert_eq!(
            app.get("/healthz").await.status(),
            StatusCode::OK,
            "after {name}"
        );
    }
    // The refusals are listed with their reasons; nothing refused was stored.
    let page = citizen
        .text(&format!("/domande/{id}/allegati/{SLOT}"))
        .await;
    assert!(page.contains("Rifiutato") && page.contains("password"));
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM documents WHERE application_id = $1 AND storage_id IS NOT NULL",
    )
    .bind(&id)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(
        std::fs::read_dir(app.config.data_dir.join("tmp"))
            .unwrap()
            .count(),
        0,
        "no temporary file left behind"
    );
    // A file can be removed, and a good one still goes in.
    let (status, answer) = upload(&citizen, &id, "buono.pdf", &valid).await;
    assert_eq!(
        (status, answer["stato"].as_str()),
        (StatusCode::OK, Some("accettato"))
    );
    app.stop().await;
}

/// Polls until the document's reading is done; returns its OCR state.
async fn read_done(app: &TestApp, doc: &str) -> String {
    for _ in 0..600 {
        let state: Option<String> =
            sqlx::query_scalar("SELECT ocr_status FROM documents WHERE id = $1")
                .bind(doc)
                .fetch_one(&app.db().pool)
                .await
                .unwrap();
        if state.as_deref() != Some("in_lettura") {
            return state.unwrap_or_default();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("document {doc} still being read after 60 s");
}

async fn document_named(app: &TestApp, id: &str, label: &str) -> String {
    sqlx::query_scalar("SELECT id FROM documents WHERE application_id = $1 AND label = $2")
        .bind(id)
        .bind(label)
        .fetch_one(&app.db().pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_standard_form_comes_back_as_a_photo_and_is_read_checked_and_compared() {
    use crate::scans::{render, sign, spoil, Damage};
    let app = app().await;
    let citizen = Citizen::new(&app, 41).await;
    let (id, pdf) = pratica_with_form(
        &app,
        &citizen,
        &[
            ("richiedente_cognome", "Prova41"),
            ("richiedente_nome", "Maria"),
            ("indirizzo_assistenza", "Via Roma 12"),
            ("ore_settimanali", "6"),
        ],
    )
    .await;
    // The slot's page offers the form, printed with the pratica's data.
    let page = citizen
        .text(&format!("/domande/{id}/allegati/{SLOT}"))
        .await;
    assert!(
        page.contains("Moduli da firmare") && page.contains("/moduli/autodichiarazione-sad.pdf"),
        "{page}"
    );
    let text = crate::applications::pdf_text(&pdf);
    assert!(
        text.contains("Prova41") && text.contains(&citizen.cf) && text.contains("Via Roma 12"),
        "{text}"
    );
    assert_eq!(
        citizen
            .get(&format!("/domande/{id}/moduli/delega.pdf"))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a form of no service of this pratica"
    );

    // Printed, signed, photographed slightly turned, noisy, as a JPEG at quality 50.
    let forms =
        portal::documents::paper::PaperForms::load(&crate::support::root().join("forms")).unwrap();
    let box_ = forms
        .get("autodichiarazione-sad")
        .unwrap()
        .layout()
        .signature
        .unwrap();
    let mut page = render(&pdf, 200);
    let blank = page.clone();
    sign(&mut page, (box_.x, box_.y, box_.w, box_.h), 200);
    let photo = spoil(
        &page,
        Damage {
            rotation: 2.0,
            noise: 8.0,
            jpeg_quality: 50,
            ..Damage::NONE
        },
    );
    let (status, answer) = upload(&citizen, &id, "modulo.jpg", &photo).await;
    assert_eq!(
        (status, answer["stato"].as_str()),
        (StatusCode::OK, Some("accettato")),
        "{answer}"
    );
    let signed_doc = document_named(&app, &id, "modulo.jpg").await;
    assert_eq!(read_done(&app, &signed_doc).await, "letto");
    let fields: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT field, value, confidence, problem FROM document_fields WHERE document_id = $1 ORDER BY position",
    )
    .bind(&signed_doc)
    .fetch_all(&app.db().pool)
    .await
    .unwrap();
    let value = |f: &str| {
        fields
            .iter()
            .find(|x| x.0 == f)
            .map(|x| x.1.clone())
            .unwrap_or_default()
    };
    assert_eq!(value("codice_fiscale"), citizen.cf, "{fields:?}");
    assert_eq!(value("cognome"), "Prova41", "{fields:?}");
    assert_eq!(value("indirizzo"), "Via Roma 12", "{fields:?}");
    assert_eq!(value("ore"), "6", "{fields:?}");
    assert!(
        fields.iter().all(|f| f.3.is_none()),
        "no problem: {fields:?}"
    );
    let (form, signed): (Option<String>, Option<i32>) =
        sqlx::query_as("SELECT form_code, signed FROM documents WHERE id = $1")
            .bind(&signed_doc)
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(
        (form.as_deref(), signed),
        (Some("autodichiarazione-sad"), Some(1))
    );
    let page_html = citizen
        .text(&format!("/domande/{id}/allegati/{SLOT}"))
        .await;
    assert!(
        page_html.contains("Dati letti dal modulo")
            && page_html.contains("Firma presente")
            && page_html.contains("Letto"),
        "{page_html}"
    );

    // The same photo scanned into a PDF (a picture per page, no text layer), behind a page of a
    // letter sent as raw grey samples: the letter's page is read as text, the form as the form.
    let letter = render(&pdf_with("Relazione del medico curante", |_, _| {}), 200);
    let scan = scanned_pdf(&[
        ScanPage::Raw(letter.clone()),
        ScanPage::Jpeg(
            photo.clone(),
            image::load_from_memory(&photo)
                .unwrap()
                .to_luma8()
                .dimensions(),
        ),
    ]);
    let (status, answer) = upload(&citizen, &id, "scansione.pdf", &scan).await;
    assert_eq!(
        (status, answer["stato"].as_str()),
        (StatusCode::OK, Some("accettato")),
        "{answer}"
    );
    let scan_doc = document_named(&app, &id, "scansione.pdf").await;
    assert_eq!(read_done(&app, &scan_doc).await, "letto");
    let (form, signed): (Option<String>, Option<i32>) =
        sqlx::query_as("SELECT form_code, signed FROM documents WHERE id = $1")
            .bind(&scan_doc)
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(
        (form.as_deref(), signed),
        (Some("autodichiarazione-sad"), Some(1))
    );
    let scanned_cf: String = sqlx::query_scalar(
        "SELECT value FROM document_fields WHERE document_id = $1 AND field = 'codice_fiscale'",
    )
    .bind(&scan_doc)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    assert_eq!(scanned_cf, citizen.cf);
    // A scan of a letter alone: its text, from the picture.
    let (status, _) = upload(
        &citizen,
        &id,
        "lettera.pdf",
        &scanned_pdf(&[ScanPage::Raw(letter)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let letter_doc = document_named(&app, &id, "lettera.pdf").await;
    assert_eq!(read_done(&app, &letter_doc).await, "letto");
    let text: Option<String> = sqlx::query_scalar("SELECT ocr_text FROM documents WHERE id = $1")
        .bind(&letter_doc)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    assert!(
        text.as_deref()
            .unwrap_or_default()
            .contains("medico curante"),
        "{text:?}"
    );
    // The pictures are kept encrypted too.
    let scans: Vec<(String,)> =
        sqlx::query_as("SELECT storage_id FROM document_scans WHERE document_id = $1")
            .bind(&scan_doc)
            .fetch_all(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(scans.len(), 2);
    for (storage,) in &scans {
        let stored = std::fs::read(app.config.data_dir.join("files").join(storage)).unwrap();
        assert!(!stored.starts_with(b"\x89PNG"));
    }

    // The citizen changed the address since printing, and sent the photo unsigned: both flagged.
    let mut changed = portal::applications::store::get(app.db(), &id)
        .await
        .unwrap()
        .unwrap()
        .answers;
    changed.insert(
        "indirizzo_assistenza".into(),
        serde_json::Value::String("Via Milano 3".into()),
    );
    sqlx::query("UPDATE applications SET answers = $2 WHERE id = $1")
        .bind(&id)
        .bind(serde_json::to_string(&changed).unwrap())
        .execute(&app.db().pool)
        .await
        .unwrap();
    let unsigned = spoil(
        &blank,
        Damage {
            rotation: -1.5,
            noise: 6.0,
            jpeg_quality: 60,
            seed: 7,
            ..Damage::NONE
        },
    );
    let (status, _) = upload(&citizen, &id, "senza-firma.jpg", &unsigned).await;
    assert_eq!(status, StatusCode::OK);
    let unsigned_doc = document_named(&app, &id, "senza-firma.jpg").await;
    assert_eq!(read_done(&app, &unsigned_doc).await, "letto");
    let page_html = citizen
        .text(&format!("/domande/{id}/allegati/{SLOT}"))
        .await;
    assert!(
        page_html.contains("La casella della firma sembra vuota"),
        "{page_html}"
    );
    assert!(
        page_html.contains("Diverso da quanto scritto nella domanda: «Via Milano 3»"),
        "{page_html}"
    );

    // The citizen corrects the reading; the operator sees reading, confidence, problem, correction.
    let r = citizen
        .post(
            &format!("/domande/{id}/allegati/{SLOT}/{unsigned_doc}/campi"),
            &[
                ("campo_indirizzo", "Via Milano 3"),
                ("campo_cognome", "Prova41"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (corrected, confirmed): (Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT corrected, confirmed_at FROM document_fields WHERE document_id = $1 AND field = 'indirizzo'",
    )
    .bind(&unsigned_doc)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    assert_eq!(corrected.as_deref(), Some("Via Milano 3"));
    assert!(confirmed.is_some());
    let empty = portal::applications::form::Answers::new();
    portal::applications::store::submit(
        app.db(),
        app.clock.now_ms(),
        &id,
        &submission(&citizen.cf, "valleverde", &empty),
    )
    .await
    .unwrap()
    .unwrap();
    let operator = Citizen::staff(&app, 42, "valleverde", portal::auth::Role::Operatore).await;
    // The queue holds it as an item to check, and can show only those.
    let queue = operator.text("/ufficio/pratiche?moduli=si").await;
    assert!(queue.contains("Modulo da controllare"), "{queue}");
    let desk = operator.text(&format!("/ufficio/pratiche/{id}")).await;
    assert!(
        desk.contains("Modulo autodichiarazione-sad letto")
            && desk.contains("firma mancante")
            && desk.contains("corretto dal cittadino: Via Milano 3")
            && desk.contains("%</td>"),
        "{desk}"
    );
    // The box that differs is shown as photographed beside its reading, to the operator (and the
    // citizen), and to no one else.
    assert!(
        desk.contains("data-testid=\"riquadro-indirizzo\""),
        "{desk}"
    );
    let crop_url = format!("/documenti/{unsigned_doc}/campi/indirizzo");
    for who in [&operator, &citizen] {
        let crop = who.get(&crop_url).await;
        assert_eq!(crop.status(), StatusCode::OK);
        assert_eq!(crop.headers()["content-type"], "image/png");
        let png = image::load_from_memory(&crop.bytes().await.unwrap()).unwrap();
        assert!(png.width() > 5 * png.height(), "a box's strip");
    }
    let stranger = Citizen::new(&app, 43).await;
    assert_eq!(
        stranger.get(&crop_url).await.status(),
        StatusCode::NOT_FOUND
    );
    let kept: Option<String> = sqlx::query_scalar(
        "SELECT crop_storage FROM document_fields WHERE document_id = $1 AND field = 'indirizzo'",
    )
    .bind(&unsigned_doc)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    let stored = std::fs::read(app.config.data_dir.join("files").join(kept.unwrap())).unwrap();
    assert!(!stored.starts_with(b"\x89PNG"), "kept encrypted");
    app.stop().await;
}

/// A SAD pratica with `answers`, and the form printed for it.
async fn pratica_with_form(
    app: &TestApp,
    citizen: &Citizen,
    answers: &[(&str, &str)],
) -> (String, Vec<u8>) {
    let mut values = portal::applications::form::Answers::new();
    values.insert(
        "richiedente_cf".into(),
        serde_json::Value::String(citizen.cf.clone()),
    );
    for (k, v) in answers {
        values.insert((*k).into(), serde_json::Value::String((*v).into()));
    }
    let id = portal::applications::store::create_draft(
        app.db(),
        app.clock.now_ms(),
        &portal::applications::store::NewDraft {
            ente_code: "valleverde",
            service_code: "sad",
            form_version: 1,
            applicant_cf: &citizen.cf,
            answers: &values,
        },
    )
    .await
    .unwrap();
    let pdf = citizen
        .get(&format!("/domande/{id}/moduli/autodichiarazione-sad.pdf"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    (id, pdf)
}

#[tokio::test]
async fn a_phone_photo_in_a_shadow_is_read_right_roman_numerals_accents_decimals_and_empty_boxes_included(
) {
    use crate::scans::{render, spoil, Damage};
    let app = app().await;
    let citizen = Citizen::new(&app, 44).await;
    // What OCR confuses: "II" with "Il", "Zoë" with "Zoé", 7,5 with 7.9; the optional hours left
    // empty on a second pratica.
    let (id, pdf) = pratica_with_form(
        &app,
        &citizen,
        &[
            ("richiedente_cognome", "Dell'Acqua"),
            ("richiedente_nome", "Zoë"),
            ("indirizzo_assistenza", "Corso Vittorio Emanuele II 128"),
            ("ore_settimanali", "7,5"),
        ],
    )
    .await;
    // A phone photo: tilted, turned, on a desk, with the light falling off and a shadow across.
    let photo = spoil(
        &render(&pdf, 200),
        Damage {
            rotation: 3.0,
            tilt: 8.0,
            on_desk: 0.88,
            light: 0.4,
            shadow: 0.5,
            noise: 6.0,
            jpeg_quality: 60,
            seed: 11,
            ..Damage::NONE
        },
    );
    let (status, _) = upload(&citizen, &id, "foto.jpg", &photo).await;
    assert_eq!(status, StatusCode::OK);
    let doc = document_named(&app, &id, "foto.jpg").await;
    assert_eq!(read_done(&app, &doc).await, "letto");
    let fields: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT field, value, problem FROM document_fields WHERE document_id = $1 ORDER BY position",
    )
    .bind(&doc)
    .fetch_all(&app.db().pool)
    .await
    .unwrap();
    let expected = [
        ("cognome", "Dell'Acqua"),
        ("nome", "Zoë"),
        ("codice_fiscale", citizen.cf.as_str()),
        ("indirizzo", "Corso Vittorio Emanuele II 128"),
        ("ore", "7,5"),
    ];
    for (field, value) in expected {
        let got = fields.iter().find(|f| f.0 == field).unwrap();
        assert_eq!(
            (got.1.as_str(), &got.2),
            (value, &None),
            "{field}: {fields:?}"
        );
    }

    // The hours left empty: nothing written, nothing to say.
    let (id, pdf) = pratica_with_form(
        &app,
        &citizen,
        &[
            ("richiedente_cognome", "Rossi"),
            ("richiedente_nome", "Mario"),
            ("indirizzo_assistenza", "Via Pio XI 7"),
        ],
    )
    .await;
    let scan = spoil(
        &render(&pdf, 200),
        Damage {
            rotation: -1.0,
            noise: 5.0,
            jpeg_quality: 60,
            ..Damage::NONE
        },
    );
    upload(&citizen, &id, "scansione.jpg", &scan).await;
    let doc = document_named(&app, &id, "scansione.jpg").await;
    assert_eq!(read_done(&app, &doc).await, "letto");
    let problems: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT field, problem FROM document_fields WHERE document_id = $1")
            .bind(&doc)
            .fetch_all(&app.db().pool)
            .await
            .unwrap();
    assert!(problems.iter().all(|p| p.1.is_none()), "{problems:?}");

    // A photo whose page cannot be straightened (its marks cut off, the QR code clear): said to
    // the citizen and the office, never taken as an ordinary attachment.
    let mut page = render(&pdf, 200);
    let (w, h) = page.dimensions();
    for y in 0..h {
        for x in 0..w {
            let near_side = x < w / 8 || x > w - w / 8;
            let near_end = y < h / 12 || y > h - h / 10;
            if near_side && near_end {
                page.put_pixel(x, y, image::Luma([255]));
            }
        }
    }
    let cut = spoil(
        &page,
        Damage {
            noise: 4.0,
            jpeg_quality: 70,
            ..Damage::NONE
        },
    );
    upload(&citizen, &id, "tagliata.jpg", &cut).await;
    let doc = document_named(&app, &id, "tagliata.jpg").await;
    assert_eq!(read_done(&app, &doc).await, "da_verificare");
    let slot = citizen
        .text(&format!("/domande/{id}/allegati/{SLOT}"))
        .await;
    assert!(
        slot.contains("La foto non si legge come modulo: rifalla con luce uniforme, tutta la pagina nell&#x27;inquadratura")
            && slot.contains("Modulo da controllare"),
        "{slot}"
    );
    app.stop().await;
}

#[tokio::test]
async fn documents_kept_in_an_s3_bucket_are_encrypted_there_and_checked_on_the_way_back() {
    let s3 = S3Server::start("sportello-documenti").await;
    let endpoint = s3.endpoint();
    let storage = |c: &mut portal::config::Config, bucket: &str| {
        c.documents.storage = portal::config::StorageConfig {
            kind: portal::config::StorageKind::S3,
            bucket: Some(bucket.into()),
            endpoint: Some(endpoint.clone()),
            region: Some("eu-south-1".into()),
            access_key_id: Some("sportello".into()),
            secret_access_key: Some("segreto-di-prova".to_string().into()),
            allow_http: true,
            path: None,
        };
    };
    let app = spawn_app_with(|c| storage(c, "sportello-documenti")).await;
    let citizen = Citizen::new(&app, 51).await;
    let id = ready_draft(&app, &citizen.cf).await;
    // 12 MB: more than the writer buffers, so it goes up as a multipart upload.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let certificate = pdf_with("Relazione dello specialista", |doc, _| {
        doc.add_object(Stream::new(dictionary! {}, big));
    });
    let (status, answer) = upload(&citizen, &id, "relazione.pdf", &certificate).await;
    assert_eq!(
        (status, answer["stato"].as_str()),
        (StatusCode::OK, Some("accettato")),
        "{answer}"
    );
    let (doc_id, storage_id): (String, String) =
        sqlx::query_as("SELECT id, storage_id FROM documents WHERE application_id = $1")
            .bind(&id)
            .fetch_one(&app.db().pool)
            .await
            .unwrap();

    // In the bucket, under its random id, encrypted; nothing in the local folder.
    let http = reqwest::Client::new();
    let stored = http
        .get(s3.object(&storage_id))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(stored.len() > certificate.len(), "{}", stored.len());
    assert!(!stored.starts_with(b"%PDF") && !stored.windows(9).any(|w| w == b"Relazione"));
    assert!(!app.config.data_dir.join("files").join(&storage_id).exists());

    // Back to its owner exactly as sent; another citizen: no such document.
    let r = citizen.get(&format!("/documenti/{doc_id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), certificate.as_slice());
    let other = Citizen::new(&app, 52).await;
    assert_eq!(
        other.get(&format!("/documenti/{doc_id}")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Altered in the bucket: detected, never served.
    let mut altered = stored.to_vec();
    altered[100] ^= 0x01;
    let put = http
        .put(s3.object(&storage_id))
        .body(altered)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let r = citizen.get(&format!("/documenti/{doc_id}")).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!r.text().await.unwrap().contains("Relazione"));
    app.stop().await;

    // A bucket that does not exist stops the start, saying which setting.
    let dir = tempfile::tempdir().unwrap();
    let database = crate::support::TestDatabase::create(dir.path()).await;
    let mut config = crate::support::test_config(dir.path(), &database.url);
    storage(&mut config, "manca");
    let refused =
        portal::server::Server::start(config, std::sync::Arc::new(portal::clock::SystemClock))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
    assert!(refused.contains("documents.storage"), "{refused}");
}

/// A page of a scanned PDF: a JPEG (with its size) as scanners write them, or raw grey samples.
enum ScanPage {
    Jpeg(Vec<u8>, (u32, u32)),
    Raw(image::GrayImage),
}

/// A PDF whose pages are only pictures, A4, no text layer.
fn scanned_pdf(pages: &[ScanPage]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let mut kids = Vec::new();
    for page in pages {
        let mut picture = match page {
            ScanPage::Jpeg(bytes, (w, h)) => Stream::new(
                dictionary! { "Filter" => "DCTDecode", "Width" => *w as i64, "Height" => *h as i64 },
                bytes.clone(),
            ),
            ScanPage::Raw(grey) => {
                let mut s = Stream::new(
                    dictionary! { "Width" => grey.width() as i64, "Height" => grey.height() as i64 },
                    grey.as_raw().clone(),
                );
                s.compress().unwrap();
                s
            }
        };
        for (k, v) in [
            ("Type", Object::from("XObject")),
            ("Subtype", "Image".into()),
            ("ColorSpace", "DeviceGray".into()),
            ("BitsPerComponent", 8.into()),
        ] {
            picture.dict.set(k, v);
        }
        let picture = doc.add_object(picture);
        let draw = Content {
            operations: vec![
                Operation::new(
                    "cm",
                    vec![
                        595.into(),
                        0.into(),
                        0.into(),
                        842.into(),
                        0.into(),
                        0.into(),
                    ],
                ),
                Operation::new("Do", vec!["Im0".into()]),
            ],
        };
        let contents = doc.add_object(Stream::new(dictionary! {}, draw.encode().unwrap()));
        kids.push(Object::from(doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => contents,
            "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => picture } },
        })));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}
