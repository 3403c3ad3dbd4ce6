//! Alerts and messages against a real SMTP server on loopback (aiosmtpd): each kind arrives with its
//! content, once; a restart between scheduling and due time neither loses nor doubles a reminder;
//! with SMTP down, alerts wait and go out once it is back; preferences, unsubscribe links and a new
//! address confirmed by a link. The clock is moved, never slept on (the waits are for the job
//! runner to pick up what is due).

use mail_parser::{MessageParser, MimeHeaders};
use portal::alerts::sweep::Sweep;
use portal::applications::form::Answers;
use portal::applications::status::{self, Actor, Change, Status};
use portal::applications::store;
use portal::appointments::store as appointments;
use portal::clock::Clock;
use portal::domain::italian_time::rome_instant;
use reqwest::StatusCode;
use serde_json::Value;
use time::macros::date;

use crate::applications::{ready_draft, submission};
use crate::support::{free_port, hidden_field, location, spawn_app_with, SmtpServer, TestApp};

/// Monday 23 November 2026, 10:00 in Italy.
const NOV_23_2026: i64 = 1_795_424_400_000;
const MARIO: &str = "RSSMRA80A01H501U";

fn subject(raw: &[u8]) -> String {
    MessageParser::default()
        .parse(raw)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

fn text(raw: &[u8]) -> String {
    MessageParser::default()
        .parse(raw)
        .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
        .unwrap_or_default()
}

fn with_subject(part: &'static str) -> impl Fn(&mail_parser::Message<'_>) -> bool {
    move |m| m.subject().is_some_and(|s| s.contains(part))
}

async fn person(app: &TestApp, cf: &str, name: &str, email: &str) {
    sqlx::query(
        "INSERT INTO people (cf, given_name, family_name, email, created_at, updated_at) VALUES ($1, $2, 'Prova', $3, 0, 0)",
    )
    .bind(cf)
    .bind(name)
    .bind(email)
    .execute(&app.db().pool)
    .await
    .expect("person");
}

/// Sends a new SAD application for `cf` (through the store: the same transaction as the page's);
/// returns its id.
async fn sent(app: &TestApp, cf: &str, answers: &Answers) -> String {
    let id = ready_draft(app, cf).await;
    store::submit(
        app.db(),
        app.clock.now_ms(),
        &id,
        &submission(cf, "valleverde", answers),
    )
    .await
    .expect("submitted");
    id
}

async fn change(app: &TestApp, id: &str, c: &Change<'_>) {
    let now = app.clock.now_ms();
    status::transition(
        app.db(),
        now,
        portal::domain::italian_time::rome_date(now),
        id,
        c,
    )
    .await
    .expect("allowed change");
}

/// Waits until the alert job with `key` is no longer pending; returns its status.
async fn settled(app: &TestApp, key: &str) -> String {
    for _ in 0..400 {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE idempotency_key = $1")
                .bind(format!("alert:{key}"))
                .fetch_optional(&app.db().pool)
                .await
                .expect("job");
        if let Some(s) = status.filter(|s| s != "pending" && s != "running") {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the alert {key} was not delivered within 20 s");
}

fn sweep(app: &TestApp) -> Sweep {
    Sweep {
        catalogue: portal::applications::catalogue::Catalogue::load(&app.config.forms_dir)
            .expect("catalogue"),
        config: app.config.alerts.clone(),
    }
}

#[tokio::test]
async fn each_alert_arrives_once_with_its_content() {
    let smtp = SmtpServer::start(free_port()).await;
    let url = smtp.url();
    let app = spawn_app_with(|c| c.email.smtp_url = Some(url.into())).await;
    app.clock.set_ms(NOV_23_2026);
    person(&app, MARIO, "Mario", "mario.rossi@example.it").await;
    person(&app, "NREPLA75E15D969F", "Paolo", "paolo.neri@example.it").await;

    // The receipt, with the PDF attached.
    let id = sent(&app, MARIO, &Answers::new()).await;
    let mail = smtp.wait_for(1, with_subject("Domanda inviata")).await;
    let parsed = MessageParser::default().parse(&mail[0]).expect("e-mail");
    assert_eq!(
        parsed.subject(),
        Some("Domanda inviata: pratica 2026/000001")
    );
    assert_eq!(
        parsed
            .to()
            .and_then(|t| t.first())
            .and_then(|a| a.address()),
        Some("mario.rossi@example.it")
    );
    let body = parsed.body_text(0).unwrap_or_default();
    assert!(
        body.contains("L'esito arriverà entro il 23 dicembre 2026"),
        "{body}"
    );
    assert!(body.contains(&format!("/domande/{id}")));
    assert!(body.contains("/avvisi/disiscrizione?t="));
    assert!(parsed.body_html(0).is_some_and(|h| h.contains("<h1")));
    let pdf = parsed
        .attachments()
        .find(|a| a.attachment_name() == Some("ricevuta-2026-000001.pdf"))
        .expect("the receipt attached");
    assert!(pdf.contents().starts_with(b"%PDF"));

    // Status changes the citizen did not make.
    change(
        &app,
        &id,
        &Change {
            protocollo: Some("VV/2026/123"),
            ..Change::to(Status::Protocollata, Actor::Csi, None)
        },
    )
    .await;
    let mail = smtp.wait_for(1, with_subject("Protocollata")).await;
    assert!(text(&mail[0]).contains("Numero di protocollo: VV/2026/123."));
    change(
        &app,
        &id,
        &Change::to(
            Status::PresaInCarico,
            Actor::Operatore,
            Some("NREPLA75E15D969F"),
        ),
    )
    .await;
    smtp.wait_for(1, with_subject("Presa in carico")).await;

    // Documents requested by 3 December: the e-mail links to the pratica, the request stays there;
    // reminders 3 days and 1 day before, the second one no longer due once answered.
    change(
        &app,
        &id,
        &Change {
            request: Some((
                "Serve il certificato medico aggiornato.",
                date!(2026 - 12 - 03),
            )),
            ..Change::to(
                Status::InAttesaDiIntegrazioni,
                Actor::Operatore,
                Some("NREPLA75E15D969F"),
            )
        },
    )
    .await;
    let mail = smtp
        .wait_for(
            1,
            with_subject("documenti da inviare entro il 3 dicembre 2026"),
        )
        .await;
    assert!(
        !text(&mail[0]).contains("certificato"),
        "details stay behind the login"
    );
    app.clock
        .set_ms(rome_instant(date!(2026 - 11 - 30), 9 * 60 + 1));
    smtp.wait_for(1, with_subject("mancano 3 giorni")).await;
    change(
        &app,
        &id,
        &Change {
            answer: Some("Allego il certificato."),
            ..Change::to(Status::IntegrazioniRicevute, Actor::Cittadino, Some(MARIO))
        },
    )
    .await;
    app.clock
        .set_ms(rome_instant(date!(2026 - 12 - 02), 9 * 60 + 1));
    assert_eq!(
        settled(&app, &format!("scadenza-integrazioni:{id}:2026-12-03:1")).await,
        "done"
    );
    assert!(!smtp
        .messages()
        .iter()
        .any(|m| subject(m).contains("manca 1 giorno")));

    // Preavviso di rigetto: ten days from today (2 December).
    change(
        &app,
        &id,
        &Change {
            reason: Some("Manca un requisito."),
            ..Change::to(
                Status::PreavvisoDiRigetto,
                Actor::Operatore,
                Some("NREPLA75E15D969F"),
            )
        },
    )
    .await;
    let mail = smtp.wait_for(1, with_subject("preavviso di rigetto")).await;
    assert!(text(&mail[0]).contains("fino al 12 dicembre 2026"));

    // December: the ISEE of open pratiche that have one.
    let mut answers = Answers::new();
    answers.insert("isee_valore".into(), Value::String("9000.00".into()));
    let with_isee = sent(&app, MARIO, &answers).await;
    sweep(&app)
        .sweep(app.db(), app.clock.now_ms())
        .await
        .expect("sweep");
    let mail = smtp
        .wait_for(1, with_subject("l'ISEE scade il 31 dicembre 2026"))
        .await;
    assert!(subject(&mail[0]).contains("2026/000002"));
    assert_eq!(
        settled(&app, &format!("isee:{with_isee}:2026")).await,
        "done"
    );

    // Near the legal term (23 December for the first pratica): its ente's operators are told.
    app.clock
        .set_ms(rome_instant(date!(2026 - 12 - 19), 10 * 60));
    sweep(&app)
        .sweep(app.db(), app.clock.now_ms())
        .await
        .expect("sweep");
    let mail = smtp
        .wait_for(1, with_subject("termine per l'esito il 23 dicembre 2026"))
        .await;
    let parsed = MessageParser::default().parse(&mail[0]).expect("e-mail");
    assert_eq!(
        parsed
            .to()
            .and_then(|t| t.first())
            .and_then(|a| a.address()),
        Some("paolo.neri@example.it")
    );

    // A draft whose service closes within 7 days (FNA B2 closes on 31 January 2027).
    let draft = store::create_draft(
        app.db(),
        app.clock.now_ms(),
        &store::NewDraft {
            ente_code: "valleverde",
            service_code: "fna-b2",
            form_version: 1,
            applicant_cf: MARIO,
            answers: &Answers::new(),
        },
    )
    .await
    .expect("draft");
    app.clock
        .set_ms(rome_instant(date!(2027 - 01 - 25), 10 * 60));
    sweep(&app)
        .sweep(app.db(), app.clock.now_ms())
        .await
        .expect("sweep");
    smtp.wait_for(
        1,
        with_subject("Una domanda in bozza va inviata entro il 31 gennaio 2027"),
    )
    .await;
    sweep(&app)
        .sweep(app.db(), app.clock.now_ms())
        .await
        .expect("sweep again");
    assert_eq!(
        settled(&app, &format!("bozza:{draft}:2027-01-31")).await,
        "done"
    );

    // Each once, in the inbox as by e-mail.
    let subjects: Vec<String> = smtp.messages().iter().map(|m| subject(m)).collect();
    for part in [
        "Domanda inviata: pratica 2026/000001",
        "Pratica 2026/000001: Protocollata",
        "mancano 3 giorni",
        "Pratica 2026/000001: preavviso di rigetto",
        "va inviata entro",
        "termine per l'esito il 23 dicembre 2026",
    ] {
        assert_eq!(
            subjects.iter().filter(|s| s.contains(part)).count(),
            1,
            "{part}: {subjects:?}"
        );
    }
    // The clock jumped past both reminders of the preavviso (9 and 11 December) and past its term:
    // neither went out late.
    assert!(
        !subjects
            .iter()
            .any(|s| s.contains("osservazioni sulla pratica")),
        "{subjects:?}"
    );
    // Every e-mail to the citizen is also in the inbox; none names the service.
    let inbox: Vec<String> = sqlx::query_scalar("SELECT subject FROM messages WHERE cf = $1")
        .bind(MARIO)
        .fetch_all(&app.db().pool)
        .await
        .expect("inbox");
    for raw in smtp.messages() {
        let parsed = MessageParser::default().parse(&raw).expect("e-mail");
        let to = parsed
            .to()
            .and_then(|t| t.first())
            .and_then(|a| a.address())
            .unwrap_or_default();
        let subject = parsed.subject().unwrap_or_default();
        if to == "mario.rossi@example.it" {
            assert!(
                inbox.iter().any(|s| s == subject),
                "{subject} not in the inbox"
            );
        }
        let body = parsed.body_text(0).unwrap_or_default();
        for name in ["Assistenza domiciliare", "FNA", "disabilità"] {
            assert!(
                !subject.contains(name) && !body.contains(name),
                "{subject}: names the service"
            );
        }
    }
    assert!(inbox.len() >= 8, "{inbox:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_appointment_reminder_survives_a_restart_and_comes_once() {
    let smtp = SmtpServer::start(free_port()).await;
    let url = smtp.url();
    let mut app = spawn_app_with(|c| c.email.smtp_url = Some(url.into())).await;
    app.clock.set_ms(NOV_23_2026);
    person(&app, MARIO, "Mario", "mario.rossi@example.it").await;

    // Thursday 26 November, 14:30, at the town hall.
    let calendar = appointments::calendar_by_id(app.db(), "vv-municipio-as")
        .await
        .expect("calendar")
        .expect("demo calendar");
    let start = rome_instant(date!(2026 - 11 - 26), 14 * 60 + 30);
    let now = app.clock.now_ms();
    let appointments::Hold::Held(id) =
        appointments::hold(app.db(), now, &calendar, start, MARIO, 600_000)
            .await
            .expect("hold")
    else {
        panic!("the place is free");
    };
    appointments::save_details(
        app.db(),
        now,
        &id,
        MARIO,
        &appointments::Details {
            topic_id: Some("vv-sad".into()),
            reason: Some("Aiuto in casa".into()),
            ..appointments::Details::default()
        },
    )
    .await
    .expect("details");
    appointments::confirm(app.db(), now, &id, MARIO)
        .await
        .expect("booked");
    let mail = smtp
        .wait_for(
            1,
            with_subject("Appuntamento prenotato: giovedì 26 novembre 2026 alle 14:30"),
        )
        .await;
    let parsed = MessageParser::default().parse(&mail[0]).expect("e-mail");
    let ics = parsed
        .attachments()
        .find(|a| a.attachment_name() == Some("appuntamento.ics"))
        .expect("the .ics attached");
    assert!(String::from_utf8_lossy(ics.contents()).contains("DTSTART:20261126T133000Z"));

    // The reminder is due 24 hours before: a restart in between loses nothing.
    app.restart_with(|_| {}).await;
    app.clock.set_ms(start - 24 * 3_600_000 + 60_000);
    smtp.wait_for(
        1,
        with_subject("Promemoria: appuntamento giovedì 26 novembre 2026 alle 14:30"),
    )
    .await;
    app.restart_with(|_| {}).await;
    app.clock.set_ms(start - 3_600_000);
    assert_eq!(
        settled(&app, &format!("promemoria-appuntamento:{id}:{start}")).await,
        "done"
    );
    let reminders = smtp
        .messages()
        .iter()
        .filter(|m| subject(m).starts_with("Promemoria: appuntamento"))
        .count();
    assert_eq!(reminders, 1);
    app.stop().await;
}

#[tokio::test]
async fn with_smtp_down_alerts_wait_and_go_out_once_it_is_back() {
    let port = free_port();
    let app =
        spawn_app_with(|c| c.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into()))
            .await;
    app.clock.set_ms(NOV_23_2026);
    person(&app, MARIO, "Mario", "mario.rossi@example.it").await;
    let id = sent(&app, MARIO, &Answers::new()).await;
    let key = format!("alert:ricevuta:{id}");
    let mut failed = None;
    for _ in 0..400 {
        let row: Option<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT status, attempts, last_error FROM jobs WHERE idempotency_key = $1",
        )
        .bind(&key)
        .fetch_optional(&app.db().pool)
        .await
        .expect("job");
        if let Some(r) = row.filter(|r| r.1 >= 1 && r.0 == "pending") {
            failed = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, _, error) = failed.expect("a failed attempt, to be retried");
    let error = error.unwrap_or_default();
    assert!(error.starts_with("SMTP"), "{error}");
    assert!(!error.contains("mario"), "no personal data on the job row");
    // The inbox has it already.
    let inbox: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE cf = $1")
        .bind(MARIO)
        .fetch_one(&app.db().pool)
        .await
        .expect("inbox");
    assert_eq!(inbox, 1);
    // Administrators see what waits, without personal data.
    app.login("elena-ferri").await;
    let page = app.text("/amministrazione/avvisi").await;
    assert!(
        page.contains("Ricevuta di una domanda inviata") && page.contains("SMTP"),
        "{page}"
    );
    assert!(!page.contains("mario.rossi"));

    let smtp = SmtpServer::start(port).await;
    app.clock.set_ms(NOV_23_2026 + 10 * 60_000);
    smtp.wait_for(1, with_subject("Domanda inviata")).await;
    app.clock.set_ms(NOV_23_2026 + 3 * 3_600_000);
    assert_eq!(settled(&app, &format!("ricevuta:{id}")).await, "done");
    assert_eq!(smtp.messages().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_inbox_preferences_unsubscribe_and_a_confirmed_new_address() {
    let smtp = SmtpServer::start(free_port()).await;
    let url = smtp.url();
    let app = spawn_app_with(|c| c.email.smtp_url = Some(url.into())).await;
    app.clock.set_ms(NOV_23_2026);
    app.login("giulia-bianchi").await;
    let giulia = "BNCGLI85D52F205W";

    let first = sent(&app, giulia, &Answers::new()).await;
    let mail = smtp.wait_for(1, with_subject("Domanda inviata")).await;
    let body = text(&mail[0]);
    let link = body[body
        .find("/avvisi/disiscrizione")
        .expect("unsubscribe link")..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();

    // The inbox: unread count, one message, marked read when opened; nobody else's.
    let area = app.text("/area-personale").await;
    assert!(area.contains("1 da leggere"), "{area}");
    let inbox = app.text("/area-personale/messaggi").await;
    assert!(inbox.contains("Domanda inviata: pratica 2026&#x2F;000001"));
    assert!(
        !inbox.contains("Assistenza domiciliare"),
        "no service named in messages"
    );
    let plain = "href=\"/messaggi/";
    let at = inbox.find(plain).expect("message link") + plain.len();
    let message_id: String = inbox[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let page = app.text(&format!("/messaggi/{message_id}")).await;
    assert!(
        page.contains("L&#x27;esito arriverà entro il 23 dicembre 2026"),
        "{page}"
    );
    assert!(!app.text("/area-personale").await.contains("da leggere"));
    let (other, _) = crate::support::new_client();
    let r = other
        .get(app.absolute(&format!("/messaggi/{message_id}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "anonymous: to the login");

    // Unsubscribing from receipts by the e-mail's link: the next receipt is only in the inbox.
    let page = app.get(&link).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("Ricevuta di una domanda inviata"));
    let token = hidden_field(&html, "t").expect("token");
    let csrf = hidden_field(&html, "csrf_token").expect("csrf");
    let done = app
        .post_form(
            "/avvisi/disiscrizione",
            &[("csrf_token", &csrf), ("t", &token)],
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done
        .text()
        .await
        .unwrap_or_default()
        .contains("Non riceverai più per e-mail"));
    let again = app
        .post_form(
            "/avvisi/disiscrizione",
            &[("csrf_token", &csrf), ("t", &token)],
        )
        .await;
    assert_eq!(again.status(), StatusCode::GONE);
    let second = sent(&app, giulia, &Answers::new()).await;
    assert_eq!(settled(&app, &format!("ricevuta:{second}")).await, "done");
    assert_eq!(
        smtp.messages()
            .iter()
            .filter(|m| subject(m).contains("Domanda inviata"))
            .count(),
        1
    );
    assert!(app
        .text("/area-personale/messaggi")
        .await
        .contains("2026&#x2F;000002"));
    let settings = app.text("/area-personale/impostazioni").await;
    assert!(
        settings.contains("name=\"email_ricevuta\" value=\"si\">"),
        "unticked"
    );
    assert!(settings.contains("name=\"email_stato\" value=\"si\" checked>"));

    // Preferences saved from the page: status changes no longer by e-mail either.
    let csrf = app.csrf_token().await;
    let saved = app
        .post_form(
            "/area-personale/avvisi",
            &[("csrf_token", &csrf), ("email_appuntamento", "si")],
        )
        .await;
    assert_eq!(location(&saved), "/area-personale/impostazioni?avvisi=1");
    let at = app.clock.now_ms();
    change(
        &app,
        &first,
        &Change {
            protocollo: Some("P1"),
            ..Change::to(Status::Protocollata, Actor::Csi, None)
        },
    )
    .await;
    assert_eq!(
        settled(&app, &format!("stato:{first}:protocollata:{at}")).await,
        "done"
    );
    assert!(!smtp
        .messages()
        .iter()
        .any(|m| subject(m).contains("Protocollata")));
    assert!(app
        .text("/area-personale/messaggi")
        .await
        .contains("Protocollata"));

    // A new address, confirmed by the link sent to it.
    let bad = app
        .post_form(
            "/area-personale/email",
            &[("csrf_token", &csrf), ("email", "giulia@")],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad
        .text()
        .await
        .unwrap_or_default()
        .contains("Scrivi un indirizzo e-mail valido"));
    let asked = app
        .post_form(
            "/area-personale/email",
            &[("csrf_token", &csrf), ("email", "giulia@nuovo.example.it")],
        )
        .await;
    assert_eq!(location(&asked), "/area-personale/impostazioni?email=1");
    let mail = smtp
        .wait_for(1, with_subject("Conferma il tuo nuovo indirizzo"))
        .await;
    let parsed = MessageParser::default().parse(&mail[0]).expect("e-mail");
    assert_eq!(
        parsed
            .to()
            .and_then(|t| t.first())
            .and_then(|a| a.address()),
        Some("giulia@nuovo.example.it")
    );
    let body = parsed.body_text(0).unwrap_or_default();
    let confirm = body[body.find("/avvisi/conferma-email").expect("link")..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM people WHERE cf = $1")
        .bind(giulia)
        .fetch_one(&app.db().pool)
        .await
        .expect("email");
    assert_eq!(
        email.as_deref(),
        Some("giulia.bianchi@example.it"),
        "unchanged until confirmed"
    );
    let ok = app.get(&confirm).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok
        .text()
        .await
        .unwrap_or_default()
        .contains("Indirizzo confermato"));
    assert_eq!(app.get(&confirm).await.status(), StatusCode::GONE);
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM people WHERE cf = $1")
        .bind(giulia)
        .fetch_one(&app.db().pool)
        .await
        .expect("email");
    assert_eq!(email.as_deref(), Some("giulia@nuovo.example.it"));
    // The CSI of the ente holding her pratica hears of the new address.
    let changed: Vec<(String,)> = sqlx::query_as(
        "SELECT payload FROM outbox WHERE event_type = 'persona.contatti' AND aggregate_id = $1",
    )
    .bind(giulia)
    .fetch_all(&app.db().pool)
    .await
    .expect("outbox");
    assert_eq!(changed.len(), 1, "one ente, one event");
    let payload: serde_json::Value = serde_json::from_str(&changed[0].0).expect("JSON");
    portal::csi::events::validate("persona.contatti", &payload).expect("by the schema");
    assert_eq!(payload["email"], "giulia@nuovo.example.it");
    app.stop().await;
}
