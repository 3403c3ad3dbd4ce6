//! Many citizens booking appointments at once.
//!
//!     cargo bench --bench booking                          # SQLite, 1000 citizens
//!     BENCH_DB=postgres cargo bench --bench booking        # PostgreSQL on 127.0.0.1:5432
//!     cargo bench --bench booking -- --citizens 2000 --places 10
//!
//! `sportello serve` (this build) runs as a child process with its default configuration on a
//! fresh database, with the calendars and sessions seeded directly before it starts. Two phases,
//! through real HTTP:
//! 1. contention, right after the start: every citizen asks for the same time, which has
//!    `--places` places, at the same instant (`POST /appuntamenti/prenota/{sede}`; latency counted
//!    from that instant): exactly `--places` must get it, every other one a "posto non più
//!    disponibile" answer;
//! 2. bookings: every citizen books a whole appointment (hold, details, applicant, confirmation:
//!    four POSTs) at a random time of a calendar with 10 places per 10-minute slot for 30 days,
//!    trying another time when the chosen one is full.
//!
//! Then the database is checked: for every slot, the places taken equal the appointments holding
//! them and never exceed the capacity (overbookings must be zero), and every confirmation that
//! answered "prenotato" is booked once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::percentile;
use portal::appointments::calendar::{Closed, Week};
use portal::appointments::store::{self, Calendar};
use portal::clock::{Clock, SystemClock};
use rand::Rng;

fn calendar(id: &str, places: i64, hours: &str, slot_minutes: i64) -> Calendar {
    Calendar {
        id: id.into(),
        office_id: "vv-borgo".into(),
        name: id.into(),
        week: Week(std::array::from_fn(|_| hours.to_string())),
        slot_minutes,
        places,
        min_notice_minutes: 60,
        max_days: 30,
        cancel_minutes: 60,
        topics: vec!["vv-informazioni".into()],
        operators: vec![],
    }
}

fn report(label: &str, wall: Duration, mut latencies: Vec<Duration>, unit: &str, done: usize) {
    latencies.sort();
    println!(
        "{label}: {done} {unit} in {:.2} s = {:.0} {unit}/s; requests p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        wall.as_secs_f64(),
        done as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        percentile(&latencies, 1.0).as_secs_f64() * 1000.0,
    );
}

struct Client {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Client {
    /// POSTs a form; returns the status, the redirect target and the time it took.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, Duration) {
        let started = Instant::now();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .form(form)
            .send()
            .await;
        let elapsed = started.elapsed();
        match r {
            Ok(r) => {
                let to = r
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let status = r.status().as_u16();
                let _ = r.bytes().await;
                (status, to, elapsed)
            }
            Err(_) => (0, String::new(), elapsed),
        }
    }
}

