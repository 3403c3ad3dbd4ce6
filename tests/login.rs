//! Login through the development identity provider, over real HTTP, as a browser would.

use reqwest::StatusCode;

use crate::support::{location, spawn_app};

#[tokio::test]
async fn home_to_area_personale_through_the_identity_provider_and_out_again() {
    let app = spawn_app().await;

    let home = app.get("/").await;
    assert_eq!(home.status(), StatusCode::OK);
    let html = home.text().await.unwrap();
    assert!(html.contains("Accedi all'area personale"));
    assert!(
        html.contains("Assistenza domiciliare (SAD)"),
        "services from forms/ are listed"
    );

    let login_page = app.text("/accedi").await;
    assert!(login_page.contains("Entra con SPID") && login_page.contains("Entra con CIE"));

    let area = app.login("anna-verdi").await;
    assert!(area.contains("Anna Verdi"), "the persona's name is shown");
    assert!(
        area.contains("VRDNNA78M41L219W"),
        "the persona's codice fiscale is shown"
    );
    for section in [
        "Pratiche",
        "Appuntamenti",
        "Documenti",
        "Messaggi",
        "Scadenze",
        "Deleghe",
        "Impostazioni",
    ] {
        assert!(area.contains(section), "section {section}");
    }
    let settings = app.text("/area-personale/impostazioni").await;
    assert!(
        settings.contains("anna.verdi@example.it"),
        "userinfo attributes are kept for prefilling"
    );

    let csrf = app.csrf_token().await;
    let out = app.post_form("/esci", &[("csrf_token", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = app.get("/area-personale").await;
    assert_eq!(
        after.status(),
        StatusCode::SEE_OTHER,
        "logged out: the area personale asks to log in"
    );
    assert!(location(&after).starts_with("/accedi?next="));
    app.stop().await;
}

#[tokio::test]
async fn the_session_id_changes_at_login() {
    let app = spawn_app().await;
    let callback = app.login_until_callback("mario-rossi").await;
    let before = app
        .session_cookie()
        .expect("a pre-login session holds the login in progress");
    let back = app.get(&callback.0).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let after = app.session_cookie().expect("a session after login");
    assert_ne!(before, after);

    // The pre-login session id is dead: replaying it does not give the area personale.
    let (other, jar) = crate::support::new_client();
    let url = reqwest::Url::parse(&app.url).unwrap();
    jar.add_cookie_str(&format!("sportello_session={before}; Path=/"), &url);
    let replay = other
        .get(format!("{}/area-personale", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}

#[tokio::test]
async fn a_forged_state_is_refused() {
    let app = spawn_app().await;
    let callback = app.login_until_callback("mario-rossi").await;
    let mut url = reqwest::Url::parse(&callback.0).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let forged = if k == "state" {
                "A".repeat(48)
            } else {
                v.into_owned()
            };
            (k.into_owned(), forged)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let forged = app.get(url.as_str()).await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    let page = forged.text().await.unwrap();
    assert!(
        page.contains("Accesso non riuscito"),
        "an Italian explanation"
    );
    let area = app.get("/area-personale").await;
    assert_eq!(area.status(), StatusCode::SEE_OTHER, "no login happened");

    // The genuine callback still cannot be used by another browser (no session bound to it).
    let (other, _) = crate::support::new_client();
    let stolen = other.get(&callback.0).send().await.unwrap();
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn cancelling_at_the_identity_provider_returns_to_the_login_page() {
    let app = spawn_app().await;
    let start = app
        .get("/auth/login?provider=cie&next=/area-personale")
        .await;
    let html = app.text(&location(&start)).await;
    let request_id = crate::support::hidden_field(&html, "request_id").unwrap();
    let csrf = crate::support::hidden_field(&html, "csrf_token").unwrap();
    let back = app
        .post_form(
            "/dev-idp/authorize",
            &[
                ("csrf_token", &csrf),
                ("request_id", &request_id),
                ("action", "annulla"),
            ],
        )
        .await;
    let page = app.get(&location(&back)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Hai annullato l'accesso"));
    app.stop().await;
}

#[tokio::test]
async fn an_idle_session_ends_after_thirty_minutes() {
    let app = spawn_app().await;
    app.login("giulia-bianchi").await;
    app.clock.advance_ms(29 * 60_000);
    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::OK,
        "activity within the idle time"
    );
    app.clock.advance_ms(29 * 60_000);
    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::OK,
        "activity renews the idle time"
    );
    app.clock.advance_ms(31 * 60_000);
    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::SEE_OTHER,
        "idle too long"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_timeout_even_when_active() {
    let app = spawn_app().await;
    app.login("giulia-bianchi").await;
    for _ in 0..16 {
        app.clock.advance_ms(29 * 60_000);
        assert_eq!(app.get("/area-personale").await.status(), StatusCode::OK);
    }
    // 17 × 29 minutes > 8 hours, though never idle for 30 minutes.
    app.clock.advance_ms(29 * 60_000);
    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

#[tokio::test]
async fn operators_log_in_with_their_roles() {
    let app = spawn_app().await;
    let area = app.login("paolo-neri").await;
    assert!(area.contains("Paolo Neri"));
    let roles: Vec<(String, String)> =
        sqlx::query_as("SELECT ente_code, role FROM staff_roles WHERE cf = $1")
            .bind("NREPLA75E15D969F")
            .fetch_all(&app.db().pool)
            .await
            .unwrap();
    assert_eq!(
        roles,
        vec![("valleverde".to_string(), "operatore".to_string())]
    );
    app.stop().await;
}

#[tokio::test]
async fn later_logins_update_contacts_the_citizen_has_not_changed() {
    let app = spawn_app().await;
    app.login("mario-rossi").await;
    let pool = &app.db().pool;
    // The provider's e-mail was stale; the phone was changed by the citizen in the portal.
    sqlx::query("UPDATE people SET email = 'vecchia@example.it', phone = '+390000000000', phone_set_by_citizen = 1, given_name = 'M.' WHERE cf = 'RSSMRA80A01H501U'")
        .execute(pool)
        .await
        .unwrap();
    app.logout().await;
    app.login("mario-rossi").await;
    let (given, email, phone): (String, String, String) =
        sqlx::query_as("SELECT given_name, email, phone FROM people WHERE cf = 'RSSMRA80A01H501U'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(given, "Mario", "names follow the identity provider");
    assert_eq!(
        email, "mario.rossi@example.it",
        "a contact the citizen did not change follows the provider"
    );
    assert_eq!(
        phone, "+390000000000",
        "a contact the citizen changed is kept"
    );
    let people: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM people")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(people, 1, "the codice fiscale is the identity: one person");
    app.stop().await;
}
