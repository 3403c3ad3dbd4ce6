//! Click day: thousands of citizens press "Conferma e invia" within seconds, from the moment the
//! portal has started.
//!
//!     cargo bench --bench click_day                          # SQLite, 1000/s for 10 s
//!     BENCH_DB=postgres cargo bench --bench click_day        # PostgreSQL on 127.0.0.1:5432
//!     cargo bench --bench click_day -- --rate 1500 --seconds 10 [--busy-core] [--cold-only]
//!
//! `sportello serve` (this build) runs as a child process with its default configuration (job
//! workers on) on a fresh database, its e-mail going to a local SMTP server in this process. The
//! citizens (a session, an e-mail address and two complete drafts of the SAD request each) are
//! seeded directly before it starts: logging thousands of people in is not what is measured. The
//! load generator is open-loop: request i is due at t0 + i/rate and its latency is counted from
//! that due time, so a stalled server is not hidden. Phases:
//!
//! 1. **cold**: right after `/readyz` answers, every citizen sends `POST /domande/{id}/invia`, paced
//!    at `--rate` for `--seconds` (session, CSRF and origin, ownership, validation of every answer,
//!    the numbering transaction with its history, snapshot, outbox and receipt job);
//! 2. **receipts**: how long after the last answer every receipt e-mail (with its PDF) reached the
//!    SMTP server;
//! 3. **replay**: every request again, paced the same (a double click): it must create nothing;
//! 4. **burst**: `--burst` citizens send their second draft at the same instant;
//! 5. **raw database**: the same writes (the submission transaction, one draft each) from ten
//!    clients in this process straight to the database, for the rate the portal is compared with.
//!
//! Then the database is checked: every request answered with its receipt stored once, numbers
//! distinct and gapless per ente, one outbox event and one e-mail each; it exits non-zero if not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open_loop, report, BusyCore, Outcome, SmtpSink};
use portal::applications::store;
use portal::clock::{Clock, SystemClock};

struct Citizen {
    session: common::Session,
    /// One draft for the paced phase, one for the burst.
    drafts: [String; 2],
}

async fn seed(db: &portal::db::Db, from: usize, to: usize) -> Vec<Citizen> {
    let now = SystemClock.now_ms();
    let mut people = Vec::with_capacity(to - from);
    for i in from..to {
        let session =
            common::citizen_with_email(db, now, i, &format!("cittadino{i}@esempio.it")).await;
        let drafts = [
            common::sad_draft(db, now, &session.cf, i).await,
            common::sad_draft(db, now, &session.cf, i).await,
        ];
        people.push(Citizen { session, drafts });
    }
    people
}

