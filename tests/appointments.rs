//! Appointments end to end through HTTP: the six steps, holidays and the booking window, holds that
//! lapse, no overbooking with many citizens on the same places, the waiting list, the staff agenda
//! with the scheda di accesso, and who may see what.

use portal::appointments::calendar::Week;
use portal::appointments::store::{self, Calendar};
use portal::auth::{Membership, Person, Principal, Role};
use portal::domain::CodiceFiscale;
use portal::web::session::{self, SessionData};
use reqwest::StatusCode;

use portal::clock::Clock;

use crate::support::{location, new_client, spawn_app, TestApp};

/// Monday 23 November 2026, 10:00 in Italy.
const NOV_23_2026: i64 = 1_795_424_400_000;
const MINUTE: i64 = 60_000;

/// A citizen with a session made directly in the database (many citizens at once; the login
/// itself is tested elsewhere).
#[derive(Clone)]
pub(crate) struct Citizen {
    base: String,
    client: reqwest::Client,
    cookie: String,
    csrf: String,
    pub(crate) cf: String,
}

impl Citizen {
    pub(crate) async fn new(app: &TestApp, i: usize) -> Citizen {
        let cf = CodiceFiscale::synthetic(i).expect("a valid codice fiscale");
        let person = Person {
            cf: cf.clone(),
            given_name: "Maria".into(),
            family_name: format!("Prova{i}"),
            spid_level: 2,
        };
        let (token, s) = session::create_in(
            app.db(),
            app.clock.now_ms(),
            SessionData {
                principal: Some(Principal::Citizen { person }),
                ..SessionData::default()
            },
        )
        .await
        .expect("session");
        Citizen {
            base: app.url.clone(),
            client: new_client().0,
            cookie: format!("sportello_session={token}"),
            csrf: s.data.csrf,
            cf: cf.to_string(),
        }
    }

    /// A member of staff of `ente` with `role`, signed in the same way.
    pub(crate) async fn staff(app: &TestApp, i: usize, ente: &str, role: Role) -> Citizen {
        let mut c = Citizen::new(app, i).await;
        let person = Person {
            cf: CodiceFiscale::parse(&c.cf).expect("codice fiscale"),
            given_name: "Operatore".into(),
            family_name: format!("Prova{i}"),
            spid_level: 2,
        };
        let (token, s) = session::create_in(
            app.db(),
            app.clock.now_ms(),
            SessionData {
                principal: Some(Principal::Staff {
                    person,
                    memberships: vec![Membership {
                        ente: ente.into(),
                        role,
                    }],
                }),
                ..SessionData::default()
            },
        )
        .await
        .expect("session");
        c.cookie = format!("sportello_session={token}");
        c.csrf = s.data.csrf;
        c
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .expect("GET")
    }

    pub(crate) async fn text(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("body")
    }

    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }

    /// A POST with a body of its own (e.g. multipart); `json` asks for a JSON answer and sends the
    /// CSRF token in its header, as the upload script does.
    pub(crate) async fn raw_post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        json: bool,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .header("Content-Type", content_type)
            .body(body);
        if json {
            r = r
                .header("X-CSRF-Token", &self.csrf)
                .header("Accept", "application/json");
        }
        r.send().await.expect("POST")
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .form(form)
            .send()
            .await
            .expect("POST")
    }
}

/// A calendar at the demo office "vv-borgo" receiving every day from 9:00 to 10:00 in 30-minute
/// slots with `places` places, for the topic "vv-informazioni", changes allowed up to an hour before.
async fn every_day_calendar(app: &TestApp, id: &str, places: i64) -> Calendar {
    let calendar = Calendar {
        id: id.into(),
        office_id: "vv-borgo".into(),
        name: format!("Prova {id}"),
        week: Week(std::array::from_fn(|_| "09:00-10:00".to_string())),
        slot_minutes: 30,
        places,
        min_notice_minutes: 60,
        max_days: 30,
        cancel_minutes: 60,
        topics: vec!["vv-informazioni".into()],
        operators: vec![],
    };
    // The demo calendar of that office is taken out of the way.
    sqlx::query("DELETE FROM calendar_topics WHERE calendar_id = 'vv-borgo-sportello'")
        .execute(&app.db().pool)
        .await
        .expect("demo calendar off");
    store::save_calendar(app.db(), app.clock.now_ms(), &calendar)
        .await
        .expect("calendar");
    calendar
}

