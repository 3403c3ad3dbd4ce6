//! Profiled access through HTTP: delegations made online, legal representation recorded by the
//! office, acting for someone, the access matrix of every route that reads or changes personal data,
//! the citizen's "who consulted my file", the auditor's log, and the data export.

use portal::applications::store;
use portal::auth::Role;
use reqwest::StatusCode;

use crate::applications::{
    csrf, next_ok, pdf_text, ready_draft, receipt_text, start, submission, submit, NOV_23_2026,
};
use crate::appointments::Citizen;
use crate::support::{hidden_field, location, spawn_app, spawn_app_with, TestApp};

const MARIO: &str = "RSSMRA80A01H501U";
const GIULIA: &str = "BNCGLI85D52F205W";
const LUCA: &str = "VRDLCU15C10L219Q";

async fn mandate_of(app: &TestApp, agent: &str) -> String {
    sqlx::query_scalar("SELECT id FROM mandates WHERE agent_cf = $1 ORDER BY created_at DESC")
        .bind(agent)
        .fetch_one(&app.db().pool)
        .await
        .unwrap()
}

async fn post(app: &TestApp, page: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let token = csrf(app, page).await;
    let mut all = vec![("csrf_token", token.as_str())];
    all.extend_from_slice(form);
    app.post_form(path, &all).await
}

