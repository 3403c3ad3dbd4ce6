//! Front-office triage through HTTP: the queue (only the enti served, by urgency, filters, paging,
//! audited reads), every action with its history row, audit row, outbox event and citizen message,
//! two operators on the same pratica, and the coordinator's summary.

use portal::applications::form::Answers;
use portal::applications::status::{self, Actor, Change, Status};
use portal::applications::store;
use portal::auth::Role;
use portal::clock::Clock;
use portal::domain::italian_time::rome_date;
use reqwest::StatusCode;

use crate::applications::{ready_draft, submission};
use crate::appointments::Citizen;
use crate::support::{hidden_field, location, spawn_app, TestApp};

/// Monday 23 November 2026, 10:00 in Italy.
const NOV_23_2026: i64 = 1_795_424_400_000;
const MARIO: &str = "RSSMRA80A01H501U";
const PAOLO: &str = "NREPLA75E15D969F";

/// A sent SAD application of `cf` to `ente`; returns (id, numero).
async fn sent(app: &TestApp, cf: &str, ente: &str) -> (String, String) {
    let id = ready_draft(app, cf).await;
    sqlx::query("UPDATE applications SET ente_code = $1 WHERE id = $2")
        .bind(ente)
        .bind(&id)
        .execute(&app.db().pool)
        .await
        .expect("ente");
    let answers = Answers::new();
    let outcome = store::submit(
        app.db(),
        app.clock.now_ms(),
        &id,
        &submission(cf, ente, &answers),
    )
    .await
    .expect("submitted");
    let Some(store::Submitted::New(numero)) = outcome else {
        panic!("a new submission");
    };
    (id, numero)
}

async fn person(app: &TestApp, cf: &str, given: &str, family: &str) {
    sqlx::query(
        "INSERT INTO people (cf, given_name, family_name, email, created_at, updated_at) VALUES ($1, $2, $3, NULL, 0, 0) \
         ON CONFLICT (cf) DO NOTHING",
    )
    .bind(cf)
    .bind(given)
    .bind(family)
    .execute(&app.db().pool)
    .await
    .expect("person");
}

async fn count(app: &TestApp, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&app.db().pool)
        .await
        .expect("count")
}

/// The version field of the pratica's page.
async fn version(c: &Citizen, id: &str) -> String {
    hidden_field(
        &c.text(&format!("/ufficio/pratiche/{id}")).await,
        "versione",
    )
    .expect("version")
}

