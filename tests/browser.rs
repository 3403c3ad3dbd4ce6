//! A real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) driven through
//! WebDriver, with axe-core checking WCAG 2.1 AA on every page it visits.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::{root, spawn_app};

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian package chromium-driver) must be installed: run .ci/setup");
    // Owned by the guard from here on: killed and reaped whatever happens.
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,1000", format!("--user-data-dir={}", profile.display())]
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("WebDriver session")
}

/// Runs axe-core on the current page; returns the WCAG 2.1 A/AA violations, described.
async fn axe(client: &Client) -> Vec<String> {
    let source = std::fs::read_to_string(root().join("static/node_modules/axe-core/axe.min.js"))
        .expect("axe-core is installed by .ci/setup");
    client.execute(&source, vec![]).await.expect("axe injected");
    let script = r#"
        const done = arguments[arguments.length - 1];
        axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
          .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
                v.nodes.map(n => n.target.join(' ')).join(', '))))
          .catch(e => done(['axe failed: ' + e]));
    "#;
    let result = client.execute_async(script, vec![]).await.expect("axe ran");
    serde_json::from_value(result).expect("a list of violations")
}

/// Clicks an element. Where headless Chromium reports the point covered (it does for some controls
/// low on a long page), the click is dispatched to the element itself.
async fn click(client: &Client, locator: Locator<'_>) {
    let element = client.find(locator).await.unwrap();
    if let Err(e) = element.clone().click().await {
        assert!(
            format!("{e:?}").contains("ElementClickIntercepted"),
            "click: {e}"
        );
        client
            .execute(
                "arguments[0].click();",
                vec![serde_json::to_value(&element).unwrap()],
            )
            .await
            .unwrap();
    }
}

/// Presses a form's button as a keyboard user would (focus, Enter): the page's fixed elements may
/// cover it at the point where a mouse click would land.
async fn press(client: &Client, css: &str) {
    let button = client.find(Locator::Css(css)).await.unwrap();
    client
        .execute(
            "arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();",
            vec![serde_json::to_value(&button).unwrap()],
        )
        .await
        .unwrap();
    button.send_keys("\u{E007}").await.unwrap();
}

/// On the development provider's page: picks the persona and logs in.
async fn choose_persona(client: &Client, persona: &str) {
    let label = format!("label[for=persona-{persona}]");
    click(client, Locator::Css(&label)).await;
    click(client, Locator::Css("button[value=accedi]")).await;
}

/// The page shows an error summary and focus went to it (so a screen reader reads it first).
async fn errors_focused(client: &Client, page: &str) {
    client
        .wait()
        .for_element(Locator::Id("errori"))
        .await
        .unwrap();
    let focused = client
        .execute(
            "return document.activeElement && document.activeElement.id",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        focused.as_str(),
        Some("errori"),
        "{page}: focus is not on the error summary"
    );
}

/// Adds the page's violations, named after the page, to `all`.
async fn check(client: &Client, page: &str, all: &mut Vec<String>) {
    all.extend(
        axe(client)
            .await
            .into_iter()
            .map(|v| format!("{page}: {v}")),
    );
}

