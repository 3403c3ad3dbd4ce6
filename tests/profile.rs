//! The SPID/CIE OpenID Connect profile: what the portal sends, and every refusal, each ending on a clear
//! Italian page with no session created. The development provider is made to misbehave from its page.

use reqwest::StatusCode;

use crate::support::{json_segment, location, spawn_app, TestApp};

async fn logged_in_sessions(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE data LIKE '%\"principal\":{%'")
        .fetch_one(&app.db().pool)
        .await
        .unwrap()
}

/// The callback is refused with the Italian page and nobody is logged in.
async fn assert_refused(app: &TestApp, callback: &str, case: &str) {
    let response = app.get(callback).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Accesso non riuscito") && page.contains("lang=\"it\""),
        "{case}: {page}"
    );
    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::SEE_OTHER,
        "{case}: not logged in"
    );
    assert_eq!(
        logged_in_sessions(app).await,
        0,
        "{case}: no session created"
    );
}

#[tokio::test]
async fn the_authorization_request_follows_the_profile() {
    let app = spawn_app().await;
    let start = app
        .get("/auth/login?provider=spid&next=/area-personale")
        .await;
    let url = reqwest::Url::parse(&location(&start)).unwrap();
    let params: std::collections::HashMap<String, String> =
        url.query_pairs().into_owned().collect();
    for plain in [
        "client_id",
        "response_type",
        "scope",
        "code_challenge",
        "request",
    ] {
        assert!(params.contains_key(plain), "{plain} as a plain parameter");
    }
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["prompt"], "consent login");
    let request = &params["request"];
    let header = json_segment(request, 0);
    assert_eq!(header["alg"], "RS256");
    assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));
    let claims = json_segment(request, 1);
    for name in [
        "client_id",
        "response_type",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "state",
        "prompt",
        "redirect_uri",
        "acr_values",
        "claims",
        "iss",
        "aud",
        "iat",
        "exp",
    ] {
        assert!(
            !claims[name].is_null(),
            "request object claim {name}: {claims}"
        );
    }
    for name in ["state", "nonce"] {
        let value = claims[name].as_str().unwrap();
        assert!(
            value.len() >= 32 && value.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}: {value}"
        );
    }
    assert_eq!(
        claims["state"].as_str(),
        params.get("state").map(String::as_str),
        "plain and signed agree"
    );
    assert_eq!(claims["acr_values"], "https://www.spid.gov.it/SpidL2");
    // SPID's scopes are openid (and offline_access): profile is for CIE only.
    assert_eq!(claims["scope"], "openid", "{claims}");
    assert_eq!(params["scope"], "openid");
    // NumericDate in whole seconds.
    for name in ["iat", "exp"] {
        assert!(
            claims[name].is_u64(),
            "{name} is an integer: {}",
            claims[name]
        );
    }
    // Only attributes of the SPID/CIE lists.
    let asked: Vec<&String> = claims["claims"]["userinfo"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert!(asked.iter().all(|k| !k.contains("domicile")), "{asked:?}");
    assert!(asked.iter().any(|k| *k == "address"), "{asked:?}");
    assert!(!claims["claims"]["userinfo"]["https://attributes.eid.gov.it/fiscal_number"].is_null());

    // The provider refuses an authorization request without its signed request object.
    let mut unsigned = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != "request")
        .collect();
    unsigned.query_pairs_mut().clear().extend_pairs(kept);
    assert_eq!(
        app.get(unsigned.as_str()).await.status(),
        StatusCode::BAD_REQUEST
    );
    app.stop().await;
}

#[tokio::test]
async fn every_misbehaviour_of_the_provider_is_refused() {
    let app = spawn_app().await;
    for fault in [
        "aud",
        "scaduto",
        "firma",
        "none",
        "senza-at-hash",
        "at-hash",
        "nonce",
        "iss",
        "sub",
        // Userinfo without iss/aud is taken (the reference provider sends none), but one addressed
        // to another client is not.
        "userinfo-aud",
        "in-chiaro",
        // RFC 9207: the provider advertises iss in responses, so one without it is refused.
        "senza-iss",
    ] {
        let callback = app.login_until_callback_with("mario-rossi", fault).await;
        assert_refused(&app, &callback.0, fault).await;
    }
    // And the same provider, behaving, still lets the person in.
    let area = app.login("mario-rossi").await;
    assert!(area.contains("RSSMRA80A01H501U"));
    app.stop().await;
}

