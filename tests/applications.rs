//! Online applications end to end through HTTP: service page, consent, steps with drafts and
//! validation, summary, submission (numbered, idempotent), the PDF receipt and its verification,
//! the status a citizen follows; the numbering under concurrency and the status rules.

use portal::applications::status::{self, Actor, Change, Status, TransitionError};
use portal::applications::store;
use reqwest::StatusCode;
use time::{Date, Month};

use crate::support::{hidden_field, location, spawn_app, TestApp};

/// 23 November 2026, 10:00 in Italy: inside the FNA B2 window (1 October 2026 – 31 January 2027).
pub(crate) const NOV_23_2026: i64 = 1_795_424_400_000;
/// 1 February 2027: the FNA B2 window has closed.
const FEB_1_2027: i64 = 1_801_472_400_000;
const DAY_MS: i64 = 86_400_000;

pub(crate) async fn csrf(app: &TestApp, path: &str) -> String {
    let html = app.text(path).await;
    hidden_field(&html, "csrf_token").expect("csrf token")
}

/// Consent given on the service's start page; returns the draft's id.
pub(crate) async fn start(app: &TestApp, service: &str, ente: &str) -> String {
    let page = app.get(&format!("/servizi/{service}/domanda")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Informativa sul trattamento dei dati personali"));
    let token = hidden_field(&html, "csrf_token").unwrap();
    let started = app
        .post_form(
            &format!("/servizi/{service}/domanda"),
            &[("csrf_token", &token), ("ente", ente), ("privacy", "si")],
        )
        .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let to = location(&started);
    assert!(to.ends_with("/passo/1"), "{to}");
    to.trim_start_matches("/domande/")
        .trim_end_matches("/passo/1")
        .to_string()
}

/// Sends step `n` with `fields` and the action; returns the response.
pub(crate) async fn step(
    app: &TestApp,
    id: &str,
    n: usize,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let path = format!("/domande/{id}/passo/{n}");
    let token = csrf(app, &path).await;
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", &token), ("azione", action)];
    form.extend_from_slice(fields);
    app.post_form(&path, &form).await
}

pub(crate) async fn next_ok(
    app: &TestApp,
    id: &str,
    n: usize,
    fields: &[(&str, &str)],
    expect: &str,
) {
    let r = step(app, id, n, "avanti", fields).await;
    let status = r.status();
    let to = location(&r);
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "step {n}: {}",
        r.text().await.unwrap_or_default()
    );
    assert_eq!(to, format!("/domande/{id}/{expect}"));
}

