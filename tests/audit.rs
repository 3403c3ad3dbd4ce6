//! The access rules and the audit log.

use portal::auth::access::{self, Access, Action};
use portal::auth::{Membership, Person, Principal, Role};
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