#[tokio::test]
async fn a_used_state_cannot_be_replayed() {
    let app = spawn_app().await;
    let callback = app.login_until_callback("giulia-bianchi").await;
    assert_eq!(app.get(&callback.0).await.status(), StatusCode::SEE_OTHER);
    let again = app.get(&callback.0).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("Accesso non riuscito"));
    app.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_access_token_at_the_provider() {
    let app = spawn_app().await;
    app.login("anna-verdi").await;
    let data: String =
        sqlx::query_scalar("SELECT data FROM sessions WHERE data LIKE '%access_token%'")
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    let token = data["provider_token"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let userinfo = format!("{}/dev-idp/userinfo", app.url);
    let before = app
        .client
        .get(&userinfo)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), StatusCode::OK);
    assert_eq!(
        before.headers()["content-type"],
        "application/jwt",
        "userinfo travels encrypted"
    );
    let jwe = before.text().await.unwrap();
    assert_eq!(jwe.split('.').count(), 5, "a compact JWE");
    assert_eq!(json_segment(&jwe, 0)["alg"], "RSA-OAEP-256");

    let csrf = app.csrf_token().await;
    assert_eq!(
        app.post_form("/esci", &[("csrf_token", &csrf)])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let after = app
        .client
        .get(&userinfo)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "revoked");
    app.stop().await;
}