/// "Conferma e invia" with every declaration of the summary ticked.
pub(crate) async fn submit(app: &TestApp, id: &str) -> reqwest::Response {
    let html = app.text(&format!("/domande/{id}/riepilogo")).await;
    let token = hidden_field(&html, "csrf_token").unwrap();
    let ticks: Vec<String> = html
        .match_indices("name=\"dichiarazione_")
        .map(|(i, _)| {
            let rest = &html[i + 6..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect();
    assert!(!ticks.is_empty(), "the summary carries the declarations");
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", &token)];
    for t in &ticks {
        form.push((t.as_str(), "si"));
    }
    app.post_form(&format!("/domande/{id}/invia"), &form).await
}

async fn count(app: &TestApp, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&app.db().pool)
        .await
        .unwrap()
}

/// The receipt as `pdftotext` reads it.
pub(crate) async fn receipt_text(app: &TestApp, id: &str) -> String {
    let pdf = app.get(&format!("/domande/{id}/ricevuta.pdf")).await;
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    pdf_text(&pdf.bytes().await.unwrap())
}

/// A PDF as `pdftotext` reads it.
pub(crate) fn pdf_text(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("documento.pdf");
    std::fs::write(&file, bytes).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils, installed by .ci/setup --tests)");
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn today(app: &TestApp) -> Date {
    portal::domain::italian_time::rome_date(portal::clock::Clock::now_ms(&app.clock))
}

async fn change(app: &TestApp, id: &str, c: &Change<'_>) -> Result<Status, TransitionError> {
    status::transition(
        app.db(),
        portal::clock::Clock::now_ms(&app.clock),
        today(app),
        id,
        c,
    )
    .await
}

#[tokio::test]
async fn fna_b2_draft_resume_submit_receipt_and_status() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);

    // The service page, with the design model's sections and the window.
    let page = app.text("/servizi/fna-b2").await;
    for section in [
        "A chi è rivolto",
        "Come fare",
        "Cosa serve",
        "Cosa si ottiene",
        "Tempi e scadenze",
        "Costi",
        "Accedi al servizio",
        "Condizioni di servizio",
        "Contatti",
    ] {
        assert!(page.contains(section), "{section}");
    }
    assert!(page.contains("fino al 31 gennaio 2027"));

    // Applying needs a login, and comes back to the application.
    let anonymous = app.get("/servizi/fna-b2/domanda").await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert!(location(&anonymous).starts_with("/accedi?next=%2Fservizi%2Ffna-b2%2Fdomanda"));
    app.login("mario-rossi").await;

    // No consent, no draft.
    let token = csrf(&app, "/servizi/fna-b2/domanda").await;
    let refused = app
        .post_form(
            "/servizi/fna-b2/domanda",
            &[("csrf_token", &token), ("ente", "valleverde")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("devi dichiarare di aver letto l&#x27;informativa"));
    let id = start(&app, "fna-b2", "valleverde").await;

    // Step 1 is prefilled from the identity (once-only).
    let step1 = app.text(&format!("/domande/{id}/passo/1")).await;
    assert!(step1.contains("value=\"Mario\"") && step1.contains("value=\"RSSMRA80A01H501U\""));
    assert!(step1.contains("value=\"mario.rossi@example.it\""));

    // Errors are shown next to each field, in Italian, and nothing typed is lost.
    let wrong = step(
        &app,
        &id,
        1,
        "avanti",
        &[
            ("richiedente_nome", "Mario"),
            ("richiedente_cognome", "Rossi"),
            ("richiedente_cf", "RSSMRA80A01H501U"),
            ("richiedente_nascita", "1980-01-01"),
            ("residenza_indirizzo", "Via Roma 1"),
            ("residenza_cap", "2010"),
            ("residenza_comune", "Valleverde"),
            ("email", "mario.rossi@example.it"),
            ("telefono", "333 1234567"),
        ],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = wrong.text().await.unwrap();
    assert!(html.contains("Il CAP è formato da 5 cifre."));
    assert!(
        html.contains("Scegli una delle opzioni."),
        "per_se_stesso is required"
    );
    assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"f-residenza_cap-errore\""));
    assert!(
        html.contains("value=\"2010\""),
        "the wrong value is shown again to be corrected"
    );
    assert!(html.contains("role=\"alert\""));

    // Saved as a draft, listed in the area personale with the closing date, resumed where left.
    let saved = step(
        &app,
        &id,
        1,
        "salva",
        &[
            ("richiedente_nome", "Mario"),
            ("richiedente_cognome", "Rossi"),
            ("richiedente_cf", "RSSMRA80A01H501U"),
            ("richiedente_nascita", "1980-01-01"),
            ("residenza_indirizzo", "Via Roma 1"),
            ("residenza_cap", "20100"),
            ("residenza_comune", "Valleverde"),
            ("email", "mario.rossi@example.it"),
            ("telefono", "333 1234567"),
            ("per_se_stesso", "no"),
        ],
    )
    .await;
    assert_eq!(location(&saved), format!("/domande/{id}/passo/1?salvata=1"));
    let list = app.text("/area-personale/pratiche").await;
    assert!(
        list.contains("Bozza") && list.contains("Da inviare entro il 31 gennaio 2027"),
        "{list}"
    );
    let resume = app.get(&format!("/domande/{id}")).await;
    assert_eq!(location(&resume), format!("/domande/{id}/passo/1"));
    assert!(app
        .text(&format!("/domande/{id}/passo/1"))
        .await
        .contains("value=\"20100\""));
    // Starting again from the service page resumes the same draft.
    assert_eq!(
        location(&app.get("/servizi/fna-b2/domanda").await),
        format!("/domande/{id}?ripresa=1")
    );

    next_ok(
        &app,
        &id,
        1,
        &[
            ("richiedente_nome", "Mario"),
            ("richiedente_cognome", "Rossi"),
            ("richiedente_cf", "RSSMRA80A01H501U"),
            ("richiedente_nascita", "01/01/1980"),
            ("residenza_indirizzo", "Via Roma 1"),
            ("residenza_cap", "20100"),
            ("residenza_comune", "Valleverde"),
            ("email", "mario.rossi@example.it"),
            ("telefono", "333 1234567"),
            ("per_se_stesso", "no"),
        ],
        "passo/2",
    )
    .await;

    // Step 2: the person cared for (asked because the application is for someone else).
    let step2 = app.text(&format!("/domande/{id}/passo/2")).await;
    assert!(step2.contains("Codice fiscale della persona assistita"));
    next_ok(
        &app,
        &id,
        2,
        &[
            ("beneficiario_nome", "Luca"),
            ("beneficiario_cognome", "Rossi"),
            ("beneficiario_cf", "vrdlcu15c10l219q"),
            ("beneficiario_nascita", "2015-03-10"),
            ("beneficiario_titolo", "genitore"),
            ("condizione", "grave_104"),
        ],
        "passo/3",
    )
    .await;

    // Step 3: a repeatable group, filled without JavaScript; going back keeps the answers.
    let added = step(&app, &id, 3, "aggiungi:componenti", &[]).await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let step3 = app.text(&format!("/domande/{id}/passo/3")).await;
    assert!(step3.contains("name=\"componenti.0.nome\""));
    let over = step(
        &app,
        &id,
        3,
        "avanti",
        &[
            ("componenti.0.nome", "Anna Rossi"),
            ("componenti.0.cf", "BNCGLI85D52F205W"),
            ("componenti.0.relazione", "coniuge"),
            ("isee_tipo", "ordinario"),
            ("isee_valore", "45.000,00"),
            ("isee_protocollo", "INPS-ISEE-2026-12345678A-00"),
            ("isee_scadenza", "2026-12-31"),
        ],
    )
    .await;
    assert_eq!(over.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(over
        .text()
        .await
        .unwrap()
        .contains("Scrivi un valore tra 0,00 € e 40.000,00 €."));
    let back = step(
        &app,
        &id,
        3,
        "indietro",
        &[
            ("componenti.0.nome", "Anna Rossi"),
            ("componenti.0.cf", "BNCGLI85D52F205W"),
            ("componenti.0.relazione", "coniuge"),
            ("isee_tipo", "ordinario"),
            ("isee_valore", "18.500"),
            ("isee_protocollo", "INPS-ISEE-2026-12345678A-00"),
            ("isee_scadenza", "2026-12-31"),
        ],
    )
    .await;
    assert_eq!(location(&back), format!("/domande/{id}/passo/2"));
    assert!(app
        .text(&format!("/domande/{id}/passo/2"))
        .await
        .contains("value=\"VRDLCU15C10L219Q\""));
    assert!(app
        .text(&format!("/domande/{id}/passo/3"))
        .await
        .contains("value=\"Anna Rossi\""));
    next_ok(
        &app,
        &id,
        3,
        &[
            ("componenti.0.nome", "Anna Rossi"),
            ("componenti.0.cf", "BNCGLI85D52F205W"),
            ("componenti.0.relazione", "coniuge"),
            ("isee_tipo", "ordinario"),
            ("isee_valore", "18.500"),
            ("isee_protocollo", "INPS-ISEE-2026-12345678A-00"),
            ("isee_scadenza", "2026-12-31"),
        ],
        "passo/4",
    )
    .await;
    next_ok(
        &app,
        &id,
        4,
        &[
            ("tipo_assistenza", "caregiver"),
            ("caregiver_nome", "Anna Rossi"),
            ("caregiver_cf", "BNCGLI85D52F205W"),
            ("iban", "IT60X0542811101000000123456"),
        ],
        "riepilogo",
    )
    .await;

    // The summary, and the declarations that must be ticked.
    let summary = app.text(&format!("/domande/{id}/riepilogo")).await;
    assert!(summary.contains("18.500,00 €") && summary.contains("1 gennaio 1980"));
    assert!(summary.contains("Componente 1"));
    // The certificate is required: listed as missing until one is accepted.
    assert!(summary.contains("carica almeno un documento"), "{summary}");
    let token = hidden_field(&summary, "csrf_token").unwrap();
    let refused = app
        .post_form(&format!("/domande/{id}/invia"), &[("csrf_token", &token)])
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("carica almeno un documento"));
    let certificate = pdf_of_certificate();
    let (content_type, body) = crate::documents::multipart("verbale.pdf", &certificate);
    let uploaded = app
        .client
        .post(app.absolute(&format!("/domande/{id}/allegati/certificazione")))
        .header("Content-Type", content_type)
        .header("X-CSRF-Token", app.csrf_token().await)
        .header("Accept", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = uploaded.json().await.unwrap();
    assert_eq!(answer["stato"], "accettato", "{answer}");
    let summary = app.text(&format!("/domande/{id}/riepilogo")).await;
    assert!(!summary.contains("carica almeno un documento"));

    let token = hidden_field(&summary, "csrf_token").unwrap();
    let unticked = app
        .post_form(&format!("/domande/{id}/invia"), &[("csrf_token", &token)])
        .await;
    assert_eq!(unticked.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unticked
        .text()
        .await
        .unwrap()
        .contains("devi confermare tutte le dichiarazioni"));

    // Sent: numero di pratica, date, receipt, next steps, rating.
    let sent = submit(&app, &id).await;
    assert_eq!(location(&sent), format!("/domande/{id}?inviata=1"));
    let done = app.text(&format!("/domande/{id}?inviata=1")).await;
    assert!(
        done.contains("Domanda inviata") && done.contains("2026&#x2F;000001"),
        "{done}"
    );
    assert!(done.contains("23 novembre 2026, 10:00"));
    assert!(
        done.contains("entro il <strong>22 gennaio 2027</strong>"),
        "60 days from submission"
    );
    assert!(done.contains("Quanto è stato facile usare questo servizio?"));

    // A double click or a replayed POST: the same receipt, nothing new.
    let token = app.csrf_token().await;
    let again = app
        .post_form(
            &format!("/domande/{id}/invia"),
            &[("csrf_token", &token), ("dichiarazione_veridicita", "si")],
        )
        .await;
    assert_eq!(location(&again), format!("/domande/{id}?inviata=1"));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM applications WHERE numero IS NOT NULL AND id = $1",
            &id
        )
        .await,
        1
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox WHERE event_type = 'pratica.inviata' AND aggregate_id = $1", &id).await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM application_history WHERE application_id = $1",
            &id
        )
        .await,
        1
    );

    // The receipt opens in a standard reader, and carries what it must.
    let text = receipt_text(&app, &id).await;
    assert!(text.contains("2026/000001"), "{text}");
    assert!(text.contains("RSSMRA80A01H501U") && text.contains("Comune di Valleverde"));
    assert!(text.contains("18.500,00 €") && text.contains("DPR 445/2000"));
    assert!(
        text.contains("Certificazione della disabilità — verbale.pdf")
            && text.contains(&crate::documents::sha256(&pdf_of_certificate())),
        "the attachment with its SHA-256: {text}"
    );
    let snapshot = store::get(app.db(), &id)
        .await
        .unwrap()
        .unwrap()
        .snapshot_text
        .unwrap();
    let fingerprint = store::fingerprint(&snapshot);
    assert!(
        text.contains(&fingerprint),
        "the snapshot's SHA-256 is printed"
    );
    let code: String =
        sqlx::query_scalar("SELECT verification_code FROM applications WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    assert!(text.contains(&code));

    // The public verification page: accepts the code, shows nothing personal; refuses a tampered one.
    let (anon, _) = crate::support::new_client();
    let ok = anon
        .get(format!("{}/verifica-ricevuta?codice={code}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let ok = ok.text().await.unwrap();
    assert!(
        ok.contains("Ricevuta autentica")
            && ok.contains("2026&#x2F;000001")
            && ok.contains(&fingerprint)
    );
    assert!(!ok.contains("RSSMRA80A01H501U") && !ok.contains("Rossi"));
    let mut tampered = code.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let bad = anon
        .get(format!(
            "{}/verifica-ricevuta?codice={}",
            app.url,
            String::from_utf8(tampered).unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::NOT_FOUND);
    assert!(bad.text().await.unwrap().contains("Codice non valido"));

    // Status: taken in charge, documents requested with a deadline and a direct link, answered once.
    app.clock.advance_ms(DAY_MS);
    app.login("mario-rossi").await;
    change(
        &app,
        &id,
        &Change {
            protocollo: Some("2026/0004567"),
            ..Change::to(Status::Protocollata, Actor::Csi, None)
        },
    )
    .await
    .unwrap();
    change(
        &app,
        &id,
        &Change::to(
            Status::PresaInCarico,
            Actor::Operatore,
            Some("NREPLA75E15D969F"),
        ),
    )
    .await
    .unwrap();
    let deadline = Date::from_calendar_date(2026, Month::December, 14).unwrap();
    change(
        &app,
        &id,
        &Change {
            request: Some((
                "Inviate il verbale di invalidità civile aggiornato.",
                deadline,
            )),
            ..Change::to(
                Status::InAttesaDiIntegrazioni,
                Actor::Operatore,
                Some("NREPLA75E15D969F"),
            )
        },
    )
    .await
    .unwrap();
    let pratica = app.text(&format!("/domande/{id}")).await;
    assert!(pratica.contains("In attesa di integrazioni") && pratica.contains("2026&#x2F;0004567"));
    assert!(
        pratica.contains("24 novembre 2026"),
        "the date it was taken in charge"
    );
    assert!(pratica.contains("Rispondi entro il <strong>14 dicembre 2026</strong>"));
    assert!(pratica.contains(&format!("href=\"/domande/{id}/integrazioni\"")));
    assert!(app
        .text("/area-personale/pratiche")
        .await
        .contains("L'ufficio ti chiede altri documenti"));
    let token = csrf(&app, &format!("/domande/{id}/integrazioni")).await;
    let empty = app
        .post_form(
            &format!("/domande/{id}/integrazioni"),
            &[("csrf_token", &token), ("risposta", " ")],
        )
        .await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answered = app
        .post_form(
            &format!("/domande/{id}/integrazioni"),
            &[
                ("csrf_token", &token),
                ("risposta", "Consegnato allo sportello il 25/11."),
            ],
        )
        .await;
    assert_eq!(location(&answered), format!("/domande/{id}?risposta=1"));
    let pratica = app.text(&format!("/domande/{id}")).await;
    assert!(pratica.contains("Integrazioni ricevute"));
    assert!(
        !pratica.contains(&format!("href=\"/domande/{id}/integrazioni\"")),
        "the link is used once"
    );
    assert_eq!(
        location(&app.get(&format!("/domande/{id}/integrazioni")).await),
        format!("/domande/{id}")
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'pratica.stato' AND aggregate_id = $1",
            &id
        )
        .await,
        3,
        "the office's and the citizen's changes go to the CSI; the CSI's own do not come back"
    );

    // Withdrawn by the citizen, after which nothing changes any more.
    let token = csrf(&app, &format!("/domande/{id}/ritira")).await;
    let withdrawn = app
        .post_form(
            &format!("/domande/{id}/ritira"),
            &[
                ("csrf_token", &token),
                ("motivo", "Ho trovato un'altra soluzione."),
            ],
        )
        .await;
    assert_eq!(location(&withdrawn), format!("/domande/{id}?ritirata=1"));
    let pratica = app.text(&format!("/domande/{id}")).await;
    assert!(pratica.contains("Ritirata") && !pratica.contains("Ritira la domanda</a>"));
    assert!(matches!(
        change(
            &app,
            &id,
            &Change::to(Status::Accolta, Actor::Operatore, None)
        )
        .await,
        Err(TransitionError::NotAllowed { .. })
    ));
    app.stop().await;
}

#[tokio::test]
async fn bonus_famiglia_needs_a_child_and_the_isee_under_the_threshold() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("anna-verdi").await;
    // One ente only: no choice to make.
    let id = start(&app, "bonus-famiglia", "valleverde").await;
    next_ok(
        &app,
        &id,
        1,
        &[
            ("richiedente_nome", "Anna"),
            ("richiedente_cognome", "Verdi"),
            ("richiedente_cf", "VRDNNA78M41L219W"),
            ("residenza_indirizzo", "Via dei Mille 3"),
            ("email", "anna.verdi@example.it"),
            ("telefono", ""),
        ],
        "passo/2",
    )
    .await;
    let none = step(&app, &id, 2, "avanti", &[]).await;
    assert_eq!(none.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(none
        .text()
        .await
        .unwrap()
        .contains("Aggiungi almeno 1 figlio."));
    step(&app, &id, 2, "aggiungi:figli", &[]).await;
    let future = step(
        &app,
        &id,
        2,
        "avanti",
        &[
            ("figli.0.nome", "Luca Verdi"),
            ("figli.0.cf", "VRDLCU15C10L219Q"),
            ("figli.0.nascita", "2030-03-10"),
        ],
    )
    .await;
    assert!(future
        .text()
        .await
        .unwrap()
        .contains("La data non può essere nel futuro."));
    next_ok(
        &app,
        &id,
        2,
        &[
            ("figli.0.nome", "Luca Verdi"),
            ("figli.0.cf", "VRDLCU15C10L219Q"),
            ("figli.0.nascita", "10/03/2015"),
            ("altri_contributi", "si"),
            ("altri_contributi_importo", "150"),
        ],
        "passo/3",
    )
    .await;
    let over = step(
        &app,
        &id,
        3,
        "avanti",
        &[
            ("isee_valore", "30.000,01"),
            ("isee_protocollo", "INPS-ISEE-2026-87654321B-01"),
            ("iban", "IT60X0542811101000000123456"),
        ],
    )
    .await;
    assert_eq!(over.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(over
        .text()
        .await
        .unwrap()
        .contains("Scrivi un valore tra 0,00 € e 30.000,00 €."));
    let bad_iban = step(
        &app,
        &id,
        3,
        "avanti",
        &[
            ("isee_valore", "12.000"),
            ("isee_protocollo", "INPS-ISEE-2026-87654321B-01"),
            ("iban", "IT60 X054"),
        ],
    )
    .await;
    assert!(bad_iban
        .text()
        .await
        .unwrap()
        .contains("Scrivi l&#x27;IBAN italiano di 27 caratteri"));
    next_ok(
        &app,
        &id,
        3,
        &[
            ("isee_valore", "12.000"),
            ("isee_protocollo", "INPS-ISEE-2026-87654321B-01"),
            ("iban", "IT60X0542811101000000123456"),
        ],
        "riepilogo",
    )
    .await;
    let summary = app.text(&format!("/domande/{id}/riepilogo")).await;
    assert!(summary.contains("150,00 €") && summary.contains("10 marzo 2015"));
    assert_eq!(
        location(&submit(&app, &id).await),
        format!("/domande/{id}?inviata=1")
    );
    let done = app.text(&format!("/domande/{id}")).await;
    assert!(
        done.contains("2026&#x2F;000001") && done.contains("entro il 23 dicembre 2026"),
        "30 days"
    );
    let text = receipt_text(&app, &id).await;
    assert!(
        text.contains("Bonus famiglia")
            && text.contains("VRDLCU15C10L219Q")
            && text.contains("12.000,00 €")
    );
    // The rating, once.
    let token = csrf(&app, &format!("/domande/{id}")).await;
    let rated = app
        .post_form(
            &format!("/domande/{id}/valutazione"),
            &[
                ("csrf_token", &token),
                ("stelle", "4"),
                ("dettaglio", "Le indicazioni erano chiare"),
                ("commento", "Veloce."),
            ],
        )
        .await;
    assert_eq!(location(&rated), format!("/domande/{id}?valutazione=1"));
    assert!(!app
        .text(&format!("/domande/{id}"))
        .await
        .contains("Quanto è stato facile"));
    let rating: Option<i64> = sqlx::query_scalar("SELECT rating FROM applications WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    assert_eq!(rating, Some(4));
    // The CSI hears of it, by the published schema.
    let (payload,): (String,) = sqlx::query_as(
        "SELECT payload FROM outbox WHERE aggregate_id = $1 AND event_type = 'servizio.valutazione'",
    )
    .bind(&id)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
    portal::csi::events::validate("servizio.valutazione", &payload).unwrap();
    assert_eq!(payload["stelle"], 4);
    // The applications are in the download of all one's data.
    let export: serde_json::Value = app
        .get("/area-personale/esportazione.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(export["pratiche"][0]["numero"], "2026/000001");
    assert_eq!(export["pratiche"][0]["risposte"]["isee_valore"], "12000.00");
    app.stop().await;
}

#[tokio::test]
async fn sad_for_a_relative_prefills_from_the_previous_application_and_can_be_withdrawn() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("giulia-bianchi").await;
    let id = start(&app, "sad", "montebello").await;
    next_ok(
        &app,
        &id,
        1,
        &[
            ("richiedente_nome", "Giulia"),
            ("richiedente_cognome", "Bianchi"),
            ("richiedente_cf", "BNCGLI85D52F205W"),
            ("email", ""),
            ("telefono", "+39 338 7654321"),
            ("per_chi", "familiare"),
        ],
        "passo/2",
    )
    .await;
    let short = step(
        &app,
        &id,
        2,
        "avanti",
        &[
            ("assistito_nome", "Rosa Bianchi"),
            ("assistito_cf", "RSSMRA80A01H501U"),
            ("indirizzo_assistenza", "Via Verdi 5"),
            ("bisogno", "cura_persona"),
            ("descrizione", "Aiuto."),
            ("ore_settimanali", "6"),
        ],
    )
    .await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short
        .text()
        .await
        .unwrap()
        .contains("Scrivi almeno 20 caratteri."));
    next_ok(
        &app,
        &id,
        2,
        &[
            ("assistito_nome", "Rosa Bianchi"),
            ("assistito_cf", "RSSMRA80A01H501U"),
            ("indirizzo_assistenza", "Via Verdi 5"),
            ("vive_solo", "si"),
            ("bisogno", "cura_persona"),
            (
                "descrizione",
                "Mia madre ha 88 anni e non riesce più a lavarsi da sola.",
            ),
            ("ore_settimanali", "6,5"),
        ],
        "passo/3",
    )
    .await;
    // A field shown only for one answer: not required for the other, and dropped.
    next_ok(
        &app,
        &id,
        3,
        &[("presenta_isee", "no"), ("isee_valore", "")],
        "riepilogo",
    )
    .await;
    let summary = app.text(&format!("/domande/{id}/riepilogo")).await;
    assert!(!summary.contains("Valore ISEE"));
    assert!(summary.contains("6.5"), "numbers are kept normalised");
    assert_eq!(
        location(&submit(&app, &id).await),
        format!("/domande/{id}?inviata=1")
    );
    let text = receipt_text(&app, &id).await;
    assert!(
        text.contains("Comune di Montebello")
            && text.contains("2026/000001")
            && text.contains("Mia madre ha 88 anni")
    );

    // Once-only: a new application proposes the address given in the previous one.
    let second = start(&app, "sad", "montebello").await;
    assert_ne!(second, id);
    let step2 = app.text(&format!("/domande/{second}/passo/2")).await;
    assert!(step2.contains("value=\"Via Verdi 5\""), "{step2}");

    // Withdrawn while allowed.
    let token = csrf(&app, &format!("/domande/{id}/ritira")).await;
    app.post_form(&format!("/domande/{id}/ritira"), &[("csrf_token", &token)])
        .await;
    assert!(app
        .text(&format!("/domande/{id}"))
        .await
        .contains("Ritirata"));
    let list = app.text("/area-personale/pratiche").await;
    assert!(list.contains("Ritirata") && list.contains("Bozza"));
    app.stop().await;
}

#[tokio::test]
async fn someone_else_s_application_does_not_exist_for_you() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("mario-rossi").await;
    let id = start(&app, "sad", "valleverde").await;
    app.logout().await;
    app.login("giulia-bianchi").await;
    for path in [
        format!("/domande/{id}"),
        format!("/domande/{id}/passo/1"),
        format!("/domande/{id}/riepilogo"),
        format!("/domande/{id}/ricevuta.pdf"),
    ] {
        assert_eq!(
            app.get(&path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let token = app.csrf_token().await;
    let forged = app
        .post_form(
            &format!("/domande/{id}/passo/1"),
            &[("csrf_token", &token), ("richiedente_nome", "X")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    let forged = app
        .post_form(&format!("/domande/{id}/invia"), &[("csrf_token", &token)])
        .await;
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM applications WHERE id = $1 AND status = 'bozza'",
            &id
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_draft_of_a_closed_window_is_kept_but_cannot_be_sent() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("mario-rossi").await;
    let id = start(&app, "fna-b2", "valleverde").await;
    app.clock.set_ms(FEB_1_2027);
    // Weeks later the session has ended: the citizen logs in again.
    app.login("mario-rossi").await;
    let list = app.text("/area-personale/pratiche").await;
    assert!(list.contains("questa bozza non si può inviare"), "{list}");
    assert!(app
        .text("/servizi/fna-b2")
        .await
        .contains("è scaduto il 31 gennaio 2027"));
    let token = csrf(&app, &format!("/domande/{id}/riepilogo")).await;
    let late = app
        .post_form(&format!("/domande/{id}/invia"), &[("csrf_token", &token)])
        .await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert!(late
        .text()
        .await
        .unwrap()
        .contains("La bozza resta salvata"));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM applications WHERE id = $1 AND status = 'bozza'",
            &id
        )
        .await,
        1
    );
    app.stop().await;
}

/// A draft filled directly in the database, ready to send.
fn pdf_of_certificate() -> Vec<u8> {
    crate::documents::pdf_with("Verbale di invalidita civile", |_, _| {})
}

pub(crate) async fn ready_draft(app: &TestApp, cf: &str) -> String {
    sad_draft(
        app,
        cf,
        "valleverde",
        &portal::applications::form::Answers::new(),
    )
    .await
}

/// A SAD draft of `cf` for `ente` with `answers`, made on 23 November 2026.
async fn sad_draft(
    app: &TestApp,
    cf: &str,
    ente: &str,
    answers: &portal::applications::form::Answers,
) -> String {
    store::create_draft(
        app.db(),
        NOV_23_2026,
        &store::NewDraft {
            ente_code: ente,
            service_code: "sad",
            form_version: 1,
            applicant_cf: cf,
            answers,
        },
    )
    .await
    .unwrap()
}

pub(crate) fn submission(
    cf: &str,
    ente: &str,
    answers: &portal::applications::form::Answers,
) -> store::Submission {
    store::Submission {
        ente_code: ente.into(),
        service_code: "sad".into(),
        applicant_cf: cf.into(),
        applicant_name: "Mario Rossi".into(),
        service_title: "Assistenza domiciliare (SAD)".into(),
        form_version: 1,
        term_days: 30,
        answers: answers.clone(),
        summary: Vec::new(),
        declarations: vec!["Dichiaro".into()],
        slot_labels: Vec::new(),
        delegate: None,
    }
}

async fn numeri(app: &TestApp, ente: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT numero FROM applications WHERE ente_code = $1 AND numero IS NOT NULL ORDER BY numero",
    )
    .bind(ente)
    .fetch_all(&app.db().pool)
    .await
    .unwrap()
}

/// One text column of one application.
async fn column(app: &TestApp, column: &str, id: &str) -> String {
    sqlx::query_scalar(&format!("SELECT {column} FROM applications WHERE id = $1"))
        .bind(id)
        .fetch_one(&app.db().pool)
        .await
        .unwrap()
}

async fn count_all(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db().pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_hundred_concurrent_submissions_get_two_hundred_numbers_without_gaps() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("mario-rossi").await;
    let cf = "RSSMRA80A01H501U";
    let answers = crate::bench_common::sad_answers(cf);
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(sad_draft(&app, cf, "valleverde", &answers).await);
    }
    // Every draft sent twice at the same moment through "Conferma e invia" (a double click): the
    // submission desk takes them together, and the replay must create nothing.
    let token = app.csrf_token().await;
    let tasks: Vec<_> = ids
        .iter()
        .chain(ids.iter())
        .map(|id| {
            let request = app
                .client
                .post(app.absolute(&format!("/domande/{id}/invia")))
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("dichiarazione_veridicita", "si"),
                    ("dichiarazione_quota", "si"),
                ]);
            let id = id.clone();
            tokio::spawn(async move { (id, request.send().await.unwrap()) })
        })
        .collect();
    for t in tasks {
        let (id, sent) = t.await.unwrap();
        assert_eq!(sent.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&sent), format!("/domande/{id}?inviata=1"));
    }
    let expected: Vec<String> = (1..=200).map(|n| format!("2026/{n:06}")).collect();
    assert_eq!(
        numeri(&app, "valleverde").await,
        expected,
        "distinct, gapless, from 1"
    );
    for (sql, want) in [
        (
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'pratica.inviata'",
            200,
        ),
        (
            "SELECT COUNT(*) FROM application_history WHERE to_status = 'inviata'",
            200,
        ),
        (
            "SELECT COUNT(*) FROM jobs WHERE idempotency_key LIKE 'alert:ricevuta:%'",
            200,
        ),
        (
            "SELECT COUNT(DISTINCT verification_code) FROM applications",
            200,
        ),
    ] {
        assert_eq!(count_all(&app, sql).await, want, "{sql}");
    }
    // Every one went through the submission desk, which /metrics shows.
    let metrics = app.text("/metrics").await;
    let sent: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sportello_submission_batch_size_sum "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_default();
    assert!((200.0..=400.0).contains(&sent), "{metrics}");
    // Each receipt carries its own numero.
    let first = receipt_text(&app, &ids[0]).await;
    let numero = column(&app, "numero", &ids[0]).await;
    assert!(first.contains(&numero), "{first}");
    app.stop().await;
}

