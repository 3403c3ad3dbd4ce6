//! What the benchmarks share: a fresh database, Sportello started in the process, citizens with a
//! session seeded directly (the login is not what is measured), percentiles.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use portal::auth::{Person, Principal};
use portal::clock::SystemClock;
use portal::config::Config;
use portal::db::Db;
use portal::domain::CodiceFiscale;
use portal::server::Server;
use portal::web::session::{self, SessionData};
use sqlx::Connection;

/// Sportello on a fresh database of `BENCH_DB` (sqlite, the default, or postgres at
/// `BENCH_POSTGRES_URL`); returns the server, its base URL and the backend's name.
pub async fn start(dir: &std::path::Path) -> (Server, String, String) {
    let (url, backend) = fresh_database(dir).await;
    let (server, base) = start_on(dir, &url, |_| {}).await;
    (server, base, backend)
}

/// A fresh database of `BENCH_DB`: its URL and the backend's name.
pub async fn fresh_database(dir: &std::path::Path) -> (String, String) {
    let backend = std::env::var("BENCH_DB").unwrap_or_else(|_| "sqlite".into());
    let url = match backend.as_str() {
        "sqlite" => format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
        "postgres" => {
            sqlx::any::install_default_drivers();
            let admin = std::env::var("BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
            sqlx::query("DROP DATABASE IF EXISTS sportello_bench WITH (FORCE)")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("CREATE DATABASE sportello_bench")
                .execute(&mut conn)
                .await
                .unwrap();
            // The same server and options (e.g. `?sslmode=disable`), the benchmark's database.
            let (address, options) = admin.split_once('?').unwrap_or((&admin, ""));
            let base = address.rsplit_once('/').unwrap().0;
            if options.is_empty() {
                format!("{base}/sportello_bench")
            } else {
                format!("{base}/sportello_bench?{options}")
            }
        }
        other => panic!("BENCH_DB={other}: use sqlite or postgres"),
    };
    (url, backend)
}

/// Sportello on the database at `url`, its configuration changed by `customise`.
pub async fn start_on(
    dir: &std::path::Path,
    url: &str,
    customise: impl FnOnce(&mut Config),
) -> (Server, String) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        static_dir: root.join("static"),
        forms_dir: root.join("forms"),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".into();
    config.database.url = Some(url.to_string().into());
    config.database.max_connections = 16;
    customise(&mut config);
    let server = Server::start(config, Arc::new(SystemClock)).await.unwrap();
    let base = format!("http://{}", server.addr);
    (server, base)
}

/// A citizen's session: the cookie value and its CSRF token.
pub struct Session {
    pub cf: String,
    pub token: String,
    pub csrf: String,
}

pub async fn citizen(db: &Db, now: i64, i: usize) -> Session {
    let cf = CodiceFiscale::synthetic(i).expect("some check character fits");
    let person = Person {
        cf: cf.clone(),
        given_name: "Maria".into(),
        family_name: "Esposito".into(),
        spid_level: 2,
    };
    let (token, s) = session::create_in(
        db,
        now,
        SessionData {
            principal: Some(Principal::Citizen { person }),
            ..SessionData::default()
        },
    )
    .await
    .unwrap();
    Session {
        cf: cf.to_string(),
        token,
        csrf: s.data.csrf,
    }
}

