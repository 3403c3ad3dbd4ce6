//! The access rules and the audit log.

use portal::auth::access::{self, Access, Action};
use portal::auth::{Membership, Person, Principal, Role};
use portal::clock::Clock;
use portal::domain::CodiceFiscale;

use crate::support::spawn_app;

fn person(cf: &str, name: &str) -> Person {
    Person {
        cf: CodiceFiscale::parse(cf).unwrap(),
        given_name: name.into(),
        family_name: "Test".into(),
        spid_level: 2,
    }
}

fn staff(cf: &str, ente: &str, role: Role) -> Principal {
    Principal::Staff {
        person: person(cf, "Operatore"),
        memberships: vec![Membership {
            ente: ente.into(),
            role,
        }],
    }
}

async fn audit_rows(
    app: &crate::support::TestApp,
    subject: &str,
) -> Vec<(String, String, String, String)> {
    sqlx::query_as("SELECT actor_cf, actor_role, action, purpose FROM audit_log WHERE subject_cf = $1 ORDER BY id")
        .bind(subject)
        .fetch_all(&app.db().pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn reading_another_persons_data_is_allowed_only_within_ones_enti_and_is_audited() {
    let app = spawn_app().await;
    let db = app.db();
    let now = 1_800_000_000_000;
    let subject = CodiceFiscale::parse("VRDNNA78M41L219W").unwrap();
    let read = |ente| Access {
        subject: &subject,
        action: Action::Read,
        object: "pratica:VV-2026-1",
        purpose: "istruttoria",
        ente: Some(ente),
    };

    // The citizen herself: allowed, not audited.
    let herself = Principal::Citizen {
        person: person("VRDNNA78M41L219W", "Anna"),
    };
    access::authorize(db, now, &herself, &read("valleverde"), None)
        .await
        .unwrap();
    assert!(audit_rows(&app, "VRDNNA78M41L219W").await.is_empty());

    // Another citizen: refused.
    let other = Principal::Citizen {
        person: person("RSSMRA80A01H501U", "Mario"),
    };
    assert!(
        access::authorize(db, now, &other, &read("valleverde"), None)
            .await
            .is_err()
    );

    // An operator of another ente: refused, and nothing is written.
    let elsewhere = staff("GLLLRA82H60A944Y", "montebello", Role::Operatore);
    assert!(
        access::authorize(db, now, &elsewhere, &read("valleverde"), None)
            .await
            .is_err()
    );
    assert!(audit_rows(&app, "VRDNNA78M41L219W").await.is_empty());

    // An operator of the ente: allowed and audited with role and purpose.
    let operator = staff("NREPLA75E15D969F", "valleverde", Role::Operatore);
    access::authorize(db, now, &operator, &read("valleverde"), Some("req-1"))
        .await
        .unwrap();
    let rows = audit_rows(&app, "VRDNNA78M41L219W").await;
    assert_eq!(
        rows,
        vec![(
            "NREPLA75E15D969F".into(),
            "operatore@valleverde".into(),
            "read".into(),
            "istruttoria".into()
        )]
    );

    // An auditor reads but never changes.
    let auditor = staff("BNCGLI85D52F205W", "valleverde", Role::Revisore);
    access::authorize(db, now, &auditor, &read("valleverde"), None)
        .await
        .unwrap();
    let change = Access {
        action: Action::Change,
        ..read("valleverde")
    };
    assert!(access::authorize(db, now, &auditor, &change, None)
        .await
        .is_err());

    // Anonymous: refused.
    assert!(
        access::authorize(db, now, &Principal::Anonymous, &read("valleverde"), None)
            .await
            .is_err()
    );
    app.stop().await;
}

async fn operator_reads_anna(app: &crate::support::TestApp) {
    let subject = CodiceFiscale::parse("VRDNNA78M41L219W").unwrap();
    let operator = staff("NREPLA75E15D969F", "valleverde", Role::Operatore);
    let read = Access {
        subject: &subject,
        action: Action::Read,
        object: "area-personale",
        purpose: "colloquio di segretariato",
        ente: Some("valleverde"),
    };
    access::authorize(app.db(), app.clock.now_ms(), &operator, &read, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_citizen_sees_who_consulted_her_data_and_downloads_all_of_it() {
    let app = spawn_app().await;
    app.login("anna-verdi").await;
    let empty = app.text("/area-personale/accessi").await;
    assert!(empty.contains("Finora nessun operatore"));

    operator_reads_anna(&app).await;
    let page = app.text("/area-personale/accessi").await;
    assert!(page.contains("operatore (Comune di Valleverde)"), "{page}");
    assert!(page.contains("colloquio di segretariato") && page.contains("consultazione"));
    assert!(
        !page.contains("NREPLA75E15D969F"),
        "the operator's codice fiscale is not shown"
    );

    let export = app.get("/area-personale/esportazione.json").await;
    assert!(export.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let data: serde_json::Value = export.json().await.unwrap();
    assert_eq!(data["persona"]["codice_fiscale"], "VRDNNA78M41L219W");
    assert_eq!(data["persona"]["email"], "anna.verdi@example.it");
    assert_eq!(data["accessi_ai_tuoi_dati"].as_array().unwrap().len(), 1);

    // Another citizen sees none of it.
    app.logout().await;
    app.login("mario-rossi").await;
    assert!(app
        .text("/area-personale/accessi")
        .await
        .contains("Finora nessun operatore"));
    let his: serde_json::Value = app
        .get("/area-personale/esportazione.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(his["persona"]["codice_fiscale"], "RSSMRA80A01H501U");
    assert!(his["accessi_ai_tuoi_dati"].as_array().unwrap().is_empty());
    assert!(!his.to_string().contains("VRDNNA78M41L219W"));

    app.logout().await;
    assert_eq!(
        app.get("/area-personale/esportazione.json").await.status(),
        reqwest::StatusCode::SEE_OTHER,
        "anonymous: to login"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_ente_can_choose_to_show_the_operators_names() {
    let app = crate::support::spawn_app_with(|c| c.ente.show_operator_names = true).await;
    app.login("paolo-neri").await;
    app.logout().await;
    app.login("anna-verdi").await;
    operator_reads_anna(&app).await;
    let page = app.text("/area-personale/accessi").await;
    assert!(
        page.contains("Paolo Neri, operatore (Comune di Valleverde)"),
        "{page}"
    );
    app.stop().await;
}