#[tokio::test]
async fn drafts_sent_together_are_numbered_in_order_and_each_once() {
    let app = spawn_app().await;
    let cf = "RSSMRA80A01H501U";
    let answers = portal::applications::form::Answers::new();
    let sending = |id: &str, cf: &str, ente: &str, now_ms: i64| store::Sending {
        now_ms,
        id: id.to_string(),
        submission: submission(cf, ente, &answers),
    };
    let sent_before = ready_draft(&app, cf).await;
    store::submit(
        app.db(),
        NOV_23_2026,
        &sent_before,
        &submission(cf, "valleverde", &answers),
    )
    .await
    .unwrap();
    let (a, b, not_hers) = (
        ready_draft(&app, cf).await,
        ready_draft(&app, cf).await,
        ready_draft(&app, cf).await,
    );
    let other_ente = sad_draft(&app, cf, "montebello", &answers).await;
    // One in the new year: the counter of 2027 starts from 1.
    let new_year = ready_draft(&app, cf).await;
    let jan_1_2027 = 1_798_758_000_000;
    let batch = [
        sending(&a, cf, "valleverde", NOV_23_2026),
        sending(&sent_before, cf, "valleverde", NOV_23_2026),
        sending(&b, cf, "valleverde", NOV_23_2026),
        sending(&a, cf, "valleverde", NOV_23_2026),
        sending(&not_hers, "BNCGLI85D52F205W", "valleverde", NOV_23_2026),
        sending(&other_ente, cf, "montebello", NOV_23_2026),
        sending(&new_year, cf, "valleverde", jan_1_2027),
        sending("no-such-draft", cf, "valleverde", NOV_23_2026),
    ];
    let new = |n: &str| Some(store::Submitted::New(n.into()));
    assert_eq!(
        store::submit_all(app.db(), &batch).await.unwrap(),
        vec![
            new("2026/000002"),
            Some(store::Submitted::Already),
            new("2026/000003"),
            Some(store::Submitted::Already),
            None,
            new("2026/000001"),
            new("2027/000001"),
            None,
        ]
    );
    let status = column(&app, "status", &not_hers).await;
    assert_eq!(
        status, "bozza",
        "someone else's request leaves the draft alone"
    );
    assert_eq!(
        count_all(
            &app,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'pratica.inviata'"
        )
        .await,
        5
    );
    // The frozen snapshot names the ente, read in the batch.
    let snapshot = column(&app, "snapshot", &other_ente).await;
    assert!(snapshot.contains("Comune di Montebello"), "{snapshot}");

    // Desks of several processes at once (here: tasks, each with batches and replays) still give
    // distinct, gapless numbers.
    let mut drafts = Vec::new();
    for _ in 0..80 {
        drafts.push(ready_draft(&app, cf).await);
    }
    let tasks: Vec<_> = drafts
        .chunks(20)
        .chain(drafts.chunks(20).rev())
        .map(|chunk| {
            let db = app.db().clone();
            let batch: Vec<_> = chunk
                .iter()
                .map(|id| sending(id, cf, "valleverde", NOV_23_2026))
                .collect();
            tokio::spawn(async move { store::submit_all(&db, &batch).await.unwrap() })
        })
        .collect();
    let mut new_ones = 0;
    for t in tasks {
        new_ones += t
            .await
            .unwrap()
            .iter()
            .filter(|s| matches!(s, Some(store::Submitted::New(_))))
            .count();
    }
    assert_eq!(new_ones, 80);
    let expected: Vec<String> = (1..=83).map(|n| format!("2026/{n:06}")).collect();
    assert_eq!(
        numeri(&app, "valleverde")
            .await
            .into_iter()
            .filter(|n| n.starts_with("2026/"))
            .collect::<Vec<_>>(),
        expected
    );
    app.stop().await;
}