/// Complete answers to the SAD request, for `cf`: a draft ready to send.
pub fn sad_answers(cf: &str) -> portal::applications::form::Answers {
    use serde_json::Value;
    let mut a = portal::applications::form::Answers::new();
    for (k, v) in [
        ("richiedente_nome", "Maria"),
        ("richiedente_cognome", "Esposito"),
        ("richiedente_cf", cf),
        ("email", ""),
        ("telefono", "3331234567"),
        ("per_chi", "me"),
        ("indirizzo_assistenza", "Via Roma 1"),
        ("bisogno", "casa"),
        (
            "descrizione",
            "Vivo da sola e non riesco più a fare le pulizie di casa.",
        ),
        ("ore_settimanali", "4"),
        ("presenta_isee", "no"),
    ] {
        a.insert(k.into(), Value::String(v.into()));
    }
    a.insert("vive_solo".into(), Value::Bool(true));
    a
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// `sportello serve` (this build's binary) as a child process on `url`, with its default
/// configuration but for the address, the data folder and what `env` sets; its log goes to
/// `dir/serve-<n>.log`. Returns when it says it is listening and `/readyz` answers 200.
pub struct Served {
    pub child: std::process::Child,
    pub base: String,
    pub log: std::path::PathBuf,
    /// From spawning the process to `/readyz` answering.
    pub started_in: Duration,
}

pub async fn serve(dir: &std::path::Path, url: &str, env: &[(&str, String)]) -> Served {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let log = (1..)
        .map(|n| dir.join(format!("serve-{n}.log")))
        .find(|p| !p.exists())
        .unwrap();
    let spawned = std::time::Instant::now();
    let program = std::env::var("BENCH_SPORTELLO")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sportello").to_string());
    let mut command = std::process::Command::new(program);
    command
        .current_dir(dir)
        .env("SPORTELLO_DATA_DIR", dir.join("data"))
        .env("SPORTELLO_HTTP__ADDR", "127.0.0.1:0")
        .env("SPORTELLO_STATIC_DIR", root.join("static"))
        .env("SPORTELLO_FORMS_DIR", root.join("forms"))
        .env("SPORTELLO_DATABASE__URL", url)
        .env("OMP_THREAD_LIMIT", "1")
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let Some(addr) = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
    else {
        panic!(
            "sportello serve did not start: {line}{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == reqwest::StatusCode::OK {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Served {
        child,
        base,
        log,
        started_in: spawned.elapsed(),
    }
}

impl Served {
    /// SIGTERM, then waits for the process to finish what it was doing.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// What one request of a load run came to: when it was due, when it was answered, how.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub i: usize,
    pub ok: bool,
    /// From the time the request was due (not when it was sent) to its answer.
    pub latency: Duration,
    /// Since the start of the run, when the answer came.
    pub answered_at: Duration,
    pub what: String,
}

/// An open-loop run: request `i` is due at `t0 + i / rate` (all at `t0` when `rate` is None),
/// sent then whatever happened to the others, and its latency counted from that due time, so a
/// stalled server (or generator) is not hidden by requests that were sent late.
pub async fn open_loop<F, Fut>(n: usize, rate: Option<f64>, request: F) -> Vec<Outcome>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (bool, String)> + Send + 'static,
{
    let request = Arc::new(request);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = t0 + rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(i as f64 / r));
        tokio::time::sleep_until(due).await;
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let (ok, what) = request(i).await;
            let now = tokio::time::Instant::now();
            Outcome {
                i,
                ok,
                latency: now - due,
                answered_at: now - t0,
                what,
            }
        }));
    }
    let mut outcomes = Vec::with_capacity(n);
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes
}

/// One line about a run: answered per second, latency percentiles from the due time, errors.
pub fn report(label: &str, outcomes: &[Outcome]) -> String {
    let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    latencies.sort();
    let ok = outcomes.iter().filter(|o| o.ok).count();
    let last = outcomes
        .iter()
        .map(|o| o.answered_at)
        .max()
        .unwrap_or_default();
    let early = outcomes
        .iter()
        .filter(|o| o.answered_at <= Duration::from_millis(500))
        .count();
    let mut errors: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.what.as_str())
        .collect();
    errors.sort();
    errors.dedup();
    format!(
        "{label}: {} requests, {ok} answered as expected in {:.2} s = {:.0}/s; from the due time p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} answers in the first 500 ms; {} errors {:?}",
        outcomes.len(),
        last.as_secs_f64(),
        ok as f64 / last.as_secs_f64().max(1e-9),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        percentile(&latencies, 1.0).as_secs_f64() * 1000.0,
        early,
        outcomes.len() - ok,
        errors.iter().take(5).collect::<Vec<_>>(),
    )
}

/// Requests answered as expected per second, from the start of the run to its last answer.
pub fn answered_rate(outcomes: &[Outcome]) -> f64 {
    let last = outcomes
        .iter()
        .map(|o| o.answered_at)
        .max()
        .unwrap_or_default();
    outcomes.iter().filter(|o| o.ok).count() as f64 / last.as_secs_f64().max(1e-9)
}

