//! Click day: many citizens press "Conferma e invia" at the same moment.
//!
//!     cargo bench --bench click_day                          # SQLite, 2000 citizens
//!     BENCH_DB=postgres cargo bench --bench click_day        # PostgreSQL on 127.0.0.1:5432
//!     cargo bench --bench click_day -- --citizens 5000 --rate 1500
//!
//! Sportello runs in this process (release build) on a fresh database. Each citizen gets a session
//! and a complete draft of the SAD request (seeded directly: logging thousands of people in through
//! the identity provider is not what is measured). Then every citizen sends `POST /domande/{id}/invia`
//! at once, through real HTTP: session, CSRF, ownership, validation of every answer, the numbering
//! transaction with its history and outbox rows. Then a replay of every request (a double click),
//! which must create nothing; then every citizen sends a second application, this time arriving at a
//! steady `--rate` per second (default 1000), which is how latency under a given load is read. Each
//! phase reports submissions per second, p50/p99 latency and errors; at the end the database is
//! checked: every submission that got its receipt is stored exactly once, numbers distinct and
//! gapless per ente, one outbox event each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::percentile;
use portal::applications::store;
use portal::clock::{Clock, SystemClock};

/// Receipt e-mails (alerts with the PDF) not yet sent by the job workers.
async fn receipts_waiting(db: &portal::db::Db) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE idempotency_key LIKE 'alert:ricevuta:%' AND status <> 'done'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

struct Citizen {
    token: String,
    csrf: String,
    /// One draft for the burst, one for the paced phase.
    drafts: [String; 2],
}