/// The values of the time radios on a "data e ora" page.
fn times(html: &str) -> Vec<String> {
    html.match_indices("name=\"orario\" id=\"orario-")
        .filter_map(|(i, _)| {
            let rest = &html[i..];
            let start = rest.find("value=\"")? + 7;
            let end = rest[start..].find('"')? + start;
            Some(rest[start..end].to_string())
        })
        .collect()
}

fn days(html: &str) -> Vec<String> {
    html.match_indices("data-day=\"")
        .map(|(i, _)| html[i + 10..i + 20].to_string())
        .collect()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db().pool)
        .await
        .expect("count")
}

/// Holds the first free time of `office` for the citizen; returns the appointment id.
pub(crate) async fn hold_first(c: &Citizen, office: &str) -> String {
    let html = c.text(&format!("/appuntamenti/prenota/{office}")).await;
    let slot = times(&html).into_iter().next().expect("a free time");
    let held = c
        .post(
            &format!("/appuntamenti/prenota/{office}"),
            &[("orario", &slot)],
        )
        .await;
    assert_eq!(held.status(), StatusCode::SEE_OTHER);
    location(&held)
        .trim_start_matches("/appuntamenti/")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Steps 3 to 6 for a held appointment.
pub(crate) async fn complete(c: &Citizen, id: &str, topic: &str) -> reqwest::Response {
    let r = c
        .post(
            &format!("/appuntamenti/{id}/dettagli"),
            &[("motivo", topic), ("descrizione", "Vorrei informazioni.")],
        )
        .await;
    assert_eq!(location(&r), format!("/appuntamenti/{id}/richiedente"));
    let r = c
        .post(
            &format!("/appuntamenti/{id}/richiedente"),
            &[("email", "maria@example.it"), ("telefono", "")],
        )
        .await;
    assert_eq!(location(&r), format!("/appuntamenti/{id}/riepilogo"));
    c.post(&format!("/appuntamenti/{id}/conferma"), &[]).await
}

#[tokio::test]
async fn a_citizen_books_in_six_steps_and_the_office_sees_it() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("giulia-bianchi").await;

    // From the service page, with the service's topic and offices preselected.
    let service = app.text("/servizi/sad").await;
    assert!(service.contains("/appuntamenti/prenota?servizio=sad"));
    let offices = app.text("/appuntamenti/prenota?servizio=sad").await;
    assert!(offices.contains("Segretariato sociale, Palazzo municipale"));
    assert!(offices.contains("Ingresso senza gradini"));
    assert!(offices.contains("aria-current=\"step\""));
    let bonus = app
        .text("/appuntamenti/prenota?servizio=bonus-famiglia")
        .await;
    assert!(
        !bonus.contains("Borgo Nuovo"),
        "Borgo Nuovo does not receive for the bonus"
    );

    // Step 2: only days with places, the first time from the minimum notice (an hour) on.
    let when = app
        .text("/appuntamenti/prenota/vv-municipio?servizio=sad")
        .await;
    assert_eq!(days(&when).first().map(String::as_str), Some("2026-11-23"));
    assert!(when.contains("lunedì 23 novembre 2026"));
    let slot = times(&when).into_iter().next().expect("a free time");
    assert!(when.contains("11:00"), "{when}");
    assert!(!when.contains(">10:30 <"));
    let token = app.csrf_token().await;
    let forged = app
        .post_form(
            "/appuntamenti/prenota/vv-municipio",
            &[
                ("csrf_token", &token),
                ("orario", "vv-municipio-as@1795424400000"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(forged
        .text()
        .await
        .unwrap_or_default()
        .contains("Scegli uno degli orari disponibili"));
    let held = app
        .post_form(
            "/appuntamenti/prenota/vv-municipio",
            &[
                ("csrf_token", &token),
                ("orario", &slot),
                ("servizio", "sad"),
            ],
        )
        .await;
    assert_eq!(held.status(), StatusCode::SEE_OTHER);
    let to = location(&held);
    assert!(to.ends_with("/dettagli?servizio=sad"), "{to}");
    let id = to
        .trim_start_matches("/appuntamenti/")
        .trim_end_matches("/dettagli?servizio=sad")
        .to_string();

    // Step 3: the service's topic is preselected; an empty reason is refused with a message.
    let details = app.text(&to).await;
    assert!(details.contains("value=\"vv-sad\" checked"));
    assert!(details.contains("È riservato per te fino al 23 novembre 2026, 10:10"));
    let empty = app
        .post_form(
            &format!("/appuntamenti/{id}/dettagli"),
            &[
                ("csrf_token", &token),
                ("motivo", "vv-sad"),
                ("descrizione", " "),
            ],
        )
        .await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty
        .text()
        .await
        .unwrap_or_default()
        .contains("Scrivi in breve di che cosa vuoi parlare"));
    let r = app
        .post_form(
            &format!("/appuntamenti/{id}/dettagli"),
            &[
                ("csrf_token", &token),
                ("motivo", "vv-sad"),
                ("descrizione", "Mia madre non riesce più a fare la spesa."),
            ],
        )
        .await;
    assert_eq!(location(&r), format!("/appuntamenti/{id}/richiedente"));

    // Step 4: prefilled from the identity; a wrong e-mail is explained.
    let applicant = app.text(&format!("/appuntamenti/{id}/richiedente")).await;
    assert!(applicant.contains("Giulia Bianchi") && applicant.contains("BNCGLI85D52F205W"));
    let bad = app
        .post_form(
            &format!("/appuntamenti/{id}/richiedente"),
            &[
                ("csrf_token", &token),
                ("email", "giulia"),
                ("telefono", "333 1234567"),
            ],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad
        .text()
        .await
        .unwrap_or_default()
        .contains("Scrivi un indirizzo e-mail valido"));
    let r = app
        .post_form(
            &format!("/appuntamenti/{id}/richiedente"),
            &[
                ("csrf_token", &token),
                ("email", "giulia@example.it"),
                ("telefono", "333 1234567"),
            ],
        )
        .await;
    assert_eq!(location(&r), format!("/appuntamenti/{id}/riepilogo"));

    // Step 5: the summary; step 6: booked once, however many clicks.
    let summary = app.text(&format!("/appuntamenti/{id}/riepilogo")).await;
    assert!(summary.contains("Mia madre non riesce più a fare la spesa."));
    assert!(summary.contains("Assistenza domiciliare (SAD)"));
    assert!(summary.contains("lunedì 23 novembre 2026, ore 11:00"));
    for expected in [
        format!("/appuntamenti/{id}?prenotato=1"),
        format!("/appuntamenti/{id}"),
    ] {
        let r = app
            .post_form(
                &format!("/appuntamenti/{id}/conferma"),
                &[("csrf_token", &token)],
            )
            .await;
        assert_eq!(location(&r), expected);
    }
    let done = app.text(&format!("/appuntamenti/{id}?prenotato=1")).await;
    assert!(done.contains("Appuntamento prenotato"));
    assert!(done.contains("Ti aspettiamo <strong>lunedì 23 novembre 2026 alle 11:00</strong>"));
    assert!(
        done.contains("Per cambiarlo ora contatta l"),
        "within 24 hours: no change online"
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM appointments WHERE status = 'prenotato'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'appuntamento.prenotato'"
        )
        .await,
        1
    );
    let ics = app
        .get(&format!("/appuntamenti/{id}/appuntamento.ics"))
        .await;
    assert_eq!(ics.status(), StatusCode::OK);
    assert!(ics
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/calendar")));
    let ics = ics.text().await.unwrap_or_default();
    assert!(
        ics.contains("BEGIN:VEVENT") && ics.contains("DTSTART:20261123T100000Z"),
        "{ics}"
    );
    assert!(ics.contains("DTEND:20261123T103000Z") && ics.contains("Piazza Garibaldi 1"));
    assert!(
        !ics.contains("spesa"),
        "the citizen's own words stay out of calendars"
    );
    let area = app.text("/area-personale/appuntamenti").await;
    assert!(area.contains("lunedì 23 novembre 2026, ore 11:00") && area.contains("Prenotato"));
    let export: serde_json::Value =
        serde_json::from_str(&app.text("/area-personale/esportazione.json").await).expect("JSON");
    assert_eq!(export["appuntamenti"][0]["ora"], "11:00");
    assert_eq!(
        export["appuntamenti"][0]["descrizione"],
        "Mia madre non riesce più a fare la spesa."
    );

    // Another citizen, and nobody anonymous, sees it.
    let other = Citizen::new(&app, 1).await;
    assert_eq!(
        other.get(&format!("/appuntamenti/{id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other
            .get(&format!("/appuntamenti/{id}/appuntamento.ics"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other
            .post(&format!("/appuntamenti/{id}/annulla"), &[])
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let (anonymous, _) = new_client();
    let r = anonymous
        .get(app.absolute(&format!("/appuntamenti/{id}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&r).starts_with("/accedi?next="),
        "{}",
        location(&r)
    );
    assert_eq!(
        other.get("/ufficio/agenda").await.status(),
        StatusCode::FORBIDDEN
    );

    // The operator of Valleverde sees the agenda (and the read is in the audit log), marks the
    // contact attended and records the scheda, which goes to the CSI.
    app.logout().await;
    app.login("paolo-neri").await;
    let agenda = app
        .text("/ufficio/agenda?sede=vv-municipio&giorno=2026-11-23")
        .await;
    assert!(agenda.contains("Giulia Bianchi") && agenda.contains("BNCGLI85D52F205W"));
    assert!(agenda.contains("11:00–11:30"));
    let week = app
        .text("/ufficio/agenda?sede=vv-municipio&giorno=2026-11-25&vista=settimana&operatore=NREPLA75E15D969F")
        .await;
    assert!(week.contains("Giulia Bianchi"));
    let someone_else = app
        .text("/ufficio/agenda?sede=vv-municipio&giorno=2026-11-23&operatore=GLLLRA82H60A944Y")
        .await;
    assert!(
        !someone_else.contains("Giulia Bianchi"),
        "not that operator's calendar"
    );
    assert!(
        count(&app, "SELECT COUNT(*) FROM audit_log WHERE subject_cf = 'BNCGLI85D52F205W' AND actor_cf = 'NREPLA75E15D969F' AND purpose = 'agenda'").await
            >= 1
    );
    let token = app.csrf_token().await;
    let scheda = format!("/ufficio/appuntamenti/{id}/scheda");
    let incomplete = app
        .post_form(
            &scheda,
            &[("csrf_token", &token), ("bisogno", "Aiuto a casa")],
        )
        .await;
    assert_eq!(incomplete.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(incomplete
        .text()
        .await
        .unwrap_or_default()
        .contains("Scegli l&#x27;area di bisogno"));
    let r = app
        .post_form(
            &scheda,
            &[
                ("csrf_token", &token),
                ("bisogno", "Aiuto a casa per la madre anziana"),
                ("area", "Anziani"),
                ("esito", "Presa in carico"),
                ("note", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(app.text(&scheda).await.contains("Scheda registrata"));
    let status: String = sqlx::query_scalar("SELECT status FROM appointments WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db().pool)
        .await
        .expect("status");
    assert_eq!(status, "presentato");
    let payload: String = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE event_type = 'appuntamento.scheda' AND aggregate_id = $1",
    )
    .bind(&id)
    .fetch_one(&app.db().pool)
    .await
    .expect("scheda event");
    let payload: serde_json::Value = serde_json::from_str(&payload).expect("JSON");
    assert_eq!(payload["scheda"]["area"], "Anziani");
    assert_eq!(payload["scheda"]["esito"], "Presa in carico");

    // An operator of another ente does not reach it.
    app.logout().await;
    app.login("laura-gallo").await;
    assert_eq!(app.get(&scheda).await.status(), StatusCode::NOT_FOUND);
    let agenda = app
        .text("/ufficio/agenda?sede=vv-municipio&giorno=2026-11-23")
        .await;
    assert!(!agenda.contains("Giulia Bianchi"));
    app.stop().await;
}

#[tokio::test]
async fn holidays_patron_day_and_closures_offer_no_slot() {
    let app = spawn_app().await;
    // Thursday 25 March 2027, 10:00 in Italy (summer time from the 28th).
    app.clock.set_ms(1_805_965_200_000);
    app.login("elena-ferri").await;
    let token = app.csrf_token().await;
    // The administrators' entry point for offices opens (it answered 500 before anything was sent).
    let offices = app.get("/amministrazione/sedi").await;
    assert_eq!(offices.status(), StatusCode::OK);
    assert!(offices.text().await.unwrap().contains("Sportello"));

    // The administrator configures an office open every day, with its patron day.
    let created = app
        .post_form(
            "/amministrazione/sedi",
            &[
                ("csrf_token", &token),
                ("ente", "valleverde"),
                ("nome", "Sportello della frazione Colle"),
                ("indirizzo", "Piazza della Chiesa 3, Colle"),
                ("comune", "Valleverde"),
                ("patrono", "23/04"),
                ("orari", "Tutti i giorni 9–10"),
                ("accessibilita", "Piano terra"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let office_page = location(&created);
    let office = office_page
        .trim_start_matches("/amministrazione/sedi/")
        .to_string();
    let bad_patron = app
        .post_form(
            &office_page,
            &[
                ("csrf_token", &token),
                ("nome", "Sportello della frazione Colle"),
                ("indirizzo", "Piazza della Chiesa 3, Colle"),
                ("comune", "Valleverde"),
                ("patrono", "San Giorgio"),
                ("orari", "Tutti i giorni 9–10"),
            ],
        )
        .await;
    assert_eq!(bad_patron.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_patron
        .text()
        .await
        .unwrap_or_default()
        .contains("scrivi per esempio 23&#x2F;04"));
    let r = app
        .post_form(
            "/amministrazione/motivi",
            &[
                ("csrf_token", &token),
                ("ente", "valleverde"),
                ("titolo", "Primo ascolto"),
                ("servizio", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let closure = app
        .post_form(
            &format!("{office_page}/chiusure"),
            &[
                ("csrf_token", &token),
                ("dal", "06/04/2027"),
                ("al", "07/04/2027"),
                ("motivo", "Disinfestazione"),
            ],
        )
        .await;
    assert_eq!(closure.status(), StatusCode::SEE_OTHER);

    let form = app
        .text(&format!("/amministrazione/calendari/nuovo?sede={office}"))
        .await;
    let marker = "action=\"/amministrazione/calendari/";
    let start = form.find(marker).expect("calendar form") + marker.len();
    let calendar = form[start..start + 32].to_string();
    let topic_marker = "name=\"motivo_";
    let topics: Vec<String> = form
        .match_indices(topic_marker)
        .map(|(i, _)| {
            let rest = &form[i + topic_marker.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_string()
        })
        .collect();
    let primo_ascolto: Option<String> =
        sqlx::query_scalar("SELECT id FROM topics WHERE title = 'Primo ascolto'")
            .fetch_optional(&app.db().pool)
            .await
            .expect("topic");
    let topic = primo_ascolto.expect("topic created");
    assert!(topics.contains(&topic));
    let topic_field = format!("motivo_{topic}");
    let mut fields: Vec<(String, String)> = vec![
        ("csrf_token".into(), token.clone()),
        ("sede".into(), office.clone()),
        ("nome".into(), "Primo ascolto".into()),
        ("durata".into(), "30".into()),
        ("posti".into(), "1".into()),
        ("preavviso".into(), "60".into()),
        ("giorni".into(), "40".into()),
        ("annullabile".into(), "24".into()),
        (topic_field, "si".into()),
        ("operatori".into(), "NREPLA75E15D969F".into()),
    ];
    for i in 0..7 {
        fields.push((
            format!("orari_{i}"),
            if i == 1 {
                "12:00-09:00".into()
            } else {
                "09:00-10:00".into()
            },
        ));
    }
    let as_refs = |f: &[(String, String)]| -> Vec<(String, String)> { f.to_vec() };
    let wrong = app
        .client
        .post(app.absolute(&format!("/amministrazione/calendari/{calendar}")))
        .form(&as_refs(&fields))
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong
        .text()
        .await
        .unwrap_or_default()
        .contains("Orari di martedì: nella fascia «12:00-09:00» l&#x27;inizio viene dopo la fine"));
    for f in fields.iter_mut() {
        if f.0 == "orari_1" {
            f.1 = "09:00-10:00".into();
        }
    }
    let saved = app
        .client
        .post(app.absolute(&format!("/amministrazione/calendari/{calendar}")))
        .form(&fields)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        saved.status(),
        StatusCode::SEE_OTHER,
        "{}",
        saved.text().await.unwrap_or_default()
    );

    // A citizen sees every day of the window but the holidays, the patron day and the closure.
    let citizen = Citizen::new(&app, 7).await;
    let html = citizen
        .text(&format!("/appuntamenti/prenota/{office}"))
        .await;
    let offered = days(&html);
    for open in [
        "2027-03-26",
        "2027-03-27",
        "2027-03-30",
        "2027-04-08",
        "2027-04-24",
        "2027-05-04",
    ] {
        assert!(
            offered.iter().any(|d| d == open),
            "{open} should be offered: {offered:?}"
        );
    }
    for shut in [
        ("2027-03-28", "Pasqua"),
        ("2027-03-29", "Lunedì dell'Angelo"),
        ("2027-04-06", "chiusura"),
        ("2027-04-07", "chiusura"),
        ("2027-04-23", "santo patrono"),
        ("2027-04-25", "Festa della Liberazione"),
        ("2027-05-01", "Festa del lavoro"),
        ("2027-05-05", "oltre i 40 giorni"),
    ] {
        assert!(
            !offered.iter().any(|d| d == shut.0),
            "{} ({}) is offered",
            shut.0,
            shut.1
        );
    }
    // Easter Monday cannot be booked by hand either: 29 March 2027, 9:00 summer time = 07:00 UTC.
    let forged = citizen
        .post(
            &format!("/appuntamenti/prenota/{office}"),
            &[("orario", &format!("{calendar}@1806303600000"))],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn two_hundred_citizens_on_ten_places_get_ten_bookings() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    every_day_calendar(&app, "dieci-posti", 10).await;
    let mut citizens = Vec::new();
    for i in 0..200 {
        citizens.push(Citizen::new(&app, 100 + i).await);
    }
    let html = citizens[0].text("/appuntamenti/prenota/vv-borgo").await;
    // Monday 23 November 2026, 10:00: the first time is Tuesday at 9:00.
    let slot = times(&html).into_iter().next().expect("a time");
    assert!(html.contains("(10 posti)"));
    let tasks: Vec<_> = citizens
        .iter()
        .cloned()
        .map(|c| {
            let slot = slot.clone();
            tokio::spawn(async move {
                let r = c
                    .post("/appuntamenti/prenota/vv-borgo", &[("orario", &slot)])
                    .await;
                let status = r.status();
                let to = location(&r);
                let body = r.text().await.unwrap_or_default();
                (c, status, to, body)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut full = 0;
    for t in tasks {
        let (c, status, to, body) = t.await.expect("task");
        match status {
            StatusCode::SEE_OTHER => held.push((c, to)),
            StatusCode::CONFLICT => {
                assert!(body.contains("Posto non più disponibile"));
                full += 1;
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(held.len(), 10);
    assert_eq!(full, 190);
    // Each of the ten completes and confirms twice at once: ten bookings, no more.
    let tasks: Vec<_> = held
        .into_iter()
        .map(|(c, to)| {
            tokio::spawn(async move {
                let id = to
                    .trim_start_matches("/appuntamenti/")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                complete(&c, &id, "vv-informazioni").await;
                let again = c.post(&format!("/appuntamenti/{id}/conferma"), &[]).await;
                assert_eq!(location(&again), format!("/appuntamenti/{id}"));
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM appointments WHERE status = 'prenotato'"
        )
        .await,
        10
    );
    assert_eq!(
        count(
            &app,
            "SELECT MAX(taken) FROM slots WHERE calendar_id = 'dieci-posti'"
        )
        .await,
        10
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'appuntamento.prenotato'"
        )
        .await,
        10
    );
    // The slot is no longer offered.
    let html = citizens[50].text("/appuntamenti/prenota/vv-borgo").await;
    assert!(!times(&html).contains(&slot));
    app.stop().await;
}

#[tokio::test]
async fn a_lapsed_hold_is_explained_and_a_cancelled_place_goes_to_the_waiting_list() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    // One place a day, on one day only: Tuesday 24 November.
    let mut calendar = every_day_calendar(&app, "un-posto", 1).await;
    calendar.week = Week(std::array::from_fn(|i| {
        if i == 1 {
            "09:00-09:30".to_string()
        } else {
            String::new()
        }
    }));
    calendar.max_days = 6;
    store::save_calendar(app.db(), app.clock.now_ms(), &calendar)
        .await
        .expect("calendar");
    let anna = Citizen::new(&app, 1).await;
    let bruno = Citizen::new(&app, 2).await;
    let carla = Citizen::new(&app, 3).await;

    // Anna holds the place and goes for a coffee.
    let first = hold_first(&anna, "vv-borgo").await;
    assert!(carla
        .text("/appuntamenti/prenota/vv-borgo")
        .await
        .contains("Nessun posto libero"));
    app.clock.advance_ms(11 * MINUTE);
    let lapsed = anna.get(&format!("/appuntamenti/{first}/dettagli")).await;
    assert_eq!(location(&lapsed), format!("/appuntamenti/{first}/scaduto"));
    let page = anna.get(&format!("/appuntamenti/{first}/scaduto")).await;
    assert_eq!(page.status(), StatusCode::GONE);
    let page = page.text().await.unwrap_or_default();
    assert!(page.contains("Il tempo per confermare è scaduto") && page.contains("10 minuti"));
    let late = anna
        .post(&format!("/appuntamenti/{first}/conferma"), &[])
        .await;
    assert_eq!(location(&late), format!("/appuntamenti/{first}/scaduto"));

    // Bruno takes the lapsed place and books it; Carla finds nothing and joins the waiting list.
    let second = hold_first(&bruno, "vv-borgo").await;
    assert_eq!(
        location(&complete(&bruno, &second, "vv-informazioni").await),
        format!("/appuntamenti/{second}?prenotato=1")
    );
    let none = carla.text("/appuntamenti/prenota/vv-borgo").await;
    assert!(none.contains("Nessun posto libero") && none.contains("lista d'attesa"));
    let joined = carla
        .post(
            "/appuntamenti/prenota/vv-borgo/lista-attesa",
            &[("motivo", "vv-informazioni")],
        )
        .await;
    assert_eq!(location(&joined), "/area-personale/appuntamenti?lista=1");
    assert!(carla
        .text("/area-personale/appuntamenti?lista=1")
        .await
        .contains("Sei in lista d'attesa"));

    // Bruno cancels: the place is offered to Carla, who confirms it.
    let cancelled = bruno
        .post(&format!("/appuntamenti/{second}/annulla"), &[])
        .await;
    assert_eq!(
        location(&cancelled),
        format!("/appuntamenti/{second}?annullato=1")
    );
    assert!(bruno
        .text(&format!("/appuntamenti/{second}?annullato=1"))
        .await
        .contains("Annullato"));
    let area = carla.text("/area-personale/appuntamenti").await;
    assert!(area.contains("Si è liberato un posto per te"), "{area}");
    assert!(area.contains("martedì 24 novembre 2026 alle 09:00"));
    let offer: String = sqlx::query_scalar(
        "SELECT id FROM appointments WHERE citizen_cf = $1 AND status = 'trattenuto'",
    )
    .bind(&carla.cf)
    .fetch_one(&app.db().pool)
    .await
    .expect("offer");
    let r = carla.get(&format!("/appuntamenti/{offer}")).await;
    assert_eq!(location(&r), format!("/appuntamenti/{offer}/richiedente"));
    let r = carla
        .post(
            &format!("/appuntamenti/{offer}/richiedente"),
            &[("email", "carla@example.it")],
        )
        .await;
    assert_eq!(location(&r), format!("/appuntamenti/{offer}/riepilogo"));
    let r = carla
        .post(&format!("/appuntamenti/{offer}/conferma"), &[])
        .await;
    assert_eq!(location(&r), format!("/appuntamenti/{offer}?prenotato=1"));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM waiting_list WHERE status = 'prenotato'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT MAX(taken) FROM slots WHERE calendar_id = 'un-posto'"
        )
        .await,
        1
    );

    // In the last hour before the appointment it can no longer be cancelled online.
    app.clock.set_ms(NOV_23_2026 + 23 * 60 * MINUTE);
    let carla = Citizen::new(&app, 3).await;
    let r = carla
        .post(&format!("/appuntamenti/{offer}/annulla"), &[])
        .await;
    assert_eq!(location(&r), format!("/appuntamenti/{offer}?modifica=no"));
    assert!(carla
        .text(&format!("/appuntamenti/{offer}?modifica=no"))
        .await
        .contains("Non è più possibile annullare o spostare online"));
    app.stop().await;
}

#[tokio::test]
async fn an_appointment_moves_to_a_free_time_in_one_step() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    every_day_calendar(&app, "sposta", 1).await;
    let citizen = Citizen::new(&app, 4).await;
    let id = hold_first(&citizen, "vv-borgo").await;
    complete(&citizen, &id, "vv-informazioni").await;
    let page = citizen
        .text(&format!("/appuntamenti/prenota/vv-borgo?sposta={id}"))
        .await;
    assert!(page.contains("Sposta l'appuntamento"));
    let later = times(&page).into_iter().next().expect("another time");
    let moved = citizen
        .post(
            "/appuntamenti/prenota/vv-borgo",
            &[("orario", &later), ("sposta", &id)],
        )
        .await;
    let to = location(&moved);
    assert!(to.ends_with("?spostato=1"), "{to}");
    assert!(citizen.text(&to).await.contains("Appuntamento spostato"));
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM appointments ORDER BY created_at, status")
            .fetch_all(&app.db().pool)
            .await
            .expect("statuses");
    assert_eq!(statuses.iter().filter(|s| *s == "prenotato").count(), 1);
    assert_eq!(statuses.iter().filter(|s| *s == "spostato").count(), 1);
    // The old time is free again, the new one full.
    assert_eq!(
        count(
            &app,
            "SELECT SUM(taken) FROM slots WHERE calendar_id = 'sposta'"
        )
        .await,
        1
    );
    assert_eq!(
        citizen
            .get(&format!("/appuntamenti/prenota/vv-borgo?sposta={id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a moved appointment cannot be moved again"
    );
    app.stop().await;
}

#[tokio::test]
async fn staff_mark_attendance_only_in_their_own_ente() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    every_day_calendar(&app, "presenze", 2).await;
    let citizen = Citizen::new(&app, 5).await;
    let id = hold_first(&citizen, "vv-borgo").await;
    complete(&citizen, &id, "vv-informazioni").await;
    let path = format!("/ufficio/appuntamenti/{id}/esito");

    assert_eq!(
        citizen.post(&path, &[("esito", "assente")]).await.status(),
        StatusCode::FORBIDDEN
    );
    let elsewhere = Citizen::staff(&app, 50, "montebello", Role::Operatore).await;
    assert_eq!(
        elsewhere
            .post(&path, &[("esito", "assente")])
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let auditor = Citizen::staff(&app, 51, "valleverde", Role::Revisore).await;
    assert!(auditor
        .text("/ufficio/agenda?sede=vv-borgo&giorno=2026-11-24")
        .await
        .contains(&citizen.cf));
    assert_eq!(
        auditor.post(&path, &[("esito", "assente")]).await.status(),
        StatusCode::FORBIDDEN,
        "auditors read, never change"
    );
    let operator = Citizen::staff(&app, 52, "valleverde", Role::Operatore).await;
    let r = operator.post(&path, &[("esito", "assente")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        "/ufficio/agenda?sede=vv-borgo&giorno=2026-11-24"
    );
    assert!(operator
        .text("/ufficio/agenda?sede=vv-borgo&giorno=2026-11-24")
        .await
        .contains("Non presentato"));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'appuntamento.assente'"
        )
        .await,
        1
    );
    assert!(citizen
        .text("/area-personale/appuntamenti")
        .await
        .contains("Non presentato"));
    app.stop().await;
}

#[tokio::test]
async fn an_unanswered_offer_passes_to_the_next_citizen_waiting() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    // One place, on Friday 27 November only.
    let mut calendar = every_day_calendar(&app, "offerte", 1).await;
    calendar.week = Week(std::array::from_fn(|i| {
        if i == 4 {
            "09:00-09:30".to_string()
        } else {
            String::new()
        }
    }));
    calendar.max_days = 6;
    store::save_calendar(app.db(), app.clock.now_ms(), &calendar)
        .await
        .expect("calendar");
    let first = Citizen::new(&app, 10).await;
    let second = Citizen::new(&app, 11).await;
    let third = Citizen::new(&app, 12).await;
    let id = hold_first(&first, "vv-borgo").await;
    complete(&first, &id, "vv-informazioni").await;
    for c in [&second, &third] {
        let r = c
            .post(
                "/appuntamenti/prenota/vv-borgo/lista-attesa",
                &[("motivo", "vv-informazioni")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    // A fourth joins and changes their mind: out of the list, no offer for them.
    let fourth = Citizen::new(&app, 13).await;
    fourth
        .post(
            "/appuntamenti/prenota/vv-borgo/lista-attesa",
            &[("motivo", "vv-informazioni")],
        )
        .await;
    let listed = fourth.text("/area-personale/appuntamenti").await;
    let marker = "action=\"/area-personale/lista-attesa/";
    let start = listed.find(marker).expect("listed") + marker.len();
    let entry = &listed[start..start + listed[start..].find('/').expect("id")];
    let left = fourth
        .post(&format!("/area-personale/lista-attesa/{entry}/esci"), &[])
        .await;
    assert_eq!(location(&left), "/area-personale/appuntamenti");
    assert!(!fourth
        .text("/area-personale/appuntamenti")
        .await
        .contains("Liste d"));
    let r = first
        .post(&format!("/appuntamenti/{id}/annulla"), &[])
        .await;
    assert_eq!(location(&r), format!("/appuntamenti/{id}?annullato=1"));
    assert!(second
        .text("/area-personale/appuntamenti")
        .await
        .contains("Si è liberato un posto per te"));
    assert!(!third
        .text("/area-personale/appuntamenti")
        .await
        .contains("Si è liberato un posto"));

    // The second citizen does not answer within the 24 hours: the job passes the place on.
    app.clock.advance_ms(25 * 60 * MINUTE);
    let handled = store::expire_holds(app.db(), app.clock.now_ms(), 24 * 60 * MINUTE)
        .await
        .expect("expiry");
    // (The expiry job of the running server may have got there first: either way, once.)
    assert!(handled <= 1);
    let second = Citizen::new(&app, 11).await;
    let third = Citizen::new(&app, 12).await;
    assert!(!second
        .text("/area-personale/appuntamenti")
        .await
        .contains("Si è liberato un posto"));
    assert!(third
        .text("/area-personale/appuntamenti")
        .await
        .contains("Si è liberato un posto per te"));
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM waiting_list ORDER BY created_at, id")
            .fetch_all(&app.db().pool)
            .await
            .expect("waiting list");
    assert!(statuses.contains(&"scaduto".to_string()) && statuses.contains(&"offerto".to_string()));
    assert_eq!(
        count(
            &app,
            "SELECT MAX(taken) FROM slots WHERE calendar_id = 'offerte'"
        )
        .await,
        1
    );
    app.stop().await;
}