#[tokio::main]
async fn main() {
    let rate: f64 = common::arg("--rate", 1000.0);
    let seconds: f64 = common::arg("--seconds", 10.0);
    let burst: usize = common::arg("--burst", 1000);
    let citizens = (rate * seconds).round() as usize;
    let burst = burst.min(citizens);
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!(
            "keeping {} (the portal's log is serve-1.log)",
            dir.path().display()
        );
    }
    let (url, backend) = common::fresh_database(dir.path()).await;

    // The schema and the demo's enti, by the portal itself; then the citizens, straight into it.
    let (server, _) = common::start_on(dir.path(), &url, |c| c.jobs.run = false).await;
    let db = server.db.clone();
    let seeding = Instant::now();
    let chunks = 8;
    let mut tasks = Vec::new();
    for k in 0..chunks {
        let db = db.clone();
        let (from, to) = (k * citizens / chunks, (k + 1) * citizens / chunks);
        tasks.push(tokio::spawn(async move { seed(&db, from, to).await }));
    }
    let mut people = Vec::with_capacity(citizens);
    for t in tasks {
        people.extend(t.await.unwrap());
    }
    // Statistics, as a database in service has them (the drafts of a click day are written over
    // the days before it; without them PostgreSQL plans the first submissions on guesses).
    sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    server.stop().await;
    let db = portal::db::Db::connect(&url, 10).await.unwrap();
    println!(
        "click day on {backend}: {citizens} citizens seeded in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let (smtp, smtp_url) = SmtpSink::start().await;
    let busy = std::env::args()
        .any(|a| a == "--busy-core")
        .then(BusyCore::start);
    let served = common::serve(
        dir.path(),
        &url,
        &[("SPORTELLO_EMAIL__SMTP_URL", smtp_url.clone())],
    )
    .await;
    println!(
        "sportello serve: ready {:.2} s after it was started{}",
        served.started_in.as_secs_f64(),
        if busy.is_some() {
            "; another process keeps one core busy"
        } else {
            ""
        }
    );
    let base = served.base.clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .unwrap();
    let people = Arc::new(people);
    let run = |which: usize, n: usize, rate: Option<f64>| {
        let (client, base, people) = (client.clone(), base.clone(), people.clone());
        open_loop(n, rate, move |i| {
            let (client, base, people) = (client.clone(), base.clone(), people.clone());
            async move {
                let c = &people[i];
                match common::send_draft(&client, &base, &c.session, &c.drafts[which]).await {
                    Ok(r) => (common::is_receipt(&r), r.status().to_string()),
                    Err(e) => (false, e.to_string()),
                }
            }
        })
    };

    // 1. Cold: from the first second after the start.
    let cold = run(0, citizens, Some(rate)).await;
    let peak_end = Instant::now();
    println!(
        "{}",
        report(&format!("cold, paced at {rate}/s for {seconds} s"), &cold)
    );
    let answered: Vec<&Outcome> = cold.iter().filter(|o| o.ok).collect();
    if std::env::args().any(|a| a == "--cold-only") {
        served.stop();
        return;
    }

    // 2. Receipts: each answered submission's e-mail reaches the SMTP server.
    let expected = answered.len();
    let waited = Instant::now();
    while smtp.count() < expected && waited.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_mail = smtp
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.1)
        .max()
        .unwrap_or(peak_end);
    println!(
        "receipts: {} of {expected} e-mailed; the last {:.1} s after the peak's last answer",
        smtp.count(),
        last_mail.saturating_duration_since(peak_end).as_secs_f64()
    );

    // 3. Replay: double clicks create nothing.
    let replay = run(0, citizens, Some(rate)).await;
    println!("{}", report(&format!("replay, paced at {rate}/s"), &replay));

    // 4. Burst: many at the same instant.
    let burst_run = run(1, burst, None).await;
    println!(
        "{}",
        report(&format!("burst of {burst} at once"), &burst_run)
    );
    drop(busy);

    // 5. The raw database: the same submission transaction, ten clients, one draft each.
    let rest: Vec<usize> = (burst..citizens).take(3000).collect();
    let raw_started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..10 {
        let (db, people, rest, next) = (db.clone(), people.clone(), rest.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&i) = rest.get(k) else { break };
                let c = &people[i];
                let sending = store::Sending {
                    now_ms: SystemClock.now_ms(),
                    id: c.drafts[1].clone(),
                    submission: submission(&c.session.cf, i),
                };
                store::submit_all(&db, &[sending]).await.unwrap();
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let raw_rate = rest.len() as f64 / raw_started.elapsed().as_secs_f64();
    let cold_rate = common::answered_rate(&cold);
    let burst_rate = common::answered_rate(&burst_run);
    println!(
        "raw database: {} submission transactions (one draft each, ten clients) in {:.2} s = {raw_rate:.0}/s; the portal paced {cold_rate:.0}/s ({:.2} of it), in a burst {burst_rate:.0}/s ({:.2} of it)",
        rest.len(),
        raw_started.elapsed().as_secs_f64(),
        cold_rate / raw_rate,
        burst_rate / raw_rate,
    );

    // The data check.
    let mut receipts: Vec<(usize, usize)> = answered.iter().map(|o| (o.i, 0)).collect();
    receipts.extend(burst_run.iter().filter(|o| o.ok).map(|o| (o.i, 1)));
    let mut lost = 0;
    for (i, which) in &receipts {
        let app = store::get(&db, &people[*i].drafts[*which]).await.unwrap();
        if app.and_then(|a| a.numero).is_none() {
            lost += 1;
        }
    }
    let rows = common::numbers_per_ente(&db).await;
    let stored: i64 = rows.iter().map(|r| r.1).sum();
    let gapless = rows.iter().all(|r| r.1 == r.2 && r.2 == r.3);
    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'pratica.inviata'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    // Each receipt e-mailed once: wait for the burst's, then no citizen has more e-mails than
    // submissions answered.
    let waited = Instant::now();
    let mailed = receipts.len() + rest.len();
    while smtp.count() < mailed && waited.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut per_recipient: std::collections::HashMap<String, usize> = Default::default();
    for (to, _) in smtp.received.lock().unwrap().iter() {
        *per_recipient.entry(to.clone()).or_default() += 1;
    }
    let mut sent_by: std::collections::HashMap<String, usize> = Default::default();
    for i in receipts.iter().map(|r| r.0).chain(rest.iter().copied()) {
        *sent_by
            .entry(format!("<cittadino{i}@esempio.it>"))
            .or_default() += 1;
    }
    let doubled_mail = per_recipient
        .iter()
        .filter(|(to, n)| **n > sent_by.get(*to).copied().unwrap_or(0))
        .count();
    let replay_ok = replay.iter().filter(|o| o.ok).count();
    let expected_stored = receipts.len() + rest.len();
    println!(
        "check: {} receipts, {stored} stored (with the raw database's {}), {events} events, {lost} lost, numbers distinct and gapless per ente: {gapless}; replay answered {replay_ok} of {} with the same receipt; {} e-mails, {doubled_mail} citizens e-mailed more than once for one pratica",
        receipts.len(),
        rest.len(),
        replay.len(),
        smtp.count(),
    );
    let sound = lost == 0
        && stored == expected_stored as i64
        && events == stored
        && gapless
        && replay_ok == answered.len()
        && doubled_mail == 0
        && smtp.count() == mailed;
    served.stop();
    if std::env::var_os("BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
    if !sound {
        eprintln!("click day: the data check FAILED");
        std::process::exit(1);
    }
}

/// The submission the portal would build for the SAD draft of citizen `i`.
fn submission(cf: &str, i: usize) -> store::Submission {
    let answers = common::sad_answers(cf);
    store::Submission {
        ente_code: if i.is_multiple_of(2) {
            "valleverde"
        } else {
            "montebello"
        }
        .into(),
        service_code: "sad".into(),
        applicant_cf: cf.to_string(),
        applicant_name: "Maria Esposito".into(),
        service_title: "Assistenza domiciliare (SAD)".into(),
        form_version: 1,
        term_days: 30,
        answers,
        summary: Vec::new(),
        declarations: vec!["Dichiaro".into(), "Dichiaro la quota".into()],
        slot_labels: Vec::new(),
        delegate: None,
    }
}