#[tokio::test]
async fn a_draft_that_fails_does_not_refuse_the_others_sent_with_it() {
    let app = spawn_app().await;
    let cf = "RSSMRA80A01H501U";
    let answers = portal::applications::form::Answers::new();
    let (good, bad, also_good) = (
        ready_draft(&app, cf).await,
        ready_draft(&app, cf).await,
        ready_draft(&app, cf).await,
    );
    // The database refuses the history row of one draft (as it might refuse anything: a full
    // disk, a constraint), which fails the transaction of the whole batch.
    let refuse = match crate::support::backend() {
        portal::db::Backend::Sqlite => vec![format!(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON application_history \
             WHEN NEW.application_id = '{bad}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )],
        portal::db::Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.application_id = '{bad}' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$"
            ),
            "CREATE TRIGGER refuse_one BEFORE INSERT ON application_history \
             FOR EACH ROW EXECUTE FUNCTION refuse_one()"
                .to_string(),
        ],
    };
    for sql in refuse {
        sqlx::query(&sql).execute(&app.db().pool).await.unwrap();
    }
    let batch: Vec<store::Sending> = [&good, &bad, &also_good]
        .into_iter()
        .map(|id| store::Sending {
            now_ms: NOV_23_2026,
            id: id.clone(),
            submission: submission(cf, "valleverde", &answers),
        })
        .collect();
    assert!(store::submit_all(app.db(), &batch).await.is_err());
    let answers = portal::applications::desk::send_together(app.db(), &batch).await;
    assert!(matches!(&answers[0], Ok(Some(store::Submitted::New(n))) if n == "2026/000001"));
    assert!(answers[1].is_err());
    assert!(matches!(&answers[2], Ok(Some(store::Submitted::New(n))) if n == "2026/000002"));
    // The failed one is still a draft, and no number was skipped.
    let status = column(&app, "status", &bad).await;
    assert_eq!(status, "bozza");
    assert_eq!(
        numeri(&app, "valleverde").await,
        vec!["2026/000001".to_string(), "2026/000002".to_string()]
    );
    app.stop().await;
}