#[tokio::test]
async fn the_entity_configuration_is_published_signed_with_the_federation_key() {
    let app = crate::support::spawn_app_with(|c| {
        c.federation.authority_hints = vec!["https://registry.example.it".into()];
    })
    .await;
    let response = app.get("/.well-known/openid-federation").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/entity-statement+jwt"
    );
    let jwt = response.text().await.unwrap();
    let header = json_segment(&jwt, 0);
    assert_eq!(header["typ"], "entity-statement+jwt");
    let claims = json_segment(&jwt, 1);
    assert_eq!(claims["iss"], claims["sub"]);
    assert_eq!(claims["iss"].as_str().unwrap(), app.url);
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    assert_eq!(claims["authority_hints"][0], "https://registry.example.it");
    assert!(claims["trust_marks"].is_array());

    // Self-signed with the federation key it publishes, which is not one of the OpenID keys.
    let federation_key = &claims["jwks"]["keys"][0];
    assert_eq!(header["kid"], federation_key["kid"]);
    let jwk = josekit::jwk::Jwk::from_map(federation_key.as_object().unwrap().clone()).unwrap();
    let verifier = josekit::jws::RS256.verifier_from_jwk(&jwk).unwrap();
    josekit::jwt::decode_with_verifier(&jwt, &verifier).expect("signature verifies");
    let rp = &claims["metadata"]["openid_relying_party"];
    let rp_kids: Vec<&str> = rp["jwks"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(rp_kids.len(), 2);
    assert!(
        !rp_kids.contains(&federation_key["kid"].as_str().unwrap()),
        "federation key distinct"
    );

    assert_eq!(rp["client_id"], claims["iss"]);
    assert_eq!(
        rp["redirect_uris"][0].as_str().unwrap(),
        format!("{}/auth/callback", app.url)
    );
    assert_eq!(rp["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(rp["client_registration_types"][0], "automatic");
    assert_eq!(rp["userinfo_encrypted_response_alg"], "RSA-OAEP-256");
    assert_eq!(rp["userinfo_encrypted_response_enc"], "A256CBC-HS512");
    let entity = &claims["metadata"]["federation_entity"];
    assert_eq!(entity["organization_name"], "Comune di Valleverde");
    assert!(entity["contacts"][0].as_str().unwrap().contains('@'));
    // Required of a relying party by the SPID/CIE rules: a resolve endpoint and a logo.
    assert_eq!(
        entity["federation_resolve_endpoint"].as_str().unwrap(),
        format!("{}/resolve", app.url)
    );
    let logo = app.get(entity["logo_uri"].as_str().unwrap()).await;
    assert_eq!(logo.status(), StatusCode::OK);
    assert_eq!(logo.headers()["content-type"], "image/svg+xml");
    app.stop().await;
}

#[tokio::test]
async fn the_resolve_endpoint_answers_with_the_metadata_and_the_trust_chain() {
    let app = spawn_app().await;
    let ta = format!("{}/dev-ta", app.url);
    let idp = format!("{}/dev-idp", app.url);
    let url = reqwest::Url::parse_with_params(
        &format!("{}/resolve", app.url),
        &[
            ("sub", idp.as_str()),
            ("anchor", ta.as_str()),
            ("type", "openid_provider"),
        ],
    )
    .unwrap();
    let response = app.get(url.as_str()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/resolve-response+jwt"
    );
    let jwt = response.text().await.unwrap();
    assert_eq!(json_segment(&jwt, 0)["typ"], "resolve-response+jwt");
    let claims = json_segment(&jwt, 1);
    assert_eq!(claims["iss"].as_str().unwrap(), app.url);
    assert_eq!(claims["sub"].as_str().unwrap(), idp);
    assert!(claims["iat"].is_u64() && claims["exp"].is_i64());
    assert_eq!(
        claims["metadata"]["openid_provider"]["token_endpoint_auth_methods_supported"],
        serde_json::json!(["private_key_jwt"]),
        "the anchor's policy applied"
    );
    // The chain: the provider's configuration, the anchor's statement about it, the anchor's own.
    let chain: Vec<serde_json::Value> = claims["trust_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| json_segment(j.as_str().unwrap(), 1))
        .collect();
    assert_eq!(chain.len(), 3, "{chain:?}");
    assert_eq!(
        (chain[0]["iss"].as_str(), chain[0]["sub"].as_str()),
        (Some(idp.as_str()), Some(idp.as_str()))
    );
    assert_eq!(
        (chain[1]["iss"].as_str(), chain[1]["sub"].as_str()),
        (Some(ta.as_str()), Some(idp.as_str()))
    );
    assert_eq!(
        (chain[2]["iss"].as_str(), chain[2]["sub"].as_str()),
        (Some(ta.as_str()), Some(ta.as_str()))
    );

    // Asked wrongly, or for an anchor the portal does not trust: a JSON error, never a chain.
    assert_eq!(app.get("/resolve").await.status(), StatusCode::BAD_REQUEST);
    let elsewhere = reqwest::Url::parse_with_params(
        &format!("{}/resolve", app.url),
        &[
            ("sub", idp.as_str()),
            ("anchor", "https://altra-federazione.example.it"),
        ],
    )
    .unwrap();
    let refused = app.get(elsewhere.as_str()).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_subject");
    app.stop().await;
}

#[tokio::test]
async fn in_development_the_provider_and_the_portal_resolve_through_the_development_trust_anchor() {
    use portal::auth::federation::trust_chain::{resolve, HttpFetcher, TrustAnchor};
    let app = spawn_app().await;
    let ta = format!("{}/dev-ta", app.url);
    let ta_configuration = app
        .text(&format!("{ta}/.well-known/openid-federation"))
        .await;
    let anchors = vec![TrustAnchor {
        entity_id: ta.clone(),
        jwks: json_segment(&ta_configuration, 1)["jwks"].clone(),
    }];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let http = reqwest::Client::new();

    let provider = resolve(
        &HttpFetcher(&http),
        &format!("{}/dev-idp", app.url),
        &anchors,
        now,
    )
    .await
    .unwrap();
    let op = provider.metadata("openid_provider").unwrap();
    assert_eq!(
        op["token_endpoint_auth_methods_supported"],
        serde_json::json!(["private_key_jwt"]),
        "the anchor's policy applies"
    );
    assert!(
        op["jwks"]["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "OpenID keys inline"
    );

    let portal = resolve(&HttpFetcher(&http), &app.url, &anchors, now)
        .await
        .unwrap();
    let rp = portal.metadata("openid_relying_party").unwrap();
    assert_eq!(rp["client_id"].as_str().unwrap(), app.url);
    app.stop().await;
}

#[tokio::test]
async fn a_provider_whose_chain_does_not_reach_a_trust_anchor_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("anchor.json");
    std::fs::write(&jwks, r#"{"keys":[]}"#).unwrap();
    let app = crate::support::spawn_app_with(|c| {
        c.federation.trust_anchors = vec![portal::config::TrustAnchorConfig {
            entity_id: "https://ta.example.it".into(),
            jwks_file: jwks.clone(),
        }];
        c.auth.providers = vec![portal::config::ProviderConfig {
            id: "fuori".into(),
            kind: portal::config::ProviderKind::Spid,
            label: "Provider fuori federazione".into(),
            entity_id: Some("http://127.0.0.1:9/idp".into()),
            issuer: None,
            metadata_file: None,
        }];
    })
    .await;
    let login_page = app.text("/accedi").await;
    assert!(login_page.contains("Provider fuori federazione"));
    let response = app.get("/auth/login?provider=fuori").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Accesso non riuscito"));
    assert_eq!(logged_in_sessions(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn providers_outside_a_federation_by_discovery_or_static_registration() {
    let mut app = spawn_app().await;
    // A static registration: the provider's metadata with its keys, written once to a file.
    let issuer = format!("{}/dev-idp", app.url);
    let mut metadata: serde_json::Value = app
        .get("/dev-idp/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    metadata["jwks"] = app.get("/dev-idp/jwks").await.json().await.unwrap();
    let file = app.config.data_dir.join("provider.json");
    std::fs::write(&file, metadata.to_string()).unwrap();
    let provider =
        |id: &str, metadata_file: Option<std::path::PathBuf>| portal::config::ProviderConfig {
            id: id.into(),
            kind: portal::config::ProviderKind::Spid,
            label: format!("Provider {id}"),
            entity_id: None,
            issuer: Some(issuer.clone()),
            metadata_file,
        };
    let providers = vec![
        provider("statico", Some(file.clone())),
        provider("scoperta", None),
    ];
    app.restart_with(move |c| c.auth.providers = providers)
        .await;

    for id in ["statico", "scoperta"] {
        let start = app
            .get(&format!("/auth/login?provider={id}&next=/area-personale"))
            .await;
        assert_eq!(start.status(), StatusCode::SEE_OTHER, "{id}");
        let html = app.text(&location(&start)).await;
        let request_id = crate::support::hidden_field(&html, "request_id").unwrap();
        let csrf = crate::support::hidden_field(&html, "csrf_token").unwrap();
        let chosen = app
            .post_form(
                "/dev-idp/authorize",
                &[
                    ("csrf_token", &csrf),
                    ("request_id", &request_id),
                    ("persona", "mario-rossi"),
                    ("action", "accedi"),
                ],
            )
            .await;
        let back = app.get(&location(&chosen)).await;
        let status = back.status();
        let place = location(&back);
        assert_eq!(
            place,
            "/area-personale",
            "{id}: {status} {}",
            back.text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        );
        let area = app.text("/area-personale").await;
        assert!(area.contains("RSSMRA80A01H501U"), "{id}");
        let csrf = app.csrf_token().await;
        app.post_form("/esci", &[("csrf_token", &csrf)]).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn the_callback_also_accepts_form_post_from_the_provider() {
    let app = spawn_app().await;
    let callback = app.login_until_callback("anna-verdi").await;
    let url = reqwest::Url::parse(&callback.0).unwrap();
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let posted = app
        .client
        .post(format!("{}/auth/callback", app.url))
        .header("Origin", "https://idp.example.it")
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&posted), "/area-personale");
    assert!(app
        .text("/area-personale")
        .await
        .contains("VRDNNA78M41L219W"));
    app.stop().await;
}

#[tokio::test]
async fn a_provider_that_rolled_its_keys_over_still_logs_people_in() {
    let app = spawn_app().await;
    // A first login caches the provider's metadata and keys.
    assert!(app.login("mario-rossi").await.contains("RSSMRA80A01H501U"));
    app.logout().await;
    // The provider signs the next ID token with a key the cache does not have: the portal fetches
    // the keys again instead of refusing everyone until a restart.
    let callback = app
        .login_until_callback_with("giulia-bianchi", "chiave-nuova")
        .await;
    let back = app.get(&callback.0).await;
    assert_eq!(
        back.status(),
        StatusCode::SEE_OTHER,
        "logged in after the rollover"
    );
    assert!(app
        .text("/area-personale")
        .await
        .contains("BNCGLI85D52F205W"));
    app.stop().await;
}

#[tokio::test]
async fn a_callback_sent_twice_at_once_logs_the_person_in_once() {
    let app = spawn_app().await;
    let callback = app.login_until_callback("anna-verdi").await;
    // A double click: both requests carry the pre-login cookie.
    let (a, b) = tokio::join!(app.get(&callback.0), app.get(&callback.0));
    for r in [&a, &b] {
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "both answers log in");
        assert_eq!(location(r), "/area-personale");
        assert!(
            r.headers().get("set-cookie").is_some(),
            "each answer carries the new session"
        );
    }
    // One login at the provider (the code exchanged once); each answer its own session token, the
    // second a twin of the first's (so that no token is ever stored, not even for the hand-over).
    assert_eq!(logged_in_sessions(&app).await, 2);
    let data: String =
        sqlx::query_scalar("SELECT data FROM sessions WHERE data LIKE '%handed_over%'")
            .fetch_one(&app.db().pool)
            .await
            .unwrap();
    for token in [&a, &b].map(|r| {
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("sportello_session=")
            .to_string()
    }) {
        assert!(!data.contains(&token), "the hand-over keeps no token");
    }
    assert!(app
        .text("/area-personale")
        .await
        .contains("VRDNNA78M41L219W"));
    // Later the same callback is refused, as any replay.
    app.logout().await;
    assert_eq!(app.get(&callback.0).await.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn a_login_at_a_level_too_low_says_what_to_do() {
    let app = spawn_app().await;
    let callback = app.login_until_callback_with("mario-rossi", "acr").await;
    let page = app.get(&callback.0).await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Hai usato un accesso di livello 1") && html.contains("livello 2"),
        "{html}"
    );
    assert_eq!(logged_in_sessions(&app).await, 0);
    app.stop().await;
}