/// A citizen with a session (as [`citizen`]) and an e-mail address on their record, where the
/// receipts are sent.
pub async fn citizen_with_email(db: &Db, now: i64, i: usize, email: &str) -> Session {
    let s = citizen(db, now, i).await;
    sqlx::query(
        "INSERT INTO people (cf, given_name, family_name, email, created_at, updated_at) VALUES ($1, 'Maria', 'Esposito', $2, $3, $3)",
    )
    .bind(&s.cf)
    .bind(email)
    .bind(now)
    .execute(&db.pool)
    .await
    .unwrap();
    s
}

/// A complete SAD draft of `cf`, of one of the demo's two enti by `i`.
pub async fn sad_draft(db: &Db, now: i64, cf: &str, i: usize) -> String {
    portal::applications::store::create_draft(
        db,
        now,
        &portal::applications::store::NewDraft {
            ente_code: if i.is_multiple_of(2) {
                "valleverde"
            } else {
                "montebello"
            },
            service_code: "sad",
            form_version: 1,
            applicant_cf: cf,
            answers: &sad_answers(cf),
        },
    )
    .await
    .unwrap()
}

/// "Conferma e invia" of `draft`, as the citizen's browser sends it to `base`.
pub async fn send_draft(
    client: &reqwest::Client,
    base: &str,
    s: &Session,
    draft: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    client
        .post(format!("{base}/domande/{draft}/invia"))
        .header("Cookie", format!("sportello_session={}", s.token))
        .header("Origin", base)
        .form(&[
            ("csrf_token", s.csrf.as_str()),
            ("dichiarazione_veridicita", "si"),
            ("dichiarazione_quota", "si"),
        ])
        .send()
        .await
}

/// The answer is the receipt: 303 to the pratica's `?inviata=1`.
pub fn is_receipt(r: &reqwest::Response) -> bool {
    r.status() == reqwest::StatusCode::SEE_OTHER
        && r.headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .is_some_and(|l| l.ends_with("?inviata=1"))
}

/// Per ente, of the pratiche numbered: (ente, how many, distinct numbers, the highest). Gapless
/// and unique when the three counts are equal.
pub async fn numbers_per_ente(db: &Db) -> Vec<(String, i64, i64, i64)> {
    sqlx::query_as(
        "SELECT ente_code, COUNT(*), COUNT(DISTINCT numero_seq), MAX(numero_seq) FROM applications \
         WHERE numero IS NOT NULL GROUP BY ente_code ORDER BY ente_code",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// p99 of a run's latencies, in ms.
pub fn p99_ms(outcomes: &[Outcome]) -> f64 {
    let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    latencies.sort();
    percentile(&latencies, 0.99).as_secs_f64() * 1000.0
}

/// A local SMTP server that takes every message and counts it (per recipient), noting when the
/// last one came: where the portal's e-mails go in a benchmark.
#[derive(Clone, Default)]
pub struct SmtpSink {
    pub received: Arc<std::sync::Mutex<Vec<(String, std::time::Instant)>>>,
}

impl SmtpSink {
    /// Listens on a free local port; returns the sink and its `smtp://` URL.
    pub async fn start() -> (SmtpSink, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let sink = SmtpSink::default();
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(stream).await;
                });
            }
        });
        (sink, url)
    }

    async fn session(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 sink ESMTP\r\n").await?;
        let mut rcpt = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                write.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                rcpt = line[8..].trim().to_string();
                write.write_all(b"250 OK\r\n").await?;
            } else if upper.starts_with("DATA") {
                write.write_all(b"354 go on\r\n").await?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                }
                self.received
                    .lock()
                    .unwrap()
                    .push((rcpt.clone(), std::time::Instant::now()));
                write.write_all(b"250 queued\r\n").await?;
            } else if upper.starts_with("QUIT") {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                write.write_all(b"250 OK\r\n").await?;
            }
        }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// Another process keeping one core busy (a spinning shell) until dropped.
pub struct BusyCore(std::process::Child);

impl BusyCore {
    pub fn start() -> BusyCore {
        BusyCore(
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for BusyCore {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