#[tokio::test]
async fn a_citizen_logs_in_with_chromium_and_every_page_passes_axe() {
    let app = spawn_app().await;
    let driver = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let mut violations = Vec::new();

    client.goto(&app.url).await.unwrap();
    assert!(client
        .source()
        .await
        .unwrap()
        .contains("Servizi sociali online"));
    check(&client, "home", &mut violations).await;

    click(&client, Locator::LinkText("Accedi all'area personale")).await;
    assert!(client
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/accedi"));
    check(&client, "login", &mut violations).await;

    click(&client, Locator::LinkText("Entra con SPID")).await;
    assert!(client
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/dev-idp/authorize"));
    check(&client, "identity provider", &mut violations).await;
    choose_persona(&client, "giulia-bianchi").await;

    let cf = client
        .wait()
        .for_element(Locator::Css("[data-testid=codice-fiscale]"))
        .await
        .unwrap();
    assert_eq!(cf.text().await.unwrap(), "BNCGLI85D52F205W");
    assert!(client.source().await.unwrap().contains("Giulia Bianchi"));
    check(&client, "area personale", &mut violations).await;

    click(&client, Locator::LinkText("Impostazioni")).await;
    check(&client, "impostazioni", &mut violations).await;
    click(&client, Locator::LinkText("Chi ha consultato i tuoi dati")).await;
    client.wait().for_element(Locator::Css("h1")).await.unwrap();
    check(&client, "accessi", &mut violations).await;

    // Applying for home care: service page, consent, a step with errors, a field shown by script.
    client
        .goto(&format!("{}/servizi/sad", app.url))
        .await
        .unwrap();
    check(&client, "pagina del servizio", &mut violations).await;
    click(&client, Locator::LinkText("Presenta la domanda")).await;
    check(&client, "informativa privacy", &mut violations).await;
    // Going on without choosing the comune or ticking the notice: the errors, focused.
    press(&client, "button[type=submit].btn-primary").await;
    errors_focused(&client, "informativa privacy con errori").await;
    check(&client, "informativa privacy con errori", &mut violations).await;
    if let Ok(ente) = client
        .find(Locator::Css("label[for=ente-valleverde]"))
        .await
    {
        ente.click().await.unwrap();
    }
    click(&client, Locator::Css("label[for=privacy]")).await;
    press(&client, "button[type=submit].btn-primary").await;
    client
        .wait()
        .for_element(Locator::Id("f-per_chi"))
        .await
        .unwrap();
    press(&client, "button[value=avanti].btn-primary").await;
    let errors = client
        .wait()
        .for_element(Locator::Id("errori"))
        .await
        .unwrap();
    assert!(errors
        .text()
        .await
        .unwrap()
        .contains("Scegli una delle opzioni."));
    errors_focused(&client, "passo con errori").await;
    check(&client, "passo con errori", &mut violations).await;
    click(&client, Locator::Css("label[for=f-per_chi-me]")).await;
    press(&client, "button[value=avanti].btn-primary").await;
    client
        .wait()
        .for_element(Locator::Id("f-descrizione"))
        .await
        .unwrap();
    assert!(
        client.find(Locator::Id("f-assistito_cf")).await.is_err(),
        "asked only when the request is for someone else"
    );
    for (id, text) in [
        ("f-indirizzo_assistenza", "Via Roma 1"),
        (
            "f-descrizione",
            "Ho bisogno di aiuto per le pulizie di casa.",
        ),
    ] {
        client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }
    click(&client, Locator::Css("#f-bisogno option[value=casa]")).await;
    press(&client, "button[value=avanti].btn-primary").await;
    let isee = client
        .wait()
        .for_element(Locator::Css("[data-show-if-field]"))
        .await
        .unwrap();
    assert!(
        !isee.is_displayed().await.unwrap(),
        "hidden until 'Sì' is chosen"
    );
    click(&client, Locator::Css("label[for=f-presenta_isee-si]")).await;
    assert!(
        isee.is_displayed().await.unwrap(),
        "shown once 'Sì' is chosen"
    );
    check(&client, "passo con campo condizionato", &mut violations).await;

    // A document uploaded through the page's script (progress bar, then the list again).
    let here = client.current_url().await.unwrap().to_string();
    let draft = here
        .split("/domande/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    client
        .goto(&format!(
            "{}/domande/{draft}/allegati/documentazione_sanitaria",
            app.url
        ))
        .await
        .unwrap();
    check(&client, "documenti: caricamento", &mut violations).await;
    let file = profile.path().join("relazione.pdf");
    std::fs::write(&file, crate::documents::pdf_with("Relazione", |_, _| {})).unwrap();
    client
        .find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    press(&client, "form.sportello-upload button.btn-primary").await;
    client
        .wait()
        .for_element(Locator::Css("#documenti"))
        .await
        .unwrap();
    let listed = client.source().await.unwrap();
    assert!(
        listed.contains("relazione.pdf") && listed.contains("Accettato"),
        "{listed}"
    );
    check(&client, "documenti: caricato", &mut violations).await;
    // The summary of a draft not yet complete: what to correct, focused; the uploaded file listed.
    client
        .goto(&format!("{}/domande/{draft}/riepilogo", app.url))
        .await
        .unwrap();
    errors_focused(&client, "riepilogo con dati mancanti").await;
    assert!(client.source().await.unwrap().contains("relazione.pdf"));
    check(&client, "riepilogo con dati mancanti", &mut violations).await;

    // Booking an appointment from the same service page, through the six steps.
    client
        .goto(&format!("{}/servizi/sad", app.url))
        .await
        .unwrap();
    click(
        &client,
        Locator::LinkText("Prenota un appuntamento con il segretariato sociale"),
    )
    .await;
    client.wait().for_element(Locator::Css("h1")).await.unwrap();
    check(&client, "prenotazione: sede", &mut violations).await;
    click(
        &client,
        Locator::Css("a.btn-primary[href^='/appuntamenti/prenota/']"),
    )
    .await;
    client
        .wait()
        .for_element(Locator::Css("input[name=orario]"))
        .await
        .unwrap();
    check(&client, "prenotazione: data e ora", &mut violations).await;
    // On a phone the days take one row that scrolls sideways: the chosen day's times follow at once.
    let (w, h) = client.get_window_size().await.unwrap();
    client.set_window_size(375, 812).await.unwrap();
    let times_top = client
        .execute(
            "return document.querySelector('input[name=orario]').getBoundingClientRect().top + window.scrollY",
            vec![],
        )
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    let overflow = client
        .execute(
            "document.documentElement.style.scrollbarWidth = 'none'; /* as on a phone: overlay scrollbars */ \
             var w = document.documentElement.clientWidth; var wide = []; \
             document.querySelectorAll('body *').forEach(function (e) { var r = e.getBoundingClientRect(); \
               if (r.right > w + 1 && wide.length < 5) wide.push(e.tagName + '.' + e.className + ' ' + Math.round(r.right)); }); \
             return document.documentElement.scrollWidth > w ? (w + ': ' + wide.join(' | ')) : false",
            vec![],
        )
        .await
        .unwrap();
    client.set_window_size(w as u32, h as u32).await.unwrap();
    assert!(
        times_top < 1.5 * 812.0,
        "on a phone the first time is {times_top}px down the page"
    );
    assert!(
        overflow.as_bool() == Some(false),
        "the page itself does not scroll sideways: {overflow}"
    );
    // No time is chosen for the citizen: "Avanti" without one asks for it.
    press(
        &client,
        "form[action^='/appuntamenti/prenota/'] button.btn-primary",
    )
    .await;
    errors_focused(&client, "prenotazione: orario mancante").await;
    check(&client, "prenotazione: orario mancante", &mut violations).await;
    click(&client, Locator::Css("label[for=orario-1]")).await;
    press(
        &client,
        "form[action^='/appuntamenti/prenota/'] button.btn-primary",
    )
    .await;
    client
        .wait()
        .for_element(Locator::Id("descrizione"))
        .await
        .unwrap();
    check(&client, "prenotazione: dettagli", &mut violations).await;
    press(&client, "form[action$='/dettagli'] button.btn-primary").await;
    errors_focused(&client, "prenotazione: dettagli con errori").await;
    check(
        &client,
        "prenotazione: dettagli con errori",
        &mut violations,
    )
    .await;
    client
        .find(Locator::Id("descrizione"))
        .await
        .unwrap()
        .send_keys("Vorrei sapere come funziona l'assistenza domiciliare.")
        .await
        .unwrap();
    press(&client, "form[action$='/dettagli'] button.btn-primary").await;
    let email = client
        .wait()
        .for_element(Locator::Id("email"))
        .await
        .unwrap();
    check(&client, "prenotazione: richiedente", &mut violations).await;
    email.clear().await.unwrap();
    email.send_keys("non-una-email").await.unwrap();
    press(&client, "form[action$='/richiedente'] button.btn-primary").await;
    errors_focused(&client, "prenotazione: richiedente con errori").await;
    check(
        &client,
        "prenotazione: richiedente con errori",
        &mut violations,
    )
    .await;
    let email = client.find(Locator::Id("email")).await.unwrap();
    email.clear().await.unwrap();
    email.send_keys("giulia@example.it").await.unwrap();
    press(&client, "form[action$='/richiedente'] button.btn-primary").await;
    client
        .wait()
        .for_element(Locator::Css("form[action$='/conferma']"))
        .await
        .unwrap();
    check(&client, "prenotazione: riepilogo", &mut violations).await;
    press(&client, "form[action$='/conferma'] button.btn-primary").await;
    client
        .wait()
        .for_element(Locator::Css("[data-testid=stato]"))
        .await
        .unwrap();
    assert!(client
        .source()
        .await
        .unwrap()
        .contains("Appuntamento prenotato"));
    check(&client, "prenotazione: conferma", &mut violations).await;
    client
        .goto(&format!("{}/area-personale/appuntamenti", app.url))
        .await
        .unwrap();
    check(&client, "area personale: appuntamenti", &mut violations).await;
    client
        .goto(&format!("{}/area-personale/messaggi", app.url))
        .await
        .unwrap();
    check(&client, "area personale: messaggi", &mut violations).await;
    if let Ok(first) = client.find(Locator::Css("a[href^='/messaggi/']")).await {
        first.click().await.unwrap();
        client.wait().for_element(Locator::Css("h1")).await.unwrap();
        check(&client, "un messaggio", &mut violations).await;
    }

    client
        .goto(&format!("{}/pagina-inesistente", app.url))
        .await
        .unwrap();
    check(&client, "404", &mut violations).await;

    // A sent pratica (also for the desk's pages below): the confirmation as its citizen sees it,
    // with the receipt's button inside the coloured callout.
    let sent = crate::applications::ready_draft(&app, "BNCGLI85D52F205W").await;
    let answers = portal::applications::form::Answers::new();
    portal::applications::store::submit(
        app.db(),
        portal::clock::Clock::now_ms(&app.clock),
        &sent,
        &crate::applications::submission("BNCGLI85D52F205W", "valleverde", &answers),
    )
    .await
    .unwrap();
    client
        .goto(&format!("{}/domande/{sent}?inviata=1", app.url))
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("[data-testid=numero]"))
        .await
        .unwrap();
    check(&client, "domanda inviata", &mut violations).await;

    click(&client, Locator::Css("button.sportello-logout")).await;
    client
        .wait()
        .for_element(Locator::Css("[role=status]"))
        .await
        .unwrap();
    assert!(client.source().await.unwrap().contains("Sei uscito"));

    // The administration page, as the administrator persona.
    click(&client, Locator::LinkText("Accedi all'area personale")).await;
    click(&client, Locator::LinkText("Entra con SPID")).await;
    choose_persona(&client, "elena-ferri").await;
    client
        .wait()
        .for_element(Locator::LinkText("Gestione operatori"))
        .await
        .unwrap();
    click(&client, Locator::LinkText("Gestione operatori")).await;
    client
        .wait()
        .for_element(Locator::Css("table caption"))
        .await
        .unwrap();
    check(&client, "gestione operatori", &mut violations).await;
    let draft = sent;
    let pratica = format!("/ufficio/pratiche/{draft}");
    for (path, page) in [
        ("/amministrazione/sedi", "sedi e calendari"),
        ("/amministrazione/sedi/vv-municipio", "una sede"),
        (
            "/amministrazione/calendari/vv-municipio-as",
            "un calendario",
        ),
        (
            "/ufficio/agenda?sede=vv-municipio&vista=settimana",
            "agenda",
        ),
        ("/amministrazione/avvisi", "avvisi non recapitati"),
        ("/ufficio/pratiche", "pratiche da lavorare"),
        ("/ufficio/riepilogo", "riepilogo"),
        (pratica.as_str(), "una pratica allo sportello"),
    ] {
        client.goto(&format!("{}{path}", app.url)).await.unwrap();
        client.wait().for_element(Locator::Css("h1")).await.unwrap();
        check(&client, page, &mut violations).await;
    }

    // The harness itself: axe does report a violation when there is one.
    client
        .execute("document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/x.png\">')", vec![])
        .await
        .unwrap();
    let planted = axe(&client).await;
    assert!(
        planted.iter().any(|v| v.starts_with("image-alt")),
        "axe missed a planted violation: {planted:?}"
    );

    client.close().await.unwrap();
    assert!(
        violations.is_empty(),
        "WCAG 2.1 AA violations:\n{}",
        violations.join("\n")
    );
    app.stop().await;
}