#[tokio::test]
async fn the_queue_shows_only_the_enti_served_most_urgent_first() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    person(&app, MARIO, "Mario", "Rossi").await;
    person(&app, PAOLO, "Paolo", "Neri").await;
    let mut valleverde = Vec::new();
    for _ in 0..55 {
        valleverde.push(sent(&app, MARIO, "valleverde").await);
    }
    let (montebello_id, _) = sent(&app, MARIO, "montebello").await;
    // One overdue, one due in three days, one FNA B2, one concluded.
    for (i, sql) in [
        "UPDATE applications SET due_date = '2026-11-20' WHERE id = $1",
        "UPDATE applications SET due_date = '2026-11-26' WHERE id = $1",
        "UPDATE applications SET service_code = 'fna-b2' WHERE id = $1",
        "UPDATE applications SET status = 'accolta' WHERE id = $1",
    ]
    .iter()
    .enumerate()
    {
        sqlx::query(sql)
            .bind(&valleverde[10 + i].0)
            .execute(&app.db().pool)
            .await
            .expect("update");
    }
    let operator = Citizen::staff(&app, 1, "valleverde", Role::Operatore).await;
    let html = operator.text("/ufficio/pratiche").await;
    assert!(
        html.contains("54 pratiche"),
        "open ones: 55 minus the concluded"
    );
    let first = html.find("data-pratica=").expect("rows");
    assert!(
        html[first..].starts_with(&format!(
            "data-pratica=\"{}\"",
            valleverde[10].1.replace('/', "&#x2F;")
        )),
        "the overdue one first"
    );
    assert!(html.contains("Scaduta da 3 giorni") && html.contains(">3 giorni<"));
    assert!(html.contains("Nuova"));
    assert!(!html.contains(&montebello_id));
    assert!(html.contains("Pagina 1 di 2"));
    let second = operator.text("/ufficio/pratiche?pagina=2").await;
    assert_eq!(second.matches("data-pratica=").count(), 4);
    let fna = operator.text("/ufficio/pratiche?servizio=fna-b2").await;
    assert!(fna.contains("1 pratica"));
    let near = operator.text("/ufficio/pratiche?giorni_al_termine=5").await;
    assert!(near.contains("2 pratiche"), "overdue and near");
    let all = operator
        .text("/ufficio/pratiche?stato=tutte&giorni_da_invio=&giorni_al_termine=")
        .await;
    assert!(all.contains("55 pratiche"));
    let bad = operator
        .get("/ufficio/pratiche?giorni_al_termine=molti&stato=%27%3B--")
        .await;
    assert_eq!(
        bad.status(),
        StatusCode::OK,
        "odd filters are ignored, never an error"
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE actor_cf = $1 AND purpose = 'coda delle pratiche'",
    )
    .bind(&operator.cf)
    .fetch_one(&app.db().pool)
    .await
    .expect("audit");
    assert!(
        audited >= 50,
        "each person shown is an audited read: {audited}"
    );

    // Another ente's operator: nothing of Valleverde, not even by id; a citizen: no desk at all.
    let elsewhere = Citizen::staff(&app, 2, "montebello", Role::Operatore).await;
    let theirs = elsewhere.text("/ufficio/pratiche").await;
    assert!(theirs.contains("1 pratica") && theirs.contains(&montebello_id));
    let vv = &valleverde[0].0;
    assert_eq!(
        elsewhere
            .get(&format!("/ufficio/pratiche/{vv}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = elsewhere
        .post(
            &format!("/ufficio/pratiche/{vv}"),
            &[("azione", "nota"), ("nota", "x"), ("versione", "0")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM staff_log WHERE application_id = $1",
            vv
        )
        .await,
        0
    );
    assert_eq!(
        operator
            .get(&format!("/ufficio/pratiche/{montebello_id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let citizen = Citizen::new(&app, 3).await;
    assert_eq!(
        citizen.get("/ufficio/pratiche").await.status(),
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

#[tokio::test]
async fn each_action_leaves_its_history_audit_event_and_message() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    person(&app, MARIO, "Mario", "Rossi").await;
    person(&app, PAOLO, "Paolo", "Neri").await;
    let (id, _) = sent(&app, MARIO, "valleverde").await;
    let operator = Citizen::staff(&app, 1, "valleverde", Role::Operatore).await;
    person(&app, &operator.cf, "Sara", "Conti").await;
    sqlx::query(
        "INSERT INTO staff_roles (cf, ente_code, role) VALUES ($1, 'valleverde', 'operatore')",
    )
    .bind(&operator.cf)
    .execute(&app.db().pool)
    .await
    .expect("role");
    let path = format!("/ufficio/pratiche/{id}");
    let act = |fields: Vec<(&'static str, String)>| {
        let operator = operator.clone();
        let path = path.clone();
        async move {
            let v = version(&operator, path.trim_start_matches("/ufficio/pratiche/")).await;
            let mut form: Vec<(&str, &str)> = vec![("versione", v.as_str())];
            form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
            operator.post(&path, &form).await
        }
    };

    // Taken in charge by Paolo: status, history, staff log, two events, the audit row, the message.
    let r = act(vec![
        ("azione", "assegna".into()),
        ("operatore", PAOLO.into()),
    ])
    .await;
    assert_eq!(location(&r), format!("{path}?fatto=1"));
    let page = operator.text(&path).await;
    assert!(page.contains("Presa in carico") && page.contains("Assegnata a Paolo Neri"));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM application_history WHERE application_id = $1 AND to_status = 'presa_in_carico' AND actor_kind = 'operatore'", &id).await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type IN ('pratica.assegnata', 'pratica.stato')", &id).await, 2);
    assert!(count(&app, "SELECT COUNT(*) FROM audit_log WHERE subject_cf = 'RSSMRA80A01H501U' AND action = 'change' AND actor_cf = $1", &operator.cf).await >= 1);
    // Classified, then documents requested (a bad date is explained first).
    let r = act(vec![
        ("azione", "classifica".into()),
        ("area", "Anziani".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let bad = act(vec![
        ("azione", "richiedi".into()),
        ("messaggio", "Certificato".into()),
        ("scadenza", "domani".into()),
    ])
    .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad
        .text()
        .await
        .unwrap_or_default()
        .contains("Scrivi la scadenza per i documenti"));
    let r = act(vec![
        ("azione", "richiedi".into()),
        ("messaggio", "Il certificato medico aggiornato.".into()),
        ("scadenza", "10/12/2026".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The citizen answers: the queue marks it.
    let now = app.clock.now_ms();
    status::transition(
        app.db(),
        now,
        rome_date(now),
        &id,
        &Change {
            answer: Some("Allegato."),
            ..Change::to(Status::IntegrazioniRicevute, Actor::Cittadino, Some(MARIO))
        },
    )
    .await
    .expect("answered");
    assert!(operator
        .text("/ufficio/pratiche")
        .await
        .contains("Risposta del cittadino"));
    // An internal note: in the staff log, never on the citizen's page.
    let r = act(vec![
        ("azione", "nota".into()),
        ("nota", "Sentita la figlia al telefono.".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(operator
        .text(&path)
        .await
        .contains("Nota interna: Sentita la figlia al telefono."));
    let citizen_view: i64 = count(&app, "SELECT COUNT(*) FROM application_history WHERE application_id = $1 AND reason LIKE '%figlia%'", &id).await;
    assert_eq!(
        citizen_view, 0,
        "notes never reach the history the citizen reads"
    );
    // Forwarded to the CSI; then preavviso and the rejection, each with its reason.
    let r = act(vec![("azione", "inoltra".into())]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'pratica.inoltrata'", &id).await, 1);
    let no_reason = act(vec![("azione", "preavviso".into()), ("motivo", " ".into())]).await;
    assert_eq!(no_reason.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = act(vec![
        ("azione", "preavviso".into()),
        ("motivo", "ISEE oltre la soglia.".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = act(vec![
        ("azione", "esito".into()),
        ("esito", "respinta".into()),
        ("motivo", "ISEE oltre la soglia.".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let stored = store::get(app.db(), &id)
        .await
        .expect("get")
        .expect("pratica");
    assert_eq!(stored.status, Status::Respinta);
    assert_eq!(stored.need_area.as_deref(), Some("Anziani"));
    // Every change made by the office scheduled its alert for the citizen, in the same transaction;
    // the last one (the outcome) reaches the inbox. (An alert superseded by a later change before it
    // was delivered is not sent: the later one is.) The follow-up reminders ("scadenza_…") that a
    // delivered alert adds are not counted: whether the runner got to them yet is timing.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM jobs WHERE kind = 'alerts.deliver' AND payload LIKE '%' || $1 || '%' AND payload NOT LIKE '%ricevuta%' AND payload NOT LIKE '%\"kind\":\"scadenza_%'", &id).await,
        4,
        "presa in carico, documents, preavviso, respinta"
    );
    let mut outcome = 0;
    for _ in 0..200 {
        outcome = count(
            &app,
            "SELECT COUNT(*) FROM messages WHERE cf = $1 AND subject LIKE '%Respinta'",
            MARIO,
        )
        .await;
        if outcome == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(outcome, 1);
    app.stop().await;
}

#[tokio::test]
async fn two_operators_on_the_same_pratica_never_overwrite_each_other() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    person(&app, MARIO, "Mario", "Rossi").await;
    person(&app, PAOLO, "Paolo", "Neri").await;
    let (id, _) = sent(&app, MARIO, "valleverde").await;
    let first = Citizen::staff(&app, 1, "valleverde", Role::Operatore).await;
    let second = Citizen::staff(&app, 2, "valleverde", Role::Coordinatore).await;
    let path = format!("/ufficio/pratiche/{id}");
    let seen_first = version(&first, &id).await;
    let seen_second = version(&second, &id).await;
    assert_eq!(seen_first, seen_second);
    app.clock.advance_ms(1_000);
    let r = first
        .post(
            &path,
            &[
                ("versione", &seen_first),
                ("azione", "assegna"),
                ("operatore", PAOLO),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    app.clock.advance_ms(1_000);
    let late = second
        .post(
            &path,
            &[
                ("versione", &seen_second),
                ("azione", "classifica"),
                ("area", "Disabilità"),
            ],
        )
        .await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    let html = late.text().await.unwrap_or_default();
    assert!(html.contains("Nel frattempo la pratica è cambiata"));
    assert!(html.contains("Assegnata a Paolo Neri") && html.contains("Stato: Presa in carico"));
    let stored = store::get(app.db(), &id)
        .await
        .expect("get")
        .expect("pratica");
    assert_eq!(stored.need_area, None, "nothing applied");
    // With the page read again, the second operator's change goes through.
    let fresh = version(&second, &id).await;
    let r = second
        .post(
            &path,
            &[
                ("versione", &fresh),
                ("azione", "classifica"),
                ("area", "Disabilità"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The coordinator's summary; operators do not have it.
    let summary = second.text("/ufficio/riepilogo").await;
    assert!(
        summary.contains("data-testid=\"aperte-valleverde\">1<"),
        "{summary}"
    );
    assert!(summary.contains("Paolo Neri: 1"));
    assert_eq!(
        first.get("/ufficio/riepilogo").await.status(),
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

#[tokio::test]
async fn a_citizen_writes_about_a_pratica_and_the_office_answers() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    let citizen = Citizen::new(&app, 7).await;
    person(&app, &citizen.cf, "Carla", "Bruni").await;
    let (id, _) = sent(&app, &citizen.cf, "valleverde").await;
    let page = format!("/domande/{id}");

    let empty = citizen
        .post(&format!("{page}/messaggi"), &[("testo", "  ")])
        .await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert!(empty
        .text()
        .await
        .unwrap_or_default()
        .contains("Scrivi il messaggio."));
    let r = citizen
        .post(
            &format!("{page}/messaggi"),
            &[("testo", "Quando posso chiamarvi?")],
        )
        .await;
    assert_eq!(location(&r), format!("{page}?messaggio=1#messaggi"));
    let mine = citizen.text(&format!("{page}?messaggio=1")).await;
    assert!(mine.contains("Messaggio inviato") && mine.contains("Quando posso chiamarvi?"));
    let stranger = Citizen::new(&app, 8).await;
    let r = stranger
        .post(&format!("{page}/messaggi"), &[("testo", "Ciao")])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The desk puts it in evidence until it is answered.
    let operator = Citizen::staff(&app, 1, "valleverde", Role::Operatore).await;
    assert!(operator
        .text("/ufficio/pratiche")
        .await
        .contains("Messaggio del cittadino"));
    assert!(operator
        .text("/ufficio/pratiche?messaggi=si")
        .await
        .contains("1 pratica"));
    let v = version(&operator, &id).await;
    let r = operator
        .post(
            &format!("/ufficio/pratiche/{id}"),
            &[
                ("versione", &v),
                ("azione", "rispondi"),
                ("testo", "La chiamiamo domani mattina."),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(operator
        .text("/ufficio/pratiche?messaggi=si")
        .await
        .contains("0 pratiche"));
    let mine = citizen.text(&page).await;
    assert!(mine.contains("La chiamiamo domani mattina."));
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type IN ('pratica.messaggio', 'pratica.risposta')", &id).await,
        2
    );
    let mut told = 0;
    for _ in 0..200 {
        told = count(
            &app,
            "SELECT COUNT(*) FROM messages WHERE cf = $1 AND kind = 'risposta'",
            &citizen.cf,
        )
        .await;
        if told == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(told, 1, "the citizen is told the office wrote");
    app.stop().await;
}
