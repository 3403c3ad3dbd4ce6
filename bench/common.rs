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
            admin.rsplit_once('/').unwrap().0.to_string() + "/sportello_bench"
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
