//! Health, readiness, metrics.

use reqwest::StatusCode;

use crate::support::spawn_app;

#[tokio::test]
async fn readyz_follows_the_database() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);

    app.database.make_unreachable(app.db()).await;
    let unready = app.get("/readyz").await;
    assert_eq!(unready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = unready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::OK,
        "alive, though not ready"
    );
    app.stop().await;
}

#[tokio::test]
async fn readyz_fails_while_migrations_are_pending() {
    let app = spawn_app().await;
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&app.db().pool)
        .await
        .unwrap();
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_never_by_raw_path() {
    let app = spawn_app().await;
    app.login("mario-rossi").await;
    app.get("/area-personale/pratiche").await;
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("sportello_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/area-personale/{section}\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("sportello_logins_total{kind=\"oidc\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("RSSMRA80A01H501U"));
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let app = crate::support::spawn_app_with(|c| {
        c.metrics.bearer_token = Some("s3cret-token".to_string().into())
    })
    .await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::UNAUTHORIZED);
    let ok = app
        .client
        .get(format!("{}/metrics", app.url))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn every_area_personale_section_has_a_page() {
    let app = spawn_app().await;
    app.login("giulia-bianchi").await;
    for section in portal::citizen::SECTIONS {
        let page = app.get(&format!("/area-personale/{}", section.slug)).await;
        assert_eq!(page.status(), StatusCode::OK, "{}", section.slug);
        assert!(page.text().await.unwrap().contains(section.title));
    }
    assert_eq!(
        app.get("/area-personale/nonexistent").await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}