#[tokio::test]
async fn a_delegate_accepts_acts_for_the_person_within_scope_and_both_are_on_the_record() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("mario-rossi").await;
    let page = app.text("/area-personale/deleghe").await;
    assert!(page.contains("Non hai delegato nessuno"), "{page}");

    // Mistakes are explained next to their fields, and what was typed stays.
    let wrong = post(
        &app,
        "/area-personale/deleghe",
        "/area-personale/deleghe",
        &[
            ("cf", "RSSMRA80A01H501X"),
            ("nome", ""),
            ("cognome", "Bianchi"),
            ("fino_al", "2020-01-01"),
        ],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = wrong.text().await.unwrap();
    for message in [
        "Il codice fiscale non è valido",
        "Indica il nome della persona delegata",
        "Scegli almeno una cosa",
        "La data di fine è già passata",
    ] {
        assert!(html.contains(message), "{message}: {html}");
    }
    assert!(html.contains("value=\"Bianchi\"") && html.contains("aria-invalid=\"true\""));
    let herself = post(
        &app,
        "/area-personale/deleghe",
        "/area-personale/deleghe",
        &[
            ("cf", MARIO),
            ("nome", "Mario"),
            ("cognome", "Rossi"),
            ("ambito", "stato"),
            ("fino_al", "2027-06-30"),
        ],
    )
    .await;
    assert!(herself
        .text()
        .await
        .unwrap()
        .contains("Non puoi delegare te stesso"));

    let scopes = [
        ("cf", GIULIA),
        ("nome", "Giulia"),
        ("cognome", "Bianchi"),
        ("ambito", "stato"),
        ("ambito", "integrazioni"),
        ("ambito", "domande"),
        ("fino_al", "30/06/2027"),
    ];
    let made = post(
        &app,
        "/area-personale/deleghe",
        "/area-personale/deleghe",
        &scopes,
    )
    .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let page = app.text(&location(&made)).await;
    assert!(
        page.contains("Giulia Bianchi")
            && page.contains("In attesa di accettazione")
            && page.contains("30 giugno 2027"),
        "{page}"
    );
    let twice = post(
        &app,
        "/area-personale/deleghe",
        "/area-personale/deleghe",
        &scopes,
    )
    .await;
    assert_eq!(twice.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(twice
        .text()
        .await
        .unwrap()
        .contains("Hai già una delega in corso"));
    app.logout().await;

    // The delegate finds it, cannot use it before accepting, accepts, and enters the mode.
    app.login("giulia-bianchi").await;
    let page = app.text("/area-personale/deleghe").await;
    assert!(
        page.contains("Mario Rossi") && page.contains("Da accettare"),
        "{page}"
    );
    let id = mandate_of(&app, GIULIA).await;
    let early = post(
        &app,
        "/area-personale/deleghe",
        &format!("/area-personale/deleghe/{id}/opera"),
        &[],
    )
    .await;
    assert_eq!(early.status(), StatusCode::BAD_REQUEST);
    let accepted = post(
        &app,
        "/area-personale/deleghe",
        &format!("/area-personale/deleghe/{id}/accetta"),
        &[],
    )
    .await;
    assert_eq!(
        location(&accepted),
        "/area-personale/deleghe?esito=accettata"
    );
    let acting = post(
        &app,
        "/area-personale/deleghe",
        &format!("/area-personale/deleghe/{id}/opera"),
        &[],
    )
    .await;
    assert_eq!(location(&acting), "/area-personale");
    let area = app.text("/area-personale").await;
    assert!(
        area.contains("Stai operando per conto di Mario Rossi"),
        "{area}"
    );

    // Outside the scopes, and the person's own pages: refused, saying why.
    let booking = app.get("/appuntamenti/prenota").await;
    assert_eq!(booking.status(), StatusCode::FORBIDDEN);
    assert!(booking
        .text()
        .await
        .unwrap()
        .contains("non ti consente di prenotare e disdire appuntamenti"));
    let settings = app.get("/area-personale/impostazioni").await;
    assert_eq!(settings.status(), StatusCode::FORBIDDEN);
    assert!(settings
        .text()
        .await
        .unwrap()
        .contains("riguarda solo i tuoi dati"));
    assert_eq!(
        app.get("/area-personale/esportazione.json").await.status(),
        StatusCode::FORBIDDEN
    );

    // An application for Mario, prefilled with his data, sent by Giulia.
    let pratica = start(&app, "sad", "valleverde").await;
    let step1 = app.text(&format!("/domande/{pratica}/passo/1")).await;
    assert!(
        step1.contains("value=\"Rossi\"") && step1.contains(MARIO),
        "{step1}"
    );
    next_ok(
        &app,
        &pratica,
        1,
        &[
            ("richiedente_nome", "Mario"),
            ("richiedente_cognome", "Rossi"),
            ("richiedente_cf", MARIO),
            ("email", ""),
            ("telefono", "+39 333 1234567"),
            ("per_chi", "me"),
        ],
        "passo/2",
    )
    .await;
    next_ok(
        &app,
        &pratica,
        2,
        &[
            ("indirizzo_assistenza", "Via Roma 1"),
            ("vive_solo", "si"),
            ("bisogno", "cura_persona"),
            (
                "descrizione",
                "Dopo l'operazione non riesco a fare la spesa da solo.",
            ),
            ("ore_settimanali", "4"),
        ],
        "passo/3",
    )
    .await;
    next_ok(&app, &pratica, 3, &[("presenta_isee", "no")], "riepilogo").await;
    assert_eq!(
        location(&submit(&app, &pratica).await),
        format!("/domande/{pratica}?inviata=1")
    );
    let receipt = receipt_text(&app, &pratica).await;
    assert!(
        receipt.contains("Richiedente: Mario Rossi (codice fiscale RSSMRA80A01H501U)")
            && receipt.contains("Presentata per conto del richiedente da: Giulia Bianchi (codice fiscale BNCGLI85D52F205W)")
            && receipt.contains("delegato"),
        "{receipt}"
    );
    let (applicant, delegate): (String, Option<String>) =
        sqlx::query_as("SELECT applicant_cf, delegate_cf FROM applications WHERE id = $1")
            .bind(&pratica)
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(
        (applicant.as_str(), delegate.as_deref()),
        (MARIO, Some(GIULIA))
    );
    let event: String = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE aggregate_id = $1 AND event_type = 'pratica.inviata'",
    )
    .bind(&pratica)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    let event: serde_json::Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["presentata_da"]["cf"], GIULIA);
    assert_eq!(event["applicant_cf"], MARIO);
    let page = app.text(&format!("/domande/{pratica}")).await;
    assert!(
        page.contains("Giulia Bianchi, per conto del richiedente"),
        "{page}"
    );

    // Back to her own data: Mario's pratica no longer exists for her.
    let back = post(
        &app,
        "/area-personale",
        "/area-personale/deleghe/torna",
        &[],
    )
    .await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert!(!app
        .text("/area-personale")
        .await
        .contains("Stai operando per conto"));
    assert_eq!(
        app.get(&format!("/domande/{pratica}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(!app
        .text("/area-personale/pratiche")
        .await
        .contains("2026&#x2F;000001"));
    app.logout().await;

    // The office sees who sent it.
    app.login("paolo-neri").await;
    let desk = app.text(&format!("/ufficio/pratiche/{pratica}")).await;
    assert!(
        desk.contains("Giulia Bianchi (BNCGLI85D52F205W), delegato, per conto del richiedente"),
        "{desk}"
    );
    app.logout().await;

    // Mario sees the pratica, and who acted on his file.
    app.login("mario-rossi").await;
    assert!(app
        .text("/area-personale/pratiche")
        .await
        .contains("2026&#x2F;000001"));
    let log = app.text("/area-personale/accessi").await;
    assert!(log.contains("Giulia Bianchi, delegato"), "{log}");
    let revoked = post(
        &app,
        "/area-personale/deleghe",
        &format!("/area-personale/deleghe/{id}/revoca"),
        &[],
    )
    .await;
    assert_eq!(location(&revoked), "/area-personale/deleghe?esito=revocata");
    assert!(app
        .text("/area-personale/deleghe")
        .await
        .contains("Revocata"));
    app.logout().await;

    app.login("giulia-bianchi").await;
    let late = post(
        &app,
        "/area-personale/deleghe",
        &format!("/area-personale/deleghe/{id}/opera"),
        &[],
    )
    .await;
    assert_eq!(late.status(), StatusCode::BAD_REQUEST);
    assert!(late.text().await.unwrap().contains("non è attiva"));
    app.stop().await;
}

#[tokio::test]
async fn the_office_records_a_parent_for_a_minor_who_then_acts_for_the_child() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("paolo-neri").await;
    let page = app.text("/ufficio/rappresentanze").await;
    assert!(page.contains("Registra"), "{page}");
    let mut form = vec![
        ("tipo", "genitore"),
        ("ente", "valleverde"),
        ("rappresentato_cf", LUCA),
        ("rappresentato_nome", "Luca"),
        ("rappresentato_cognome", "Verdi"),
        ("rappresentante_cf", "VRDNNA78M41L219W"),
        ("rappresentante_nome", "Anna"),
        ("rappresentante_cognome", "Verdi"),
        ("documento", ""),
        ("fino_al", "2033-03-09"),
    ];
    let missing = post(
        &app,
        "/ufficio/rappresentanze",
        "/ufficio/rappresentanze",
        &form,
    )
    .await;
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = missing.text().await.unwrap();
    assert!(
        html.contains("Indica il documento controllato") && html.contains(LUCA),
        "{html}"
    );
    form[8] = (
        "documento",
        "Estratto dell'atto di nascita, Comune di Valleverde, 10/03/2015",
    );
    let recorded = post(
        &app,
        "/ufficio/rappresentanze",
        "/ufficio/rappresentanze",
        &form,
    )
    .await;
    assert_eq!(
        location(&recorded),
        "/ufficio/rappresentanze?esito=registrata"
    );
    let list = app.text("/ufficio/rappresentanze").await;
    assert!(
        list.contains("Luca Verdi") && list.contains("Estratto dell&#x27;atto di nascita"),
        "{list}"
    );
    let id = mandate_of(&app, "VRDNNA78M41L219W").await;
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE subject_cf = $1 AND actor_cf = 'NREPLA75E15D969F' AND object LIKE 'rappresentanza:genitore:registrata'",
    )
    .bind(LUCA)
    .fetch_one(&app.db().pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    app.logout().await;

    // An operator of another ente neither sees it nor can end it.
    app.login("laura-gallo").await;
    assert!(!app
        .text("/ufficio/rappresentanze")
        .await
        .contains("Luca Verdi"));
    let foreign = post(
        &app,
        "/ufficio/rappresentanze",
        &format!("/ufficio/rappresentanze/{id}/chiudi"),
        &[],
    )
    .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    app.logout().await;

    // The parent acts for the child in everything, and cannot end it herself.
    app.login("anna-verdi").await;
    let page = app.text("/area-personale/deleghe").await;
    assert!(
        page.contains("Luca Verdi") && page.contains("Responsabilità genitoriale"),
        "{page}"
    );
    let gone = post(
        &app,
        "/area-personale/deleghe",
        &format!("/area-personale/deleghe/{id}/revoca"),
        &[],
    )
    .await;
    assert_eq!(gone.status(), StatusCode::BAD_REQUEST);
    assert!(gone
        .text()
        .await
        .unwrap()
        .contains("Una rappresentanza legale si chiude presso"));
    post(
        &app,
        "/area-personale/deleghe",
        &format!("/area-personale/deleghe/{id}/opera"),
        &[],
    )
    .await;
    assert!(app
        .text("/area-personale")
        .await
        .contains("Stai operando per conto di Luca Verdi"));
    assert_eq!(
        app.get("/appuntamenti/prenota").await.status(),
        StatusCode::OK
    );
    let draft = start(&app, "sad", "valleverde").await;
    let owner: String = sqlx::query_scalar("SELECT applicant_cf FROM applications WHERE id = $1")
        .bind(&draft)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    assert_eq!(owner, LUCA);
    app.logout().await;

    // The office ends it: the parent's mode ends with it.
    app.login("paolo-neri").await;
    let ended = post(
        &app,
        "/ufficio/rappresentanze",
        &format!("/ufficio/rappresentanze/{id}/chiudi"),
        &[],
    )
    .await;
    assert_eq!(location(&ended), "/ufficio/rappresentanze?esito=chiusa");
    app.logout().await;
    app.login("anna-verdi").await;
    let opened = post(
        &app,
        "/area-personale/deleghe",
        &format!("/area-personale/deleghe/{id}/opera"),
        &[],
    )
    .await;
    assert_eq!(opened.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get(&format!("/domande/{draft}")).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

/// Who asks, in the access matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Owner,
    OtherCitizen,
    DelegateForStatus,
    DelegateForBookings,
    DelegateExpired,
    DelegateRevoked,
    Operator,
    OperatorElsewhere,
    Auditor,
}

const CALLERS: [Caller; 10] = [
    Caller::Anonymous,
    Caller::Owner,
    Caller::OtherCitizen,
    Caller::DelegateForStatus,
    Caller::DelegateForBookings,
    Caller::DelegateExpired,
    Caller::DelegateRevoked,
    Caller::Operator,
    Caller::OperatorElsewhere,
    Caller::Auditor,
];

/// Every route that reads or changes the owner's data, tried by every kind of caller with the
/// owner's ids; each answer is checked against the rules, and no body leaks the owner's data.
#[tokio::test]
async fn access_matrix_every_route_every_caller() {
    use Caller::*;
    // Sessions outlive the days the test moves the clock by (one delegation expires meanwhile).
    let app = spawn_app_with(|c| {
        c.auth.session_idle_minutes = 7 * 24 * 60;
        c.auth.session_absolute_hours = 7 * 24;
    })
    .await;
    app.clock.set_ms(NOV_23_2026);
    let db = &app.db().pool;

    // The owner: a pratica with a document, sent; a person row as the login makes it.
    let owner = Citizen::new(&app, 501).await;
    sqlx::query("INSERT INTO people (cf, given_name, family_name, created_at, updated_at) VALUES ($1, 'Maria', 'Prova501', 0, 0)")
        .bind(&owner.cf)
        .execute(db)
        .await
        .unwrap();
    let pratica = ready_draft(&app, &owner.cf).await;
    let doc = crate::documents::pdf_with("Relazione sociale", |_, _| {});
    let (status, answer) = crate::documents::upload(&owner, &pratica, "relazione.pdf", &doc).await;
    assert_eq!(
        (status, answer["stato"].as_str()),
        (StatusCode::OK, Some("accettato"))
    );
    let answers = portal::applications::form::Answers::new();
    store::submit(
        app.db(),
        NOV_23_2026,
        &pratica,
        &submission(&owner.cf, "valleverde", &answers),
    )
    .await
    .unwrap()
    .unwrap();
    let numero: String = sqlx::query_scalar("SELECT numero FROM applications WHERE id = $1")
        .bind(&pratica)
        .fetch_one(db)
        .await
        .unwrap();
    let document: String = sqlx::query_scalar("SELECT id FROM documents WHERE application_id = $1")
        .bind(&pratica)
        .fetch_one(db)
        .await
        .unwrap();

    // The delegates: made by the owner, accepted, each one in the "acting for" mode.
    let mut delegates = Vec::new();
    for (i, scopes, until) in [
        (502, vec!["stato", "integrazioni"], "2027-06-30"),
        (503, vec!["appuntamenti"], "2027-06-30"),
        (504, vec!["stato", "integrazioni", "domande"], "2026-11-24"),
        (505, vec!["stato", "integrazioni", "domande"], "2027-06-30"),
    ] {
        let d = Citizen::new(&app, i).await;
        let mut form = vec![
            ("cf", d.cf.as_str()),
            ("nome", "Maria"),
            ("cognome", "Prova"),
            ("fino_al", until),
        ];
        form.extend(scopes.iter().map(|s| ("ambito", *s)));
        assert_eq!(
            owner.post("/area-personale/deleghe", &form).await.status(),
            StatusCode::SEE_OTHER
        );
        let id = mandate_of(&app, &d.cf).await;
        assert_eq!(
            d.post(&format!("/area-personale/deleghe/{id}/accetta"), &[])
                .await
                .status(),
            StatusCode::SEE_OTHER
        );
        assert_eq!(
            d.post(&format!("/area-personale/deleghe/{id}/opera"), &[])
                .await
                .status(),
            StatusCode::SEE_OTHER
        );
        assert!(d
            .text("/area-personale")
            .await
            .contains("Stai operando per conto di Maria Prova501"));
        delegates.push((d, id));
    }
    // One revoked by the owner, one past its last day.
    let revoked = &delegates[3].1;
    assert_eq!(
        owner
            .post(&format!("/area-personale/deleghe/{revoked}/revoca"), &[])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    // Friday evening: the first free time is next week, beyond the notice for cancelling.
    app.clock
        .set_ms(NOV_23_2026 + 4 * 86_400_000 + 10 * 3_600_000);
    // And an appointment, booked by the owner.
    let appointment = crate::appointments::hold_first(&owner, "vv-borgo").await;
    let booked = crate::appointments::complete(&owner, &appointment, "vv-informazioni").await;
    assert_eq!(booked.status(), StatusCode::SEE_OTHER);

    let other = Citizen::new(&app, 506).await;
    let operator = Citizen::staff(&app, 507, "valleverde", Role::Operatore).await;
    let elsewhere = Citizen::staff(&app, 508, "montebello", Role::Operatore).await;
    let auditor = Citizen::staff(&app, 509, "valleverde", Role::Revisore).await;
    let (anonymous_client, _) = crate::support::new_client();
    let client_of = |c: Caller| -> Option<&Citizen> {
        match c {
            Anonymous => None,
            Owner => Some(&owner),
            OtherCitizen => Some(&other),
            DelegateForStatus => Some(&delegates[0].0),
            DelegateForBookings => Some(&delegates[1].0),
            DelegateExpired => Some(&delegates[2].0),
            DelegateRevoked => Some(&delegates[3].0),
            Operator => Some(&operator),
            OperatorElsewhere => Some(&elsewhere),
            Auditor => Some(&auditor),
        }
    };
    let get = |c: Caller, path: String| {
        let client = client_of(c);
        let anonymous = anonymous_client.clone();
        let url = format!("{}{path}", app.url);
        async move {
            let r = match client {
                Some(citizen) => citizen.get(&path).await,
                None => anonymous.get(&url).send().await.unwrap(),
            };
            let status = r.status();
            let location = location(&r);
            (status, location, r.bytes().await.unwrap().to_vec())
        }
    };

    // What each caller may see. `Own` = 200 with the owner's data; `Empty` = 200 with only the
    // caller's own data; `Login` = sent to log in; the rest a refusal with no data.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Want {
        Own,
        Empty,
        Login,
        Refused(u16),
    }
    use Want::*;
    let citizen_read = |c: Caller| match c {
        Anonymous => Login,
        Owner | DelegateForStatus => Own,
        DelegateForBookings => Refused(403),
        _ => Refused(404),
    };
    type Rule = Box<dyn Fn(Caller) -> Want>;
    let reads: Vec<(String, Rule)> = vec![
        (format!("/domande/{pratica}"), Box::new(citizen_read)),
        (
            format!("/domande/{pratica}/ricevuta.pdf"),
            Box::new(citizen_read),
        ),
        (
            format!("/documenti/{document}"),
            Box::new(move |c| match c {
                Operator | Auditor => Own,
                other => citizen_read(other),
            }),
        ),
        (
            "/area-personale/pratiche".into(),
            Box::new(|c| match c {
                Anonymous => Login,
                Owner | DelegateForStatus => Own,
                DelegateForBookings => Refused(403),
                _ => Empty,
            }),
        ),
        (
            "/area-personale/esportazione.json".into(),
            Box::new(|c| match c {
                Anonymous => Login,
                Owner => Own,
                // Acting for someone: the export is only the person's own.
                DelegateForStatus | DelegateForBookings => Refused(403),
                // Back to their own data (their mode ended): they have no person row here.
                _ => Refused(404),
            }),
        ),
        (
            "/area-personale/esportazione.pdf".into(),
            Box::new(|c| match c {
                Anonymous => Login,
                Owner => Own,
                DelegateForStatus | DelegateForBookings => Refused(403),
                _ => Refused(404),
            }),
        ),
        (
            format!("/ufficio/pratiche/{pratica}"),
            Box::new(|c| match c {
                Anonymous => Login,
                Operator | Auditor => Own,
                OperatorElsewhere => Refused(404),
                _ => Refused(403),
            }),
        ),
    ];
    let pdf_or_text = |bytes: &[u8]| {
        if bytes.starts_with(b"%PDF") {
            pdf_text(bytes)
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        }
    };
    for (path, rule) in &reads {
        for caller in CALLERS {
            let (status, to, body) = get(caller, path.clone()).await;
            let want = rule(caller);
            let text = pdf_or_text(&body);
            let shows_owner = text.contains(&numero)
                || text.contains(&numero.replace('/', "&#x2F;"))
                || text.contains(&owner.cf)
                || body == doc;
            match want {
                Own => {
                    assert_eq!(status, StatusCode::OK, "{caller:?} {path}");
                    assert!(shows_owner, "{caller:?} {path}: the owner's data is there");
                }
                Empty => {
                    assert_eq!(status, StatusCode::OK, "{caller:?} {path}");
                    assert!(!shows_owner, "{caller:?} {path}: leaked {text}");
                }
                Login => {
                    assert_eq!(status, StatusCode::SEE_OTHER, "{caller:?} {path}");
                    assert!(to.starts_with("/accedi"), "{caller:?} {path}: {to}");
                }
                Refused(code) => {
                    assert_eq!(status.as_u16(), code, "{caller:?} {path}");
                    assert!(!shows_owner, "{caller:?} {path}: leaked {text}");
                }
            }
        }
    }

    // The file's sections list what they hold.
    let documents = owner.text("/area-personale/documenti").await;
    assert!(
        documents.contains("relazione.pdf")
            && documents.contains("Accettato")
            && documents.contains(&format!("&#x2F;domande&#x2F;{pratica}&#x2F;ricevuta.pdf")),
        "{documents}"
    );
    let deadlines = owner.text("/area-personale/scadenze").await;
    assert!(
        deadlines.contains("Appuntamento con il segretariato sociale")
            && deadlines.contains("Termine per l&#x27;esito della pratica"),
        "{deadlines}"
    );

    // Changes: refused where not allowed, and then nothing changed.
    let messages = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pratica_messages WHERE application_id = $1",
        )
        .bind(&pratica)
        .fetch_one(db)
        .await
        .unwrap()
    };
    for caller in CALLERS {
        let before = messages().await;
        let path = format!("/domande/{pratica}/messaggi");
        let status = match client_of(caller) {
            Some(c) => c
                .post(&path, &[("testo", "Un messaggio all'ufficio.")])
                .await
                .status(),
            None => anonymous_client
                .post(format!("{}{path}", app.url))
                .form(&[("testo", "x")])
                .send()
                .await
                .unwrap()
                .status(),
        };
        let after = messages().await;
        match caller {
            Owner | DelegateForStatus => {
                assert_eq!(status, StatusCode::SEE_OTHER, "{caller:?}");
                assert_eq!(after, before + 1, "{caller:?}");
            }
            _ => {
                assert!(status.is_client_error(), "{caller:?}: {status}");
                assert_eq!(after, before, "{caller:?} wrote");
            }
        }
        if caller == DelegateForBookings {
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        if matches!(
            caller,
            OtherCitizen
                | DelegateExpired
                | DelegateRevoked
                | Operator
                | OperatorElsewhere
                | Auditor
        ) {
            assert_eq!(status, StatusCode::NOT_FOUND, "{caller:?}");
        }
    }
    // Cancelling the appointment needs "appuntamenti": refused to everyone else, then done by the
    // delegate who has it.
    let appointment_status = || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM appointments WHERE id = $1")
            .bind(&appointment)
            .fetch_one(db)
            .await
            .unwrap()
    };
    for caller in CALLERS {
        if matches!(caller, Owner | DelegateForBookings) {
            continue;
        }
        let path = format!("/appuntamenti/{appointment}/annulla");
        let status = match client_of(caller) {
            Some(c) => c.post(&path, &[]).await.status(),
            None => anonymous_client
                .post(format!("{}{path}", app.url))
                .send()
                .await
                .unwrap()
                .status(),
        };
        assert!(status.is_client_error(), "{caller:?}: {status}");
        if caller == DelegateForStatus {
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        assert_eq!(
            appointment_status().await,
            "prenotato",
            "{caller:?} cancelled"
        );
    }
    let cancelled = delegates[1]
        .0
        .post(&format!("/appuntamenti/{appointment}/annulla"), &[])
        .await;
    assert_eq!(
        location(&cancelled),
        format!("/appuntamenti/{appointment}?annullato=1")
    );
    assert_eq!(appointment_status().await, "annullato");

    // Withdrawing needs "domande": the delegate for the status (stato, integrazioni) may not.
    for caller in CALLERS {
        if caller == Owner {
            continue;
        }
        let path = format!("/domande/{pratica}/ritira");
        let status = match client_of(caller) {
            Some(c) => c.post(&path, &[]).await.status(),
            None => anonymous_client
                .post(format!("{}{path}", app.url))
                .send()
                .await
                .unwrap()
                .status(),
        };
        assert!(status.is_client_error(), "{caller:?}: {status}");
        let state: String = sqlx::query_scalar("SELECT status FROM applications WHERE id = $1")
            .bind(&pratica)
            .fetch_one(db)
            .await
            .unwrap();
        assert_eq!(state, "inviata", "{caller:?} withdrew");
    }
    // A staff note: the operator may; the auditor only reads; the other ente's operator finds nothing.
    let staff_page = operator.text(&format!("/ufficio/pratiche/{pratica}")).await;
    let version = hidden_field(&staff_page, "versione").expect("the version on the staff page");
    for caller in CALLERS {
        let path = format!("/ufficio/pratiche/{pratica}");
        let form = [
            ("azione", "nota"),
            ("nota", "Nota interna di prova"),
            ("versione", version.as_str()),
        ];
        let status = match client_of(caller) {
            Some(c) => c.post(&path, &form).await.status(),
            None => anonymous_client
                .post(format!("{}{path}", app.url))
                .form(&form)
                .send()
                .await
                .unwrap()
                .status(),
        };
        match caller {
            Operator => assert!(
                status.is_success() || status.is_redirection(),
                "{caller:?}: {status}"
            ),
            OperatorElsewhere => assert_eq!(status, StatusCode::NOT_FOUND),
            _ => assert!(status.is_client_error(), "{caller:?}: {status}"),
        }
    }
    let staff_page = operator.text(&format!("/ufficio/pratiche/{pratica}")).await;
    assert_eq!(
        staff_page.matches("Nota interna di prova").count(),
        1,
        "{staff_page}"
    );
    assert!(!owner
        .text(&format!("/domande/{pratica}"))
        .await
        .contains("Nota interna di prova"));

    // "Who consulted my file": the operator's read, and the delegate's, with their roles.
    let log = owner.text("/area-personale/accessi").await;
    assert!(log.contains("operatore (Comune di Valleverde)"), "{log}");
    assert!(log.contains("delegato"), "{log}");
    assert!(
        !log.contains("montebello") && !log.contains("Comune di Montebello"),
        "{log}"
    );
    // The auditor's log shows the operator's reads of this ente; another ente's auditor sees none.
    let register = auditor
        .text(&format!("/ufficio/registro-accessi?cf={}", owner.cf))
        .await;
    let escaped = numero.replace('/', "&#x2F;");
    assert!(
        register.contains(&format!("pratica:{escaped}"))
            && register.contains("operatore@valleverde"),
        "{register}"
    );
    let auditor_elsewhere = Citizen::staff(&app, 510, "montebello", Role::Revisore).await;
    let register = auditor_elsewhere
        .text(&format!("/ufficio/registro-accessi?cf={}", owner.cf))
        .await;
    assert!(
        !register.contains(&escaped) && register.contains("Nessun accesso registrato"),
        "{register}"
    );
    assert_eq!(
        other.get("/ufficio/registro-accessi").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        operator.get("/ufficio/registro-accessi").await.status(),
        StatusCode::FORBIDDEN
    );

    // The export: the same data as JSON and as a PDF a person reads.
    let json: serde_json::Value = serde_json::from_slice(
        &get(Owner, "/area-personale/esportazione.json".into())
            .await
            .2,
    )
    .unwrap();
    assert_eq!(json["persona"]["codice_fiscale"], owner.cf.as_str());
    assert_eq!(json["pratiche"][0]["numero"], numero.as_str());
    assert_eq!(
        json["deleghe_e_rappresentanze"].as_array().map(Vec::len),
        Some(4)
    );
    let pdf = pdf_text(
        &get(Owner, "/area-personale/esportazione.pdf".into())
            .await
            .2,
    );
    for expected in [
        "I tuoi dati personali",
        owner.cf.as_str(),
        numero.as_str(),
        "Deleghe e rappresentanze",
        "Accessi ai tuoi dati",
        "operatore (Comune di Valleverde)",
    ] {
        assert!(pdf.contains(expected), "{expected}: {pdf}");
    }
    app.stop().await;
}