#[tokio::main]
async fn main() {
    let citizens: usize = common::arg("--citizens", 1000);
    let places: i64 = common::arg("--places", 10);
    let dir = tempfile::tempdir().unwrap();
    let (url, backend) = common::fresh_database(dir.path()).await;
    let (server, _) = common::start_on(dir.path(), &url, |c| c.jobs.run = false).await;
    let db = server.db.clone();
    let now = SystemClock.now_ms();

    let contended = calendar("bench-contesa", places, "00:00-23:30", 30);
    let many = calendar("bench-molti", 10, "08:00-20:00", 10);
    for c in [&contended, &many] {
        store::save_calendar(&db, now, c).await.unwrap();
    }
    let first = contended.rules().window(now, &Closed::default())[0].1[0];
    let starts: Vec<i64> = many
        .rules()
        .window(now, &Closed::default())
        .into_iter()
        .flat_map(|(_, s)| s)
        .collect();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(citizens)
        .build()
        .unwrap();
    let mut sessions = Vec::with_capacity(citizens);
    for i in 0..citizens {
        sessions.push(common::citizen(&db, now, i).await);
    }
    // Statistics, as a database in service has them.
    sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    server.stop().await;
    let db = portal::db::Db::connect(&url, 4).await.unwrap();
    let served = common::serve(dir.path(), &url, &[]).await;
    let base = served.base.clone();
    let clients: Vec<Client> = sessions
        .into_iter()
        .map(|s| Client {
            http: http.clone(),
            base: base.clone(),
            cookie: format!("sportello_session={}", s.token),
            csrf: s.csrf,
        })
        .collect();
    let clients = Arc::new(clients);
    println!(
        "booking on {backend}: {citizens} citizens; {places} places on the contended time, {} times × 10 places on the other calendar",
        starts.len()
    );

    // 1. Contention: everybody on the same time at once, from the first second after the start.
    let slot = format!("{}@{first}", contended.id);
    let answers = {
        let clients = clients.clone();
        common::open_loop(citizens, None, move |i| {
            let (clients, slot) = (clients.clone(), slot.clone());
            async move {
                let (status, _, _) = clients[i]
                    .post("/appuntamenti/prenota/vv-borgo", &[("orario", &slot)])
                    .await;
                (status == 303 || status == 409, status.to_string())
            }
        })
        .await
    };
    let held = answers.iter().filter(|a| a.what == "303").count();
    let full = answers.iter().filter(|a| a.what == "409").count();
    let other = answers.len() - held - full;
    println!(
        "{}",
        common::report("contention, all at once, cold", &answers)
    );
    println!("  {held} held, {full} told \"posto non più disponibile\", {other} other answers");

    // 2. Whole bookings at random times.
    let starts = Arc::new(starts);
    let gate = Arc::new(tokio::sync::Barrier::new(citizens + 1));
    let mut tasks = Vec::new();
    for i in 0..citizens {
        let (clients, gate, starts) = (clients.clone(), gate.clone(), starts.clone());
        let calendar_id = many.id.clone();
        tasks.push(tokio::spawn(async move {
            let c = &clients[i];
            let mut latencies = Vec::new();
            gate.wait().await;
            for _attempt in 0..5 {
                let start = starts[rand::rng().random_range(0..starts.len())];
                let (status, to, t) = c
                    .post(
                        "/appuntamenti/prenota/vv-borgo",
                        &[("orario", &format!("{calendar_id}@{start}"))],
                    )
                    .await;
                latencies.push(t);
                if status != 303 {
                    continue;
                }
                let id = to
                    .trim_start_matches("/appuntamenti/")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                for (path, form) in [
                    (
                        format!("/appuntamenti/{id}/dettagli"),
                        vec![
                            ("motivo", "vv-informazioni"),
                            ("descrizione", "Informazioni"),
                        ],
                    ),
                    (
                        format!("/appuntamenti/{id}/richiedente"),
                        vec![("email", "maria@example.it"), ("telefono", "")],
                    ),
                    (format!("/appuntamenti/{id}/conferma"), vec![]),
                ] {
                    let (_, to, t) = c.post(&path, &form).await;
                    latencies.push(t);
                    if to.ends_with("?prenotato=1") {
                        return (Some(id), latencies);
                    }
                }
                return (None, latencies);
            }
            (None, latencies)
        }));
    }
    gate.wait().await;
    let wall = Instant::now();
    let mut booked = Vec::new();
    let mut latencies = Vec::new();
    for t in tasks {
        let (id, l) = t.await.unwrap();
        booked.extend(id);
        latencies.extend(l);
    }
    let wall = wall.elapsed();
    report(
        "bookings (4 POSTs each)",
        wall,
        latencies,
        "bookings",
        booked.len(),
    );

    // The check: no slot overbooked, counters equal to the appointments holding places.
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT s.calendar_id, s.capacity, s.taken, \
         (SELECT COUNT(*) FROM appointments a WHERE a.calendar_id = s.calendar_id AND a.starts_at = s.starts_at \
          AND a.status IN ('trattenuto', 'prenotato')) FROM slots s",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let overbooked = rows.iter().filter(|r| r.3 > r.1 || r.2 > r.1).count();
    let drift = rows.iter().filter(|r| r.2 != r.3).count();
    let mut stored = 0;
    for id in &booked {
        let status: String = sqlx::query_scalar("SELECT status FROM appointments WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        stored += usize::from(status == "prenotato");
    }
    println!(
        "check: {} slots used, {overbooked} overbooked, {drift} with counters out of step; contended time: {held} held of {places}; {stored}/{} confirmed bookings stored",
        rows.len(),
        booked.len()
    );
    served.stop();
    if overbooked > 0 || drift > 0 || held as i64 != places || stored != booked.len() {
        eprintln!("booking: the data check FAILED");
        std::process::exit(1);
    }
}