#[tokio::test]
async fn illegal_transitions_are_refused_and_legal_ones_keep_who_when_and_why() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    let cf = "RSSMRA80A01H501U";
    let id = ready_draft(&app, cf).await;
    // A draft is sent only through the submission.
    assert!(matches!(
        change(
            &app,
            &id,
            &Change::to(Status::Inviata, Actor::Cittadino, Some(cf))
        )
        .await,
        Err(TransitionError::NotAllowed { .. })
    ));
    let answers = portal::applications::form::Answers::new();
    store::submit(
        app.db(),
        NOV_23_2026,
        &id,
        &submission(cf, "valleverde", &answers),
    )
    .await
    .unwrap();
    let op = Some("NREPLA75E15D969F");
    assert!(matches!(
        change(
            &app,
            &id,
            &Change::to(Status::Accolta, Actor::Operatore, op)
        )
        .await,
        Err(TransitionError::NotAllowed { .. })
    ));
    assert!(matches!(
        change(
            &app,
            &id,
            &Change::to(Status::Protocollata, Actor::Cittadino, Some(cf))
        )
        .await,
        Err(TransitionError::NotAllowed { .. })
    ));
    assert!(matches!(
        change(
            &app,
            &id,
            &Change::to(Status::Protocollata, Actor::Csi, None)
        )
        .await,
        Err(TransitionError::ProtocolRequired)
    ));
    change(
        &app,
        &id,
        &Change::to(Status::PresaInCarico, Actor::Operatore, op),
    )
    .await
    .unwrap();
    // No rejection without the 10-bis notice, and none without a reason.
    assert!(matches!(
        change(
            &app,
            &id,
            &Change::to(Status::Respinta, Actor::Operatore, op)
        )
        .await,
        Err(TransitionError::NotAllowed { .. })
    ));
    assert!(matches!(
        change(
            &app,
            &id,
            &Change::to(Status::PreavvisoDiRigetto, Actor::Operatore, op)
        )
        .await,
        Err(TransitionError::ReasonRequired(_))
    ));
    // A request for documents needs a deadline after today.
    assert!(matches!(
        change(
            &app,
            &id,
            &Change {
                request: Some(("Documenti", today(&app))),
                ..Change::to(Status::InAttesaDiIntegrazioni, Actor::Operatore, op)
            }
        )
        .await,
        Err(TransitionError::RequestIncomplete)
    ));
    change(
        &app,
        &id,
        &Change {
            reason: Some("ISEE oltre la soglia"),
            ..Change::to(Status::PreavvisoDiRigetto, Actor::Operatore, op)
        },
    )
    .await
    .unwrap();
    change(
        &app,
        &id,
        &Change {
            reason: Some("Nessuna osservazione entro 10 giorni"),
            ..Change::to(Status::Respinta, Actor::Operatore, op)
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        change(
            &app,
            &id,
            &Change::to(Status::Ritirata, Actor::Cittadino, Some(cf))
        )
        .await,
        Err(TransitionError::NotAllowed { .. })
    ));
    let history: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT to_status, actor_kind, actor_cf, reason FROM application_history WHERE application_id = $1 ORDER BY id",
    ).bind(&id).fetch_all(&app.db().pool).await.unwrap();
    let to: Vec<&str> = history.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(
        to,
        [
            "inviata",
            "presa_in_carico",
            "preavviso_di_rigetto",
            "respinta"
        ]
    );
    assert_eq!(history[3].1, "operatore");
    assert_eq!(history[3].2.as_deref(), op);
    assert_eq!(
        history[3].3.as_deref(),
        Some("Nessuna osservazione entro 10 giorni")
    );
    app.stop().await;
}
