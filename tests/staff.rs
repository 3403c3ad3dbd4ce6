//! Staff administration: who may see it, what it changes, what it records; and SPID step-up when a
//! page needs a higher level than the session has.

use reqwest::StatusCode;

use crate::support::{hidden_field, location, spawn_app, spawn_app_with};

async fn audit_count(app: &crate::support::TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE purpose = 'gestione operatori'")
        .fetch_one(&app.db().pool)
        .await
        .unwrap()
}

async fn roles_of(app: &crate::support::TestApp, cf: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT ente_code, role FROM staff_roles WHERE cf = $1 ORDER BY ente_code, role")
        .bind(cf)
        .fetch_all(&app.db().pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn citizens_and_operators_never_reach_the_administration() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/amministrazione/operatori").await.status(),
        StatusCode::SEE_OTHER,
        "anonymous: to login"
    );
    app.login("mario-rossi").await;
    let citizen = app.get("/amministrazione/operatori").await;
    assert_eq!(citizen.status(), StatusCode::FORBIDDEN);
    assert!(citizen
        .text()
        .await
        .unwrap()
        .contains("Accesso non consentito"));
    let csrf = app.csrf_token().await;
    let forged = app
        .post_form(
            "/amministrazione/operatori",
            &[
                ("csrf_token", &csrf),
                ("cf", "RSSMRA80A01H501U"),
                ("ente", "valleverde"),
                ("role", "amministratore"),
            ],
        )
        .await;
    assert_eq!(
        forged.status(),
        StatusCode::FORBIDDEN,
        "a citizen cannot make himself staff"
    );
    assert!(roles_of(&app, "RSSMRA80A01H501U").await.is_empty());
    app.post_form("/esci", &[("csrf_token", &csrf)]).await;

    app.login("paolo-neri").await;
    assert_eq!(
        app.get("/amministrazione/operatori").await.status(),
        StatusCode::FORBIDDEN,
        "an operator is not an administrator"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_administrator_assigns_and_revokes_roles_in_her_enti_only_and_each_change_is_audited() {
    let app = spawn_app().await;
    let area = app.login("elena-ferri").await;
    assert!(area.contains("Gestione operatori"));
    let page = app.text("/amministrazione/operatori").await;
    assert!(
        page.contains("NREPLA75E15D969F"),
        "her ente's operators are listed"
    );
    assert!(!page.contains("GLLLRA82H60A944Y"), "another ente's are not");
    let csrf = hidden_field(&page, "csrf_token").unwrap();

    // A bad codice fiscale: an Italian message, and what was typed is kept.
    let bad = app
        .post_form(
            "/amministrazione/operatori",
            &[
                ("csrf_token", &csrf),
                ("cf", "RSSMRA80A01H501X"),
                ("ente", "valleverde"),
                ("role", "operatore"),
            ],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains("Il codice fiscale non è valido")
            && html.contains("value=\"RSSMRA80A01H501X\"")
    );

    let other_ente = app
        .post_form(
            "/amministrazione/operatori",
            &[
                ("csrf_token", &csrf),
                ("cf", "RSSMRA80A01H501U"),
                ("ente", "montebello"),
                ("role", "operatore"),
            ],
        )
        .await;
    assert_eq!(other_ente.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(roles_of(&app, "RSSMRA80A01H501U").await.is_empty());

    let added = app
        .post_form(
            "/amministrazione/operatori",
            &[
                ("csrf_token", &csrf),
                ("cf", "rssmra80a01h501u"),
                ("ente", "valleverde"),
                ("role", "coordinatore"),
            ],
        )
        .await;
    assert_eq!(
        location(&added),
        "/amministrazione/operatori?esito=aggiunto"
    );
    assert_eq!(
        roles_of(&app, "RSSMRA80A01H501U").await,
        vec![("valleverde".into(), "coordinatore".into())]
    );
    assert_eq!(audit_count(&app).await, 1);

    let own = app
        .post_form(
            "/amministrazione/operatori/revoca",
            &[
                ("csrf_token", &csrf),
                ("cf", "FRRLNE70R48L219D"),
                ("ente", "valleverde"),
                ("role", "amministratore"),
            ],
        )
        .await;
    assert_eq!(
        own.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "no locking oneself out"
    );

    let revoked = app
        .post_form(
            "/amministrazione/operatori/revoca",
            &[
                ("csrf_token", &csrf),
                ("cf", "RSSMRA80A01H501U"),
                ("ente", "valleverde"),
                ("role", "coordinatore"),
            ],
        )
        .await;
    assert_eq!(
        location(&revoked),
        "/amministrazione/operatori?esito=rimosso"
    );
    assert!(roles_of(&app, "RSSMRA80A01H501U").await.is_empty());
    assert_eq!(audit_count(&app).await, 2);

    // The person whose roles changed can see it was done.
    let subject: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor_cf, object FROM audit_log WHERE subject_cf = 'RSSMRA80A01H501U' ORDER BY id",
    )
    .fetch_all(&app.db().pool)
    .await
    .unwrap();
    assert_eq!(
        subject[0],
        (
            "FRRLNE70R48L219D".into(),
            "ruolo:valleverde:coordinatore:assegnato".into()
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn a_page_needing_a_higher_level_steps_up_at_the_same_provider_and_comes_back() {
    let app = spawn_app_with(|c| c.auth.staff_admin_level = 3).await;
    app.login("elena-ferri").await;
    let need = app.get("/amministrazione/operatori").await;
    assert_eq!(need.status(), StatusCode::SEE_OTHER);
    let step_up = location(&need);
    assert!(
        step_up.starts_with("/auth/login?provider=spid&level=3&next="),
        "{step_up}"
    );

    let to_idp = app.get(&step_up).await;
    let idp_url = location(&to_idp);
    let request = reqwest::Url::parse(&idp_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "acr_values")
        .map(|(_, v)| v.into_owned());
    assert_eq!(request.as_deref(), Some("https://www.spid.gov.it/SpidL3"));
    let back = app
        .get(&app.choose_at_provider(&idp_url, "elena-ferri", "").await.0)
        .await;
    assert_eq!(
        location(&back),
        "/amministrazione/operatori",
        "back to the page that asked"
    );
    let page = app.get("/amministrazione/operatori").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Gestione operatori"));

    // Level 2 is not enough even when the provider answers: the portal asked for 3.
    app.logout().await;
    app.login("elena-ferri").await;
    let again = app.get("/amministrazione/operatori").await;
    assert!(
        location(&again).contains("level=3"),
        "a level-2 session is sent to step up again"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_form_sent_at_too_low_a_level_survives_the_step_up() {
    let app = spawn_app_with(|c| c.auth.staff_admin_level = 3).await;
    app.login("elena-ferri").await;
    let csrf = app.csrf_token().await;
    let sent = app
        .post_form(
            "/amministrazione/operatori",
            &[
                ("csrf_token", &csrf),
                ("cf", "RSSMRA80A01H501U"),
                ("ente", "valleverde"),
                ("role", "revisore"),
            ],
        )
        .await;
    let step_up = location(&sent);
    assert!(
        step_up
            .starts_with("/auth/login?provider=spid&level=3&next=%2Famministrazione%2Foperatori"),
        "{step_up}"
    );
    assert!(
        roles_of(&app, "RSSMRA80A01H501U").await.is_empty(),
        "nothing done at too low a level"
    );

    let idp_url = location(&app.get(&step_up).await);
    let back = app
        .get(&app.choose_at_provider(&idp_url, "elena-ferri", "").await.0)
        .await;
    assert_eq!(location(&back), "/amministrazione/operatori");
    let page = app.text("/amministrazione/operatori").await;
    assert!(page.contains("Abbiamo conservato i dati"), "told");
    assert!(
        page.contains("value=\"RSSMRA80A01H501U\""),
        "the typed codice fiscale is back"
    );
    assert!(
        page.contains("<option value=\"revisore\" selected>"),
        "and the chosen role"
    );
    let again = app.text("/amministrazione/operatori").await;
    assert!(
        !again.contains("value=\"RSSMRA80A01H501U\""),
        "given back once"
    );
    app.stop().await;
}
