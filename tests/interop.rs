//! The relying party against independent implementations of SPID/CIE OpenID Connect: the
//! federation's reference implementation (`spid-cie-oidc`, Django, from PyPI) and panva's certified
//! `oidc-provider` (npm) set up with the SPID profile. Both are installed by `.ci/setup --tests`;
//! a peer that cannot start fails its test (never a skip).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{free_port, hidden_field, json_segment, location, spawn_app_with, TestApp};

fn tool(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Waits until `url` answers (any status), or panics with what the peer printed.
async fn wait_for(url: &str, child: &mut Child, log: &Path, what: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(url).send().await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what} did not answer at {url}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A trust anchor and a SPID OpenID provider of the reference implementation, in one Django
/// process (as its own federation example has them), on a port of their own.
struct ReferenceFederation {
    base: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl ReferenceFederation {
    fn python() -> PathBuf {
        tool("target/test-tools/spid-cie-oidc/bin/python")
    }

    fn project() -> PathBuf {
        tool("tests/interop/spid_cie_oidc")
    }

    /// Runs `federation.py` off the test's runtime (it may call the portal this runtime serves).
    async fn command(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(Self::python());
        cmd.arg(Self::project().join("federation.py"))
            .args(args)
            .env("SPID_BASE", &self.base)
            .env("SPID_DB", self.dir.path().join("federation.sqlite3"));
        let output = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .expect("the reference implementation (installed by .ci/setup --tests)");
        assert!(
            output.status.success(),
            "federation.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    /// Sets up the federation and starts its server; returns it with the trust anchor's keys.
    async fn start() -> (ReferenceFederation, serde_json::Value) {
        let dir = tempfile::tempdir().expect("folder");
        let base = format!("http://127.0.0.1:{}", free_port());
        let placeholder = Command::new("true").spawn().expect("true");
        let mut federation = ReferenceFederation {
            base,
            dir,
            child: placeholder,
        };
        let keys: serde_json::Value =
            serde_json::from_str(federation.command(&["setup"]).await.trim()).expect("keys");
        let log = federation.dir.path().join("server.log");
        let address = federation.base.trim_start_matches("http://").to_string();
        federation.child = Command::new(Self::python())
            .args(["-m", "django", "runserver", "--noreload", &address])
            .args(["--settings", "settings", "--pythonpath"])
            .arg(Self::project())
            .env("SPID_BASE", &federation.base)
            .env("SPID_DB", federation.dir.path().join("federation.sqlite3"))
            .env("SPID_LOG", "INFO")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("the reference implementation's server");
        let url = format!("{}/.well-known/openid-federation", federation.base);
        wait_for(
            &url,
            &mut federation.child,
            &log,
            "the reference implementation",
        )
        .await;
        (federation, keys)
    }

    fn provider(&self) -> String {
        format!("{}/oidc/op", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for ReferenceFederation {
    fn drop(&mut self) {
        // A failed test shows what the peer said.
        if std::thread::panicking() {
            eprintln!("the reference implementation's log:\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference provider's own pages, as a citizen goes through them: its login form (username
/// and password of the citizen it knows), then its consent page. Returns where it sends the
/// browser back to.
async fn through_reference_provider(app: &TestApp, authorization_url: &str) -> String {
    let page = app.get(authorization_url).await;
    assert_eq!(page.status(), StatusCode::OK, "{authorization_url}");
    let html = page.text().await.unwrap();
    let csrf = hidden_field(&html, "csrfmiddlewaretoken").expect("Django CSRF token");
    let request = hidden_field(&html, "authz_request_object")
        .unwrap_or_else(|| panic!("the provider's login form (the request was refused?): {html}"));
    let origin = &authorization_url[..authorization_url.find("/oidc/op").unwrap()];
    let login = app
        .client
        .post(format!("{origin}/oidc/op/authorization"))
        .form(&[
            ("csrfmiddlewaretoken", csrf.as_str()),
            ("authz_request_object", &request),
            ("username", "mario.rossi"),
            ("password", "Pr0va-Interop-2026"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::FOUND, "login at the provider");
    let consent_url = format!("{origin}{}", location(&login));
    let consent = app.get(&consent_url).await;
    assert_eq!(consent.status(), StatusCode::OK, "consent page");
    let html = consent.text().await.unwrap();
    assert!(html.contains("Mario") || html.contains("fiscal"), "{html}");
    let csrf = hidden_field(&html, "csrfmiddlewaretoken").expect("CSRF token");
    let agreed = app
        .client
        .post(&consent_url)
        .form(&[("csrfmiddlewaretoken", csrf.as_str()), ("agree", "True")])
        .send()
        .await
        .unwrap();
    assert_eq!(agreed.status(), StatusCode::FOUND, "consent given");
    location(&agreed)
}

#[tokio::test]
async fn a_citizen_logs_in_through_the_reference_federation_until_the_trust_anchor_revokes_the_portal(
) {
    let (federation, anchor_keys) = ReferenceFederation::start().await;
    let keys_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys_file.path(), anchor_keys.to_string()).unwrap();
    let anchor = federation.base.clone();
    let provider = federation.provider();
    let mut app = spawn_app_with(|c| {
        c.federation.authority_hints = vec![anchor.clone()];
        c.federation.trust_anchors = vec![portal::config::TrustAnchorConfig {
            entity_id: anchor.clone(),
            jwks_file: keys_file.path().to_path_buf(),
        }];
        c.auth.providers = vec![portal::config::ProviderConfig {
            id: "riferimento".into(),
            kind: portal::config::ProviderKind::Spid,
            label: "SPID (implementazione di riferimento)".into(),
            entity_id: Some(provider.clone()),
            issuer: None,
            metadata_file: None,
        }];
    })
    .await;

    // Onboarding: the trust anchor reads the portal's entity configuration, registers it, and
    // issues the trust mark of a public-sector relying party, which the portal then publishes.
    let mark: serde_json::Value =
        serde_json::from_str(federation.command(&["register", &app.url]).await.trim()).unwrap();
    app.restart_with(|c| {
        c.federation.trust_marks = vec![portal::config::TrustMark {
            id: mark["id"].as_str().unwrap().into(),
            trust_mark: mark["trust_mark"].as_str().unwrap().into(),
        }];
    })
    .await;

    // The portal resolves the provider through the trust anchor (its resolve endpoint says so)…
    let resolved = app
        .get(&format!(
            "/resolve?sub={provider}&anchor={anchor}&type=openid_provider"
        ))
        .await;
    assert_eq!(resolved.status(), StatusCode::OK);
    let jwt = resolved.text().await.unwrap();
    let claims = json_segment(&jwt, 1);
    assert_eq!(claims["metadata"]["openid_provider"]["issuer"], provider);
    assert_eq!(claims["trust_chain"].as_array().unwrap().len(), 3);
    // …and the reference trust anchor's resolver finds the portal, with its trust mark.
    let theirs = reqwest::get(format!("{anchor}/fetch?sub={}", urlencoding(&app.url)))
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::OK, "the portal is registered");
    let statement = theirs.text().await.unwrap();
    let statement = json_segment(&statement, 1);
    assert_eq!(statement["sub"], app.url);
    assert!(statement["trust_marks"]
        .to_string()
        .contains("openid_relying_party/public"));

    // `sportello federation check`, configured as the portal is, finds both chains (the provider's
    // and its own) through the reference trust anchor.
    let check_dir = tempfile::tempdir().unwrap();
    let check_config = check_dir.path().join("sportello.toml");
    std::fs::write(
        &check_config,
        format!(
            "[federation]\nauthority_hints = [\"{anchor}\"]\n\
             [[federation.trust_anchors]]\nentity_id = \"{anchor}\"\njwks_file = \"{}\"\n\
             [[auth.providers]]\nid = \"riferimento\"\nkind = \"spid\"\nlabel = \"Riferimento\"\n\
             entity_id = \"{provider}\"\n",
            keys_file.path().display()
        ),
    )
    .unwrap();
    let check = || {
        let mut cmd = crate::cli::sportello(check_dir.path());
        cmd.args(["--config", check_config.to_str().unwrap()])
            .args(["federation", "check", "--url", &app.url]);
        crate::cli::output_of(cmd)
    };
    let out = check().await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{provider}: trust chain of 3 statements")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}: trust chain of 3 statements", app.url)),
        "{stdout}"
    );

    // A citizen logs in end to end, with the reference provider's pages.
    let start = app
        .get("/auth/login?provider=riferimento&next=/area-personale")
        .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorization = location(&start);
    assert!(authorization.starts_with(&format!("{provider}/authorization?")));
    let callback = through_reference_provider(&app, &authorization).await;
    assert!(
        callback.starts_with(&format!("{}/auth/callback?", app.url)),
        "{callback}"
    );
    assert!(callback.contains("iss="), "RFC 9207 iss sent: {callback}");
    let area = app.complete_login(&callback).await;
    assert!(area.contains("Mario"), "the citizen's name from userinfo");
    // The fiscal number without its TINIT- prefix, the e-mail the provider released.
    assert_eq!(
        email_of(&app, "RSSMRA80A01H501U").await,
        "mario.rossi@example.org"
    );
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);

    // The trust anchor revokes the portal's entity statement: the provider, resolving the portal
    // again, finds no statement for it and refuses; the portal says so and logs no one in.
    federation.command(&["revoke", &app.url]).await;
    let again = app
        .get("/auth/login?provider=riferimento&next=/area-personale")
        .await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let refused = app.get(&location(&again)).await;
    assert_eq!(
        refused.status(),
        StatusCode::FOUND,
        "the provider redirects with an error"
    );
    let callback = location(&refused);
    assert!(callback.contains("error=invalid_request"), "{callback}");
    let page = app.get(&callback).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("non ha completato l&#x27;accesso")
            || html.contains("non ha completato l'accesso"),
        "{html}"
    );
    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::SEE_OTHER
    );
    // The portal's own check sees it too: no chain up to the anchor any more, and a failing exit.
    let out = check().await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("PROBLEMA"), "{stdout}");
    app.stop().await;
}

async fn email_of(app: &TestApp, cf: &str) -> String {
    sqlx::query_scalar("SELECT email FROM people WHERE cf = $1")
        .bind(cf)
        .fetch_one(&app.db().pool)
        .await
        .unwrap()
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// panva's `oidc-provider` in the SPID profile (tests/interop/oidc-provider/server.mjs), with the
/// portal registered statically from its entity configuration's keys.
struct PanvaProvider {
    issuer: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl PanvaProvider {
    async fn start(
        port: u16,
        client_id: &str,
        redirect_uri: &str,
        jwks: &serde_json::Value,
    ) -> Self {
        let dir = tempfile::tempdir().expect("folder");
        let log = dir.path().join("server.log");
        let mut child = Command::new("node")
            .arg(tool("tests/interop/oidc-provider/server.mjs"))
            .env("PORT", port.to_string())
            .env("CLIENT_ID", client_id)
            .env("REDIRECT_URI", redirect_uri)
            .env("CLIENT_JWKS", jwks.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("node with oidc-provider (installed by .ci/setup --tests)");
        let issuer = format!("http://127.0.0.1:{port}");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        wait_for(&discovery, &mut child, &log, "oidc-provider").await;
        PanvaProvider { issuer, dir, child }
    }
}

impl Drop for PanvaProvider {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log"));
            eprintln!("oidc-provider's log:\n{}", log.unwrap_or_default());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Follows the provider's redirects and submits its login (as `account`, at level `acr` or the one
/// asked for) and consent forms, until it sends the browser back to the portal.
async fn through_panva_provider(
    app: &TestApp,
    issuer: &str,
    start: &str,
    acr: Option<&str>,
) -> String {
    let mut url = start.to_string();
    for _ in 0..12 {
        if url.starts_with(&app.url) {
            return url;
        }
        let response = app.get(&url).await;
        if response.status() == StatusCode::SEE_OTHER || response.status() == StatusCode::FOUND {
            let next = location(&response);
            url = if next.starts_with('/') {
                format!("{issuer}{next}")
            } else {
                next
            };
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let html = response.text().await.unwrap();
        let action_at = html.find("action=\"").expect("a form") + 8;
        let action = &html[action_at..action_at + html[action_at..].find('"').unwrap()];
        let mut form: Vec<(&str, String)> = Vec::new();
        if action.ends_with("/login") {
            form.push(("login", "giulia.bianchi".into()));
            let asked = hidden_field(&html, "acr").expect("the level asked for");
            form.push(("acr", acr.map(str::to_string).unwrap_or(asked)));
        }
        let posted = app
            .client
            .post(format!("{issuer}{action}"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(
            posted.status().is_redirection(),
            "{action}: {}",
            posted.status()
        );
        let next = location(&posted);
        url = if next.starts_with('/') {
            format!("{issuer}{next}")
        } else {
            next
        };
    }
    panic!("the provider never sent the browser back (last at {url})");
}

#[tokio::test]
async fn a_citizen_logs_in_at_oidc_provider_in_the_spid_profile_and_a_lower_level_is_refused() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let configured = issuer.clone();
    let app = spawn_app_with(|c| {
        c.auth.providers = vec![portal::config::ProviderConfig {
            id: "panva".into(),
            kind: portal::config::ProviderKind::Spid,
            label: "SPID (oidc-provider)".into(),
            entity_id: None,
            issuer: Some(configured),
            metadata_file: None,
        }];
    })
    .await;
    // The provider registers the portal from what its entity configuration publishes.
    let ec = app.text("/.well-known/openid-federation").await;
    let ec = json_segment(&ec, 1);
    let rp = &ec["metadata"]["openid_relying_party"];
    let provider = PanvaProvider::start(
        port,
        rp["client_id"].as_str().unwrap(),
        rp["redirect_uris"][0].as_str().unwrap(),
        &rp["jwks"],
    )
    .await;

    // By discovery, end to end: request object, PKCE, private_key_jwt, encrypted userinfo.
    let start = app
        .get("/auth/login?provider=panva&next=/area-personale")
        .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorization = location(&start);
    assert!(authorization.starts_with(&format!("{issuer}/auth?")));
    let callback = through_panva_provider(&app, &provider.issuer, &authorization, None).await;
    assert!(callback.contains("iss="), "RFC 9207 iss: {callback}");
    assert!(app.complete_login(&callback).await.contains("Giulia"));
    assert_eq!(
        email_of(&app, "BNCGLI85M41F205B").await,
        "giulia.bianchi@example.org"
    );
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);

    // SpidL2 asked, SpidL1 used: refused, and the page says which level to use.
    let start = app
        .get("/auth/login?provider=panva&next=/area-personale")
        .await;
    let callback = through_panva_provider(
        &app,
        &provider.issuer,
        &location(&start),
        Some("https://www.spid.gov.it/SpidL1"),
    )
    .await;
    let refused = app.get(&callback).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("livello 1"));
    assert_eq!(
        app.get("/area-personale").await.status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}