#[tokio::main]
async fn main() {
    let citizens: usize = common::arg("--citizens", 2000);
    let rate: f64 = common::arg("--rate", 1000.0);
    let dir = tempfile::tempdir().unwrap();
    let (server, base, backend) = common::start(dir.path()).await;
    let db = server.db.clone();

    // Seeding: a session and a complete draft per citizen.
    let seed = Instant::now();
    let now = SystemClock.now_ms();
    let mut people = Vec::with_capacity(citizens);
    for i in 0..citizens {
        let session = common::citizen(&db, now, i).await;
        let mut drafts = Vec::new();
        for _ in 0..2 {
            drafts.push(
                store::create_draft(
                    &db,
                    now,
                    &store::NewDraft {
                        ente_code: if i % 2 == 0 {
                            "valleverde"
                        } else {
                            "montebello"
                        },
                        service_code: "sad",
                        form_version: 1,
                        applicant_cf: &session.cf,
                        answers: &common::sad_answers(&session.cf),
                    },
                )
                .await
                .unwrap(),
            );
        }
        people.push(Citizen {
            token: session.token,
            csrf: session.csrf,
            drafts: [drafts[0].clone(), drafts[1].clone()],
        });
    }
    println!(
        "click day on {backend}: {citizens} citizens seeded in {:.1} s",
        seed.elapsed().as_secs_f64()
    );

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(citizens)
        .build()
        .unwrap();
    let people = Arc::new(people);
    let send_all = |label: String, which: usize, rate: Option<f64>| {
        let client = client.clone();
        let people = people.clone();
        let base = base.clone();
        async move {
            let gate = Arc::new(tokio::sync::Barrier::new(people.len() + 1));
            let mut tasks = Vec::with_capacity(people.len());
            for i in 0..people.len() {
                let (client, people, base, gate) =
                    (client.clone(), people.clone(), base.clone(), gate.clone());
                tasks.push(tokio::spawn(async move {
                    let c = &people[i];
                    gate.wait().await;
                    if let Some(rate) = rate {
                        tokio::time::sleep(Duration::from_secs_f64(i as f64 / rate)).await;
                    }
                    let started = Instant::now();
                    let response = client
                        .post(format!("{base}/domande/{}/invia", c.drafts[which]))
                        .header("Cookie", format!("sportello_session={}", c.token))
                        .header("Origin", base.as_str())
                        .form(&[
                            ("csrf_token", c.csrf.as_str()),
                            ("dichiarazione_veridicita", "si"),
                            ("dichiarazione_quota", "si"),
                        ])
                        .send()
                        .await;
                    let elapsed = started.elapsed();
                    let ok = match &response {
                        Ok(r) => {
                            r.status() == reqwest::StatusCode::SEE_OTHER
                                && r.headers()
                                    .get("location")
                                    .and_then(|l| l.to_str().ok())
                                    .is_some_and(|l| l.ends_with("?inviata=1"))
                        }
                        Err(_) => false,
                    };
                    let what = match response {
                        Ok(r) => r.status().to_string(),
                        Err(e) => format!("{e}"),
                    };
                    (i, ok, elapsed, what)
                }));
            }
            gate.wait().await;
            let wall = Instant::now();
            let mut results = Vec::with_capacity(tasks.len());
            for t in tasks {
                results.push(t.await.unwrap());
            }
            let wall = wall.elapsed();
            let mut latencies: Vec<Duration> = results.iter().map(|r| r.2).collect();
            latencies.sort();
            let ok = results.iter().filter(|r| r.1).count();
            let mut errors: Vec<String> = results
                .iter()
                .filter(|r| !r.1)
                .map(|r| r.3.clone())
                .collect();
            errors.sort();
            errors.dedup();
            println!(
                "{label}: {} requests in {:.2} s = {:.0} submissions/s; p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} errors {:?}",
                results.len(),
                wall.as_secs_f64(),
                results.len() as f64 / wall.as_secs_f64(),
                percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
                percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
                percentile(&latencies, 1.0).as_secs_f64() * 1000.0,
                results.len() - ok,
                errors,
            );
            results
                .into_iter()
                .filter(|r| r.1)
                .map(|r| r.0)
                .collect::<Vec<_>>()
        }
    };

    let mut receipts: Vec<String> = send_all("burst, all at once".into(), 0, None)
        .await
        .into_iter()
        .map(|i| people[i].drafts[0].clone())
        .collect();
    let replayed = send_all("replay of the burst".into(), 0, None).await;
    let paced = send_all(format!("paced at {rate}/s"), 1, Some(rate)).await;
    receipts.extend(paced.into_iter().map(|i| people[i].drafts[1].clone()));

    // Every receipt stored exactly once, numbers distinct and gapless per ente.
    let mut lost = 0;
    for id in &receipts {
        let app = store::get(&db, id).await.unwrap();
        if app.and_then(|a| a.numero).is_none() {
            lost += 1;
        }
    }
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT ente_code, COUNT(*), COUNT(DISTINCT numero_seq), MAX(numero_seq) FROM applications \
         WHERE numero IS NOT NULL GROUP BY ente_code ORDER BY ente_code",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let stored: i64 = rows.iter().map(|r| r.1).sum();
    let gapless = rows.iter().all(|r| r.1 == r.2 && r.2 == r.3);
    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'pratica.inviata'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    // The receipts' alerts (PDF by e-mail) are sent by the job workers meanwhile: how far behind.
    let alerts_waiting = receipts_waiting(&db).await;
    println!(
        "check: {} receipts, {stored} stored, {events} events, {lost} lost, numbers distinct and gapless per ente: {gapless}; replay answered {} times with the same receipt; {alerts_waiting} receipt e-mails still to send",
        receipts.len(),
        replayed.len()
    );
    // `--drain`: wait for the job workers to send every receipt e-mail, and say how fast they did.
    if std::env::args().any(|a| a == "--drain") {
        let started = Instant::now();
        let mut left = alerts_waiting;
        while left > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            left = receipts_waiting(&db).await;
        }
        let took = started.elapsed().as_secs_f64();
        println!(
            "drain: the last {alerts_waiting} receipt e-mails sent in {took:.1} s = {:.0} per second",
            alerts_waiting as f64 / took
        );
    }
    let sound = lost == 0
        && stored == receipts.len() as i64
        && events == stored
        && gapless
        && replayed.len() == citizens;
    server.stop().await;
    if !sound {
        eprintln!("click day: the data check FAILED");
        std::process::exit(1);
    }
}
