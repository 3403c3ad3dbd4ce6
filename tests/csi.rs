//! The CSI hand-off over HTTP (the embedded default): client credentials, the feed of CloudEvents
//! limited to the client's enti with a cursor and acknowledgements, every event valid against its
//! published schema, and the CSI's own events applied at most once, bad ones kept with their reason.

use portal::applications::form::Answers;
use portal::applications::store;
use portal::clock::Clock;
use portal::config::CsiClient;
use portal::csi::events::{short_type, validate};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::applications::{ready_draft, submission};
use crate::appointments::Citizen;
use crate::support::{spawn_app_with, TestApp};

/// Monday 23 November 2026, 10:00 in Italy.
const NOV_23_2026: i64 = 1_795_424_400_000;

pub(crate) fn client(id: &str, secret: &str, ente: &str) -> CsiClient {
    CsiClient {
        id: id.into(),
        secret_sha256: Sha256::digest(secret.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        enti: vec![ente.into()],
    }
}

async fn app() -> TestApp {
    let app = spawn_app_with(|c| {
        c.csi.clients = vec![
            client("cartella-vv", "segreto-vv", "valleverde"),
            client("cartella-mb", "segreto-mb", "montebello"),
        ];
    })
    .await;
    app.clock.set_ms(NOV_23_2026);
    app
}

pub(crate) async fn token(app: &TestApp, id: &str, secret: &str) -> String {
    let r = app
        .client
        .post(app.absolute("/csi/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().expect("token").to_string()
}

async fn feed(app: &TestApp, token: &str, query: &str) -> Value {
    let r = app
        .client
        .get(app.absolute(&format!("/csi/eventi{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("feed");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("JSON")
}

async fn send(app: &TestApp, token: &str, event: &Value) -> (StatusCode, Value) {
    let r = app
        .client
        .post(app.absolute("/csi/eventi"))
        .bearer_auth(token)
        .json(event)
        .send()
        .await
        .expect("event");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) fn event(id: &str, kind: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "https://cartella.example/valleverde",
        "type": format!("it.sportello.{kind}.v1"),
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// A sent SAD application of `cf` to `ente`.
async fn sent(app: &TestApp, cf: &str, ente: &str) -> String {
    let id = ready_draft(app, cf).await;
    sqlx::query("UPDATE applications SET ente_code = $1 WHERE id = $2")
        .bind(ente)
        .bind(&id)
        .execute(&app.db().pool)
        .await
        .expect("ente");
    let answers = Answers::new();
    store::submit(
        app.db(),
        app.clock.now_ms(),
        &id,
        &submission(cf, ente, &answers),
    )
    .await
    .expect("submitted");
    id
}

#[tokio::test]
async fn the_csi_reads_its_enti_s_events_and_acknowledges_them() {
    let app = app().await;
    let wrong = app
        .client
        .post(app.absolute("/csi/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cartella-vv"),
            ("client_secret", "sbagliato"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let grant = app
        .client
        .post(app.absolute("/csi/token"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .expect("token");
    assert_eq!(grant.status(), StatusCode::BAD_REQUEST);
    let anonymous = app
        .client
        .get(app.absolute("/csi/eventi"))
        .send()
        .await
        .expect("feed");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let vv_pratica = sent(&app, "RSSMRA80A01H501U", "valleverde").await;
    let mb_pratica = sent(&app, "BNCGLI85D52F205W", "montebello").await;
    let vv = token(&app, "cartella-vv", "segreto-vv").await;
    let mb = token(&app, "cartella-mb", "segreto-mb").await;

    let page = feed(&app, &vv, "").await;
    let events = page["eventi"].as_array().expect("events");
    assert_eq!(events.len(), 1, "only Valleverde's: {page}");
    let e = &events[0];
    assert_eq!(e["type"], "it.sportello.pratica.inviata.v1");
    assert_eq!(e["subject"], vv_pratica.as_str());
    assert_eq!(e["data"]["ente"], "valleverde");
    for e in events {
        validate("cloudevent", e).expect("a CloudEvent");
        let kind = short_type(e["type"].as_str().unwrap_or_default()).expect("our type");
        validate(kind, &e["data"]).expect("the data match the published schema");
    }
    let theirs = feed(&app, &mb, "").await;
    assert_eq!(theirs["eventi"][0]["subject"], mb_pratica.as_str());
    assert_eq!(theirs["eventi"].as_array().map(Vec::len), Some(1));

    // Acknowledged: the next read starts after it; a change made in the portal follows.
    let cursor = page["cursore"].as_i64().expect("cursor");
    let ack = app
        .client
        .post(app.absolute("/csi/eventi/conferma"))
        .bearer_auth(&vv)
        .json(&json!({ "cursore": cursor }))
        .send()
        .await
        .expect("ack");
    assert_eq!(ack.status(), StatusCode::OK);
    assert_eq!(
        feed(&app, &vv, "").await["eventi"].as_array().map(Vec::len),
        Some(0)
    );
    let citizen = Citizen::new(&app, 9).await;
    let mine = sent(&app, &citizen.cf, "valleverde").await;
    let r = citizen
        .post(
            &format!("/domande/{mine}/messaggi"),
            &[("testo", "Posso portare i documenti a mano?")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let next = feed(&app, &vv, "").await;
    let types: Vec<&str> = next["eventi"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "it.sportello.pratica.inviata.v1",
            "it.sportello.pratica.messaggio.v1"
        ]
    );
    for e in next["eventi"].as_array().expect("events") {
        let kind = short_type(e["type"].as_str().unwrap_or_default()).expect("our type");
        validate(kind, &e["data"]).expect("valid");
    }
    assert_eq!(
        feed(&app, &vv, "?dopo=0").await["eventi"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // The interface is published for the CSI's developers.
    let doc = app.text("/csi/asyncapi.yaml").await;
    assert!(doc.contains("asyncapi: 3.0.0") && doc.contains("it.sportello.csi.esito.v1"));
    let schema: Value =
        serde_json::from_str(&app.text("/csi/schemi/pratica.inviata.json").await).expect("schema");
    assert_eq!(schema["type"], "object");

    // Tokens expire.
    app.clock.advance_ms(61 * 60_000);
    let late = app
        .client
        .get(app.absolute("/csi/eventi"))
        .bearer_auth(&vv)
        .send()
        .await
        .expect("feed");
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn the_csi_s_events_are_applied_once_and_bad_ones_kept_with_their_reason() {
    let app = app().await;
    let citizen = Citizen::new(&app, 5).await;
    let id = sent(&app, &citizen.cf, "valleverde").await;
    let vv = token(&app, "cartella-vv", "segreto-vv").await;
    let mb = token(&app, "cartella-mb", "segreto-mb").await;

    let protocol = event(
        "evt-1",
        "csi.protocollo",
        json!({ "pratica": id, "protocollo": "VV/2026/0042" }),
    );
    let (status, body) = send(&app, &vv, &protocol).await;
    assert_eq!(
        (status, body["esito"].as_str()),
        (StatusCode::OK, Some("applicato"))
    );
    let page = citizen.text(&format!("/domande/{id}")).await;
    assert!(
        page.contains("Protocollata") && page.contains("VV&#x2F;2026&#x2F;0042"),
        "the citizen sees it"
    );
    let (status, body) = send(&app, &vv, &protocol).await;
    assert_eq!(
        (status, body["esito"].as_str()),
        (StatusCode::OK, Some("duplicato"))
    );
    let applied: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM application_history WHERE application_id = $1 AND to_status = 'protocollata'",
    )
    .bind(&id)
    .fetch_one(&app.db().pool)
    .await
    .expect("history");
    assert_eq!(applied, 1, "at most once");

    // Refused, never half applied, kept with the reason.
    for (event_id, kind, data, expect) in [
        (
            "evt-2",
            "csi.protocollo",
            json!({ "pratica": id }),
            "protocollo",
        ),
        (
            "evt-3",
            "csi.esito",
            json!({ "pratica": id, "esito": "accolta" }),
            "non si passa",
        ),
        ("evt-4", "csi.sconosciuto", json!({ "pratica": id }), "tipo"),
    ] {
        let (status, body) = send(&app, &vv, &event(event_id, kind, data)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{event_id}");
        assert!(
            body["motivo"].as_str().unwrap_or_default().contains(expect),
            "{event_id}: {body}"
        );
    }
    let (status, body) = send(
        &app,
        &mb,
        &event(
            "evt-5",
            "csi.stato",
            json!({ "pratica": id, "stato": "presa_in_carico" }),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another ente's CSI: {body}"
    );
    let (status, _) = send(
        &app,
        &vv,
        &json!({ "id": "evt-6", "type": "it.sportello.csi.stato.v1" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "not a CloudEvent");
    let dead: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT event_id, reason FROM inbound_events WHERE outcome = 'rifiutato' ORDER BY event_id",
    )
    .fetch_all(&app.db().pool)
    .await
    .expect("dead letters");
    assert_eq!(dead.len(), 5, "{dead:?}");
    assert!(dead.iter().all(|(_, reason)| reason.is_some()));
    let stored = store::get(app.db(), &id)
        .await
        .expect("get")
        .expect("pratica");
    assert_eq!(
        stored.status,
        portal::applications::status::Status::Protocollata
    );

    // Taken in charge, documents requested, a message: the citizen sees each on the page.
    for (event_id, kind, data) in [
        (
            "evt-7",
            "csi.stato",
            json!({ "pratica": id, "stato": "presa_in_carico" }),
        ),
        (
            "evt-8",
            "csi.integrazioni",
            json!({ "pratica": id, "messaggio": "Serve la certificazione ISEE.", "scadenza": "2026-12-15" }),
        ),
        (
            "evt-9",
            "csi.messaggio",
            json!({ "pratica": id, "testo": "Abbiamo ricevuto la sua domanda." }),
        ),
    ] {
        let (status, body) = send(&app, &vv, &event(event_id, kind, data)).await;
        assert_eq!(status, StatusCode::OK, "{event_id}: {body}");
    }
    let page = citizen.text(&format!("/domande/{id}")).await;
    assert!(
        page.contains("Serve la certificazione ISEE.")
            && page.contains("Abbiamo ricevuto la sua domanda.")
    );
    // The CSI's own changes are not echoed back to it.
    let echoed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'pratica.stato'",
    )
    .bind(&id)
    .fetch_one(&app.db().pool)
    .await
    .expect("outbox");
    assert_eq!(echoed, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_reference_client_takes_new_pratiche_in_charge_once() {
    let app = app().await;
    let citizen = Citizen::new(&app, 6).await;
    let id = sent(&app, &citizen.cf, "valleverde").await;
    let lines = portal::csi::demo::run_once(&app.url, "cartella-vv", "segreto-vv")
        .await
        .expect("a pass");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("it.sportello.pratica.inviata.v1") && l.contains(&id)),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("presa in carico: applicato")),
        "{lines:?}"
    );
    assert!(citizen
        .text(&format!("/domande/{id}"))
        .await
        .contains("Presa in carico"));
    // A second pass finds nothing new: everything was acknowledged.
    let again = portal::csi::demo::run_once(&app.url, "cartella-vv", "segreto-vv")
        .await
        .expect("a pass");
    assert!(again.is_empty(), "{again:?}");
    app.stop().await;
}

/// On PostgreSQL an outbox id is taken before its transaction commits, so a later event can become
/// visible first; the feed must not move its cursor past the one still open (it would never be
/// read): it waits for the writers. SQLite has one writer at a time, so its ids are in commit
/// order already.
#[tokio::test]
async fn the_feed_never_skips_an_event_committed_late() {
    if crate::support::backend() != portal::config::Backend::Postgres {
        return;
    }
    let app = app().await;
    let vv = token(&app, "cartella-vv", "segreto-vv").await;
    let mut open = app.db().pool.begin().await.expect("transaction");
    portal::csi::outbox(
        &mut open,
        app.clock.now_ms(),
        "pratica",
        "pratica.messaggio",
        "tardiva",
        &json!({ "ente": "valleverde" }),
    )
    .await
    .expect("outbox");
    let later = sent(&app, "RSSMRA80A01H501U", "valleverde").await;
    // The read waits for the open transaction rather than pass over its event.
    let reading = {
        let (client, url, vv) = (app.client.clone(), app.absolute("/csi/eventi"), vv.clone());
        tokio::spawn(async move {
            let r = client.get(url).bearer_auth(vv).send().await.expect("feed");
            r.json::<Value>().await.expect("JSON")
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!reading.is_finished(), "the feed waits for the writer");
    open.commit().await.expect("commit");
    let page = reading.await.expect("the feed answers");
    let subjects: Vec<&str> = page["eventi"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["subject"].as_str())
        .collect();
    assert_eq!(subjects, ["tardiva", later.as_str()]);
    app.stop().await;
}

#[tokio::test]
async fn the_http_interface_answers_as_documented_to_a_fuzzer() {
    let app = app().await;
    // Something to find: a sent pratica with a document, and its events in the feed.
    let citizen = crate::appointments::Citizen::new(&app, 71).await;
    let id = crate::applications::ready_draft(&app, &citizen.cf).await;
    let (status, _) = crate::documents::upload(
        &citizen,
        &id,
        "relazione.pdf",
        &crate::documents::pdf_with("Relazione", |_, _| {}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    portal::applications::store::submit(
        app.db(),
        app.clock.now_ms(),
        &id,
        &crate::applications::submission(
            &citizen.cf,
            "valleverde",
            &portal::applications::form::Answers::new(),
        ),
    )
    .await
    .expect("submitted");
    let before: String = sqlx::query_scalar("SELECT status FROM applications WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    let token = token(&app, "cartella-vv", "segreto-vv").await;
    let fuzzer = crate::support::root().join("target/test-tools/schemathesis/bin/schemathesis");
    let out = tokio::process::Command::new(&fuzzer)
        .arg("run")
        .arg(app.absolute("/csi/openapi.yaml"))
        .args(["--url", &app.url])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // A fixed seed keeps the suite deterministic; FUZZ_SEED tries another by hand.
        .args(["--max-examples", "60", "--workers", "2"])
        .args([
            "--seed",
            &std::env::var("FUZZ_SEED").unwrap_or_else(|_| "19".into()),
        ])
        .env("NO_COLOR", "1")
        // Its cache of crashes stays out of the repository.
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("schemathesis (installed by .ci/setup --tests)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(report.contains("passed"), "{report}");
    // Nothing the fuzzer sent was applied; the pratica is as it was.
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM inbound_events WHERE outcome = 'applicato'")
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(applied, 0);
    let after: String = sqlx::query_scalar("SELECT status FROM applications WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db().pool)
        .await
        .unwrap();
    assert_eq!(before, after);
    // The description is served beside the AsyncAPI one.
    let spec = app.text("/csi/openapi.yaml").await;
    assert!(spec.starts_with("openapi: 3.1.0"));
    app.stop().await;
}
