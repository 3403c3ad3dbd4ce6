//! The site as a whole: every page each kind of person can reach renders (a crawler follows every
//! link as citizen, delegate, operator, coordinator, administrator and auditor); the static assets
//! are small, compressed and cached by content; and what a newcomer tripped on stays fixed.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::io::Read;

use portal::applications::store;
use portal::auth::Role;
use reqwest::StatusCode;

use crate::applications::{ready_draft, start, submission, NOV_23_2026};
use crate::appointments::Citizen;
use crate::support::{location, spawn_app, spawn_app_with};

/// The same-origin paths linked from `html` (`href="/…"`), entities decoded.
fn links(html: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"href="([^"]+)""#).unwrap();
    re.captures_iter(html)
        .map(|c| {
            c[1].replace("&amp;", "&")
                .replace("&#x2F;", "/")
                .replace("&#x3D;", "=")
        })
        .map(|l| l.split('#').next().unwrap_or_default().to_string())
        .filter(|l| l.starts_with('/') && !l.starts_with("//") && !l.starts_with("/static/"))
        .collect()
}

/// Follows every link from `starts` as `who` (GET only; a redirect is followed as a link), up to
/// `limit` pages. Returns the pages seen and those that answered 5xx.
async fn crawl(who: &Citizen, starts: &[&str], limit: usize) -> (BTreeSet<String>, Vec<String>) {
    let mut queue: VecDeque<String> = starts.iter().map(|s| s.to_string()).collect();
    let mut seen: HashSet<String> = queue.iter().cloned().collect();
    let mut visited = BTreeSet::new();
    let mut broken = Vec::new();
    while let Some(path) = queue.pop_front() {
        if visited.len() >= limit {
            break;
        }
        let r = who.get(&path).await;
        let status = r.status();
        visited.insert(path.clone());
        if status.is_server_error() {
            broken.push(format!("{path}: {status}"));
            continue;
        }
        let next: Vec<String> = if status.is_redirection() {
            vec![location(&r)]
        } else if r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html"))
        {
            links(&r.text().await.unwrap_or_default())
        } else {
            Vec::new()
        };
        for link in next {
            // Leaving the site, or starting another login, is not a page of it.
            if !link.starts_with('/') || link.starts_with("/auth/") || link.starts_with("/dev-idp")
            {
                continue;
            }
            if seen.insert(link.clone()) {
                queue.push_back(link);
            }
        }
    }
    (visited, broken)
}

#[tokio::test]
async fn every_page_each_role_reaches_renders() {
    let app = spawn_app_with(|c| {
        c.auth.session_idle_minutes = 7 * 24 * 60;
        c.auth.session_absolute_hours = 7 * 24;
    })
    .await;
    app.clock.set_ms(NOV_23_2026);
    let db = &app.db().pool;

    // A citizen with a sent pratica holding a document, a draft, and a booked appointment.
    let owner = Citizen::new(&app, 601).await;
    sqlx::query("INSERT INTO people (cf, given_name, family_name, created_at, updated_at) VALUES ($1, 'Maria', 'Prova601', 0, 0)")
        .bind(&owner.cf)
        .execute(db)
        .await
        .unwrap();
    let pratica = ready_draft(&app, &owner.cf).await;
    let doc = crate::documents::pdf_with("Relazione sociale", |_, _| {});
    let (status, _) = crate::documents::upload(&owner, &pratica, "relazione.pdf", &doc).await;
    assert_eq!(status, StatusCode::OK);
    store::submit(
        app.db(),
        NOV_23_2026,
        &pratica,
        &submission(
            &owner.cf,
            "valleverde",
            &portal::applications::form::Answers::new(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let numero: String = sqlx::query_scalar("SELECT numero FROM applications WHERE id = $1")
        .bind(&pratica)
        .fetch_one(db)
        .await
        .unwrap();
    app.clock
        .set_ms(NOV_23_2026 + 4 * 86_400_000 + 10 * 3_600_000);
    let appointment = crate::appointments::hold_first(&owner, "vv-borgo").await;
    let booked = crate::appointments::complete(&owner, &appointment, "vv-informazioni").await;
    assert_eq!(booked.status(), StatusCode::SEE_OTHER);

    // A delegate, accepted and acting for the citizen.
    let delegate = Citizen::new(&app, 602).await;
    let form = [
        ("cf", delegate.cf.as_str()),
        ("nome", "Maria"),
        ("cognome", "Prova"),
        ("fino_al", "2027-06-30"),
        ("ambito", "stato"),
        ("ambito", "integrazioni"),
        ("ambito", "appuntamenti"),
    ];
    assert_eq!(
        owner.post("/area-personale/deleghe", &form).await.status(),
        StatusCode::SEE_OTHER
    );
    let mandate: String = sqlx::query_scalar("SELECT id FROM mandates WHERE agent_cf = $1")
        .bind(&delegate.cf)
        .fetch_one(db)
        .await
        .unwrap();
    for action in ["accetta", "opera"] {
        let r = delegate
            .post(&format!("/area-personale/deleghe/{mandate}/{action}"), &[])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }

    let staff_starts = [
        "/",
        "/area-personale",
        "/ufficio/pratiche",
        "/ufficio/riepilogo",
        "/ufficio/agenda",
        "/ufficio/rappresentanze",
        "/ufficio/registro-accessi",
        "/amministrazione/sedi",
        "/amministrazione/operatori",
        "/amministrazione/avvisi",
    ];
    let citizen_starts = ["/", "/area-personale", "/area-personale/deleghe"];
    let roles = [
        ("citizen", owner.clone(), &citizen_starts[..]),
        ("delegate", delegate.clone(), &citizen_starts[..]),
        (
            "operator",
            Citizen::staff(&app, 603, "valleverde", Role::Operatore).await,
            &staff_starts[..],
        ),
        (
            "coordinator",
            Citizen::staff(&app, 604, "valleverde", Role::Coordinatore).await,
            &staff_starts[..],
        ),
        (
            "administrator",
            Citizen::staff(&app, 605, "valleverde", Role::Amministratore).await,
            &staff_starts[..],
        ),
        (
            "auditor",
            Citizen::staff(&app, 606, "valleverde", Role::Revisore).await,
            &staff_starts[..],
        ),
    ];
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for (role, who, starts) in &roles {
        let (visited, broken) = crawl(who, starts, 400).await;
        report.push(format!("{role}: {} pages", visited.len()));
        failures.extend(broken.into_iter().map(|b| format!("{role} {b}")));
        // The walk is not trivially short: the pages each role lives on were among those reached.
        let expected: Vec<String> = match *role {
            "citizen" => vec![
                format!("/domande/{pratica}"),
                format!("/appuntamenti/{appointment}"),
                "/area-personale/accessi".into(),
            ],
            "delegate" => vec![format!("/domande/{pratica}")],
            "auditor" => vec!["/ufficio/registro-accessi".into()],
            "administrator" => vec!["/amministrazione/sedi/vv-municipio".into()],
            _ => vec![format!("/ufficio/pratiche/{pratica}")],
        };
        for page in expected {
            assert!(
                visited.contains(&page),
                "{role} never reached {page} (pratica {numero}); visited: {visited:?}"
            );
        }
    }
    println!("route walk: {}", report.join(", "));
    assert!(failures.is_empty(), "5xx answers:\n{}", failures.join("\n"));

    // What the staff read is told to the citizen in words, not as record keys.
    let accesses = owner.text("/area-personale/accessi").await;
    assert!(
        accesses.contains(&format!("La pratica n. {}", numero.replace('/', "&#x2F;"))),
        "{accesses}"
    );
    let raw: Vec<&str> = accesses
        .lines()
        .filter(|l| l.contains("pratica:") || l.contains("appuntamento:"))
        .collect();
    assert!(raw.is_empty(), "record keys shown: {raw:?}");
    app.stop().await;
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn static_assets_are_trimmed_compressed_and_cached_by_their_content() {
    let app = spawn_app().await;
    let home = app.text("/").await;
    let assets: Vec<String> = regex::Regex::new(r##"(?:href|src)="(/static/[^"#]+)"##)
        .unwrap()
        .captures_iter(&home)
        .map(|c| c[1].to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        !home.contains("bootstrap-italia.bundle"),
        "no 1 MB script bundle on the pages"
    );
    let css: Vec<&String> = assets.iter().filter(|a| a.ends_with(".css")).collect();
    assert_eq!(css.len(), 2, "{assets:?}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut sent = 0;
    let hashed = regex::Regex::new(r"\.[0-9a-f]{10}\.[a-z0-9]+$").unwrap();
    for url in &assets {
        assert!(hashed.is_match(url), "named by content: {url}");
        let plain = client.get(app.absolute(url)).send().await.unwrap();
        assert_eq!(plain.status(), StatusCode::OK, "{url}");
        assert_eq!(
            header(&plain, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        let etag = header(&plain, "etag").to_string();
        let identity = plain.bytes().await.unwrap();

        let again = client
            .get(app.absolute(url))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{url}");

        if url.ends_with(".woff2") {
            sent += identity.len();
            continue;
        }
        let gz = client
            .get(app.absolute(url))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&gz, "content-encoding"), "gzip", "{url}");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gz.bytes().await.unwrap()[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, identity.to_vec(), "{url}: gzip is the same file");
        let br = client
            .get(app.absolute(url))
            .header("Accept-Encoding", "gzip, deflate, br")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&br, "content-encoding"), "br", "{url}");
        let br = br.bytes().await.unwrap();
        assert!(br.len() < identity.len(), "{url}: brotli is smaller");
        sent += br.len();
    }
    // A first visit's stylesheets, scripts, preloaded fonts, as a phone receives them.
    assert!(
        sent < 250 * 1024,
        "the home page's assets weigh {sent} bytes compressed"
    );
    let css = client
        .get(app.absolute(css[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        css.len() < 150 * 1024,
        "trimmed stylesheet: {} bytes",
        css.len()
    );

    // The icon sprite holds the icons the pages use, not Bootstrap Italia's whole set.
    let sprite_url = regex::Regex::new(r##"href="(/static/[^"#]*sprites[^"#]*)#"##)
        .unwrap()
        .captures(&home)
        .unwrap()[1]
        .to_string();
    let sprite = client
        .get(app.absolute(&sprite_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sprite.contains("id=\"it-user\"") && sprite.contains("id=\"it-folder\""));
    assert!(
        !sprite.contains("id=\"it-zoom-in\""),
        "unused icons left out"
    );

    // The fonts the stylesheet names are served under their hashed names.
    let sportello_css = css_named(&client, &app, &assets, "sportello").await;
    let font = regex::Regex::new(r#"url\("(/static/bootstrap-italia/fonts/[^"]+)"\)"#)
        .unwrap()
        .captures(&sportello_css)
        .expect("the fonts by URL")[1]
        .to_string();
    let font = client.get(app.absolute(&font)).send().await.unwrap();
    assert_eq!(font.status(), StatusCode::OK);
    assert_eq!(header(&font, "content-type"), "font/woff2");

    // Pages themselves are compressed too, and never cached.
    let page = client
        .get(app.absolute("/"))
        .header("Accept-Encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&page, "content-encoding"), "br");
    assert_eq!(header(&page, "cache-control"), "no-store");
    let missing = client
        .get(app.absolute("/static/css/nope.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn css_named(
    client: &reqwest::Client,
    app: &crate::support::TestApp,
    assets: &[String],
    name: &str,
) -> String {
    let url = assets
        .iter()
        .find(|a| a.contains(name) && a.ends_with(".css"))
        .unwrap();
    client
        .get(app.absolute(url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The checked radio buttons of `name` in `html`.
fn checked(html: &str, name: &str) -> Vec<String> {
    regex::Regex::new(&format!(r#"<input[^>]*name="{name}"[^>]*>"#))
        .unwrap()
        .find_iter(html)
        .map(|m| m.as_str().to_string())
        .filter(|tag| tag.contains(" checked"))
        .collect()
}

#[tokio::test]
async fn what_a_newcomer_tripped_on_stays_fixed() {
    let app = spawn_app().await;
    app.clock.set_ms(NOV_23_2026);
    app.login("mario-rossi").await;

    // No comune ticked for someone who never applied; going on without one asks for it.
    let consent = app.text("/servizi/sad/domanda").await;
    assert!(consent.contains("Comune di Montebello") && consent.contains("Comune di Valleverde"));
    assert!(checked(&consent, "ente").is_empty(), "nothing preselected");
    let token = crate::support::hidden_field(&consent, "csrf_token").unwrap();
    let refused = app
        .post_form(
            "/servizi/sad/domanda",
            &[("csrf_token", &token), ("privacy", "si")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = refused.text().await.unwrap();
    assert!(refused.contains("id=\"errori\"") && refused.contains("Scegli l&#x27;ente"));

    // Applied once to Valleverde: the next service starts with Valleverde ticked.
    let draft = start(&app, "sad", "valleverde").await;
    let other = app.text("/servizi/fna-b2/domanda").await;
    let ticked = checked(&other, "ente");
    assert_eq!(ticked.len(), 1, "{ticked:?}");
    assert!(ticked[0].contains("value=\"valleverde\""), "{ticked:?}");

    // The heading's number is the progress bar's (the privacy page is step 1); input purposes.
    let step1 = app.text(&format!("/domande/{draft}/passo/1")).await;
    assert!(
        step1.contains("<h2 class=\"h3\">2. "),
        "step 1 is the bar's second"
    );
    assert!(step1.contains("autocomplete=\"given-name\""));
    assert!(step1.contains("autocomplete=\"family-name\""));

    // Starting again finds the draft and says so.
    let again = app.get("/servizi/sad/domanda").await;
    assert_eq!(location(&again), format!("/domande/{draft}?ripresa=1"));
    let resumed = app.get(&location(&again)).await;
    let resumed = app.text(&location(&resumed)).await;
    assert!(resumed.contains("Avevi già iniziato questa domanda"));

    // The summary lists each slot with what was uploaded to it, and no longer says uploads are
    // missing.
    let summary = app.text(&format!("/domande/{draft}/riepilogo")).await;
    assert!(!summary.contains("non è ancora disponibile"));
    assert!(
        summary.contains("Nessun documento caricato") || summary.contains("Carica il documento")
    );

    // The booking preselects no time.
    let when = app.text("/appuntamenti/prenota/vv-borgo").await;
    assert!(when.contains("name=\"orario\""), "times are offered");
    assert!(
        checked(&when, "orario").is_empty(),
        "no time chosen for the citizen"
    );
    app.stop().await;
}
