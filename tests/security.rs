//! CSRF, security headers, error pages.

use reqwest::StatusCode;

use crate::support::spawn_app;

#[tokio::test]
async fn a_state_changing_request_without_its_csrf_token_is_refused() {
    let app = spawn_app().await;
    app.login("mario-rossi").await;

    let no_token = app.post_form("/esci", &[]).await;
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    assert!(no_token.text().await.unwrap().contains("Sessione scaduta"));
    let wrong = app
        .post_form("/esci", &[("csrf_token", "not-the-token")])
        .await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    let token = app.csrf_token().await;
    let cross_site = app
        .client
        .post(format!("{}/esci", app.url))
        .header("Origin", "https://evil.example")
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        cross_site.status(),
        StatusCode::FORBIDDEN,
        "a foreign Origin is refused even with the token"
    );

    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::OK,
        "still logged in"
    );
    let header_token = app
        .client
        .post(format!("{}/esci", app.url))
        .header("X-CSRF-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header_token.status(),
        StatusCode::SEE_OTHER,
        "the token is also accepted as a header"
    );
    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

#[tokio::test]
async fn anonymous_posts_are_refused() {
    let app = spawn_app().await;
    let response = app.post_form("/esci", &[("csrf_token", "")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/accedi",
        "/area-personale",
        "/no-such-page",
        "/healthz",
        "/static/css/sportello.css",
    ] {
        let response = app.get(path).await;
        let h = response.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(
            h.get("x-content-type-options").unwrap(),
            "nosniff",
            "{path}"
        );
        assert!(h.get("referrer-policy").is_some(), "{path}");
        assert!(h.get("x-request-id").is_some(), "{path}");
    }
    // Assets under their plain name are kept briefly; the pages use the hashed names, kept a year
    // (site::static_assets_are_trimmed_compressed_and_cached_by_their_content).
    let css = app.get("/static/css/sportello.css").await;
    assert_eq!(css.status(), reqwest::StatusCode::OK);
    assert_eq!(
        css.headers().get("cache-control").unwrap(),
        "public, max-age=300"
    );
    let page = app.get("/").await;
    assert_eq!(page.headers().get("cache-control").unwrap(), "no-store");
    app.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_httponly_and_lax() {
    let app = spawn_app().await;
    let start = app.get("/auth/login?provider=spid").await;
    let cookie = start
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http in tests");
    app.stop().await;
}

#[tokio::test]
async fn https_public_urls_get_hsts() {
    let app = crate::support::spawn_app_with(|c| {
        c.public_url = Some("https://sportello.example.it".into())
    })
    .await;
    let home = app.get("/").await;
    assert!(home.headers().get("strict-transport-security").is_some());
    // The cookie attributes for https (Secure, __Host- prefix) are unit-tested in portal::web::session.
    app.stop().await;
}

#[tokio::test]
async fn error_pages_are_in_italian_and_reveal_nothing() {
    let app = spawn_app().await;
    let missing = app.get("/no-such-page").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let html = missing.text().await.unwrap();
    assert!(html.contains("Pagina non trovata") && html.contains("lang=\"it\""));
    let wrong_method = app
        .client
        .delete(format!("{}/", app.url))
        .send()
        .await
        .unwrap();
    assert!(wrong_method.status().is_client_error());

    // A server error: the database goes away under a page that needs it.
    app.login("mario-rossi").await;
    app.database.make_unreachable(app.db()).await;
    let broken = app.get("/area-personale").await;
    assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let html = broken.text().await.unwrap();
    assert!(
        html.contains("Servizio momentaneamente non disponibile"),
        "{html}"
    );
    for internal in ["sqlx", "SELECT", "pool", "panicked", "src/"] {
        assert!(!html.contains(internal), "the page leaks {internal}");
    }
    app.stop().await;
}
