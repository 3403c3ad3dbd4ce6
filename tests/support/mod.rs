//! `spawn_app()`: Sportello on a random port with a fresh database, for one test.
//!
//! The backend comes from `TEST_DB`: `sqlite` (default) or `postgres` (a new database per test on
//! `TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`). A PostgreSQL run that
//! cannot reach its server fails; it never skips.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use portal::clock::{Clock, ManualClock, SystemClock};
use portal::config::{Backend, Config};
use portal::db::Db;
use portal::server::Server;
use reqwest::cookie::CookieStore;
use reqwest::StatusCode;
use sqlx::Connection;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn backend() -> Backend {
    match std::env::var("TEST_DB").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("TEST_DB={other}: use sqlite or postgres"),
    }
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);
static CLEANUP: Once = Once::new();

/// A database for one test: a file in its temporary folder, or a new PostgreSQL database.
pub struct TestDatabase {
    pub url: String,
    postgres_name: Option<String>,
}

impl TestDatabase {
    pub async fn create(dir: &Path) -> TestDatabase {
        TestDatabase::create_on(dir, backend()).await
    }

    /// On `backend` whatever `TEST_DB` says (a test of what only PostgreSQL serves).
    pub async fn create_on(dir: &Path, backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => TestDatabase {
                url: format!("sqlite://{}?mode=rwc", dir.join("sportello.db").display()),
                postgres_name: None,
            },
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let admin = postgres_admin_url();
                let mut conn = sqlx::AnyConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("TEST_DB=postgres but PostgreSQL is unreachable at {admin}: {e}")
                    });
                let pid = std::process::id();
                let stale: Vec<(String,)> = if CLEANUP.is_completed() {
                    Vec::new()
                } else {
                    sqlx::query_as(
                        "SELECT datname FROM pg_database WHERE datname LIKE 'sportello_t_%'",
                    )
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default()
                };
                CLEANUP.call_once(|| {});
                for (name,) in stale {
                    if !name.starts_with(&format!("sportello_t_{pid}_")) {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                }
                let name = format!(
                    "sportello_t_{pid}_{}",
                    DATABASES.fetch_add(1, Ordering::SeqCst)
                );
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("creating the test database: {e}"));
                let _ = conn.close().await;
                // Evidence for .ci/test that the PostgreSQL run really happened.
                let marker = root().join("target/test-backends");
                let _ = std::fs::create_dir_all(&marker);
                let _ = std::fs::write(marker.join("postgres.ran"), b"yes");
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .unwrap_or(admin);
                TestDatabase {
                    url: format!("{base}/{name}"),
                    postgres_name: Some(name),
                }
            }
        }
    }

    /// Makes the database unreachable for whoever is connected to it.
    pub async fn make_unreachable(&self, db: &Db) {
        match &self.postgres_name {
            Some(name) => {
                let mut conn = sqlx::AnyConnection::connect(&postgres_admin_url())
                    .await
                    .expect("admin connection");
                sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .expect("drop");
            }
            // An embedded database cannot go away under its process; closing the pool is the
            // closest equivalent (every later query fails).
            None => db.pool.close().await,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_name.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let mut conn = sqlx::AnyConnection::connect(&postgres_admin_url())
                        .await
                        .ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub url: String,
    pub config: Config,
    pub server: Option<Server>,
    pub client: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
    pub clock: ManualClock,
    pub database: TestDatabase,
    /// Holds the data directory (database file, keys) until the test ends.
    pub _dir: tempfile::TempDir,
}

pub fn test_config(dir: &Path, database_url: &str) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        static_dir: root().join("static"),
        forms_dir: root().join("forms"),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".into();
    config.database.url = Some(database_url.to_string().into());
    // One runner per lane.
    config.jobs.lanes.alerts.workers = 1;
    config.jobs.lanes.documents.workers = 1;
    // Uploads are inspected by the real binary in a child process (the default, this program,
    // is the test binary here).
    config.documents.intake_program = Some(env!("CARGO_BIN_EXE_sportello").into());
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    // `TEST_LOG=1` shows the server's logs (e.g. why a login was refused).
    if std::env::var_os("TEST_LOG").is_some() {
        portal::telemetry::init_logging(&portal::config::LogConfig::default());
    }
    let dir = tempfile::tempdir().expect("temporary folder");
    let database = TestDatabase::create(dir.path()).await;
    let mut config = test_config(dir.path(), &database.url);
    customise(&mut config);
    let clock = ManualClock::new(SystemClock.now_ms());
    let server = Server::start(config.clone(), Arc::new(clock.clone()))
        .await
        .expect("Sportello starts");
    let url = format!("http://{}", server.addr);
    let (client, jar) = new_client();
    TestApp {
        url,
        config,
        server: Some(server),
        client,
        jar,
        clock,
        database,
        _dir: dir,
    }
}

/// A browser-like client: a cookie jar, and redirects left to the test to follow.
pub fn new_client() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        // Idle connections are dropped before the server's keep-alive (5 s) ends them, so that a
        // request never goes out on a connection the server is closing at that moment.
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("HTTP client");
    (client, jar)
}

/// The value of `name="…" value="…"` in a page.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_default()
}

/// Part `index` of a compact JWT (0 the header, 1 the claims) as JSON.
pub fn json_segment(jwt: &str, index: usize) -> serde_json::Value {
    use base64::Engine;
    let segment = jwt.trim().split('.').nth(index).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segment)
            .unwrap(),
    )
    .unwrap()
}

/// Where the identity provider sends the browser back to: the callback URL with code and state.
pub struct CallbackUrl(pub String);

impl TestApp {
    pub fn db(&self) -> &Db {
        &self.server.as_ref().expect("server running").db
    }

    pub fn absolute(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.url)
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.absolute(path))
            .send()
            .await
            .expect("GET")
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.absolute(path))
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// The session cookie as the browser holds it.
    pub fn session_cookie(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.url).ok()?;
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix("sportello_session=").map(str::to_string))
    }

    /// Home → login → identity provider → persona chosen; returns where the provider redirects.
    pub async fn login_until_callback(&self, persona: &str) -> CallbackUrl {
        self.login_until_callback_with(persona, "").await
    }

    /// The same, with the development provider misbehaving as `fault` says (see its page).
    pub async fn login_until_callback_with(&self, persona: &str, fault: &str) -> CallbackUrl {
        let start = self
            .get("/auth/login?provider=spid&next=/area-personale")
            .await;
        assert_eq!(start.status(), StatusCode::SEE_OTHER);
        self.choose_at_provider(&location(&start), persona, fault)
            .await
    }

    /// On the development provider's page at `idp_url`: picks `persona` (and a misbehaviour);
    /// returns where the provider sends the browser back to.
    pub async fn choose_at_provider(
        &self,
        idp_url: &str,
        persona: &str,
        fault: &str,
    ) -> CallbackUrl {
        let idp_page = self.get(idp_url).await;
        assert_eq!(idp_page.status(), StatusCode::OK);
        let html = idp_page.text().await.expect("IdP page");
        let request_id = hidden_field(&html, "request_id").expect("request_id");
        let csrf = hidden_field(&html, "csrf_token").expect("csrf_token");
        let chosen = self
            .post_form(
                "/dev-idp/authorize",
                &[
                    ("csrf_token", &csrf),
                    ("request_id", &request_id),
                    ("persona", persona),
                    ("fault", fault),
                    ("action", "accedi"),
                ],
            )
            .await;
        assert_eq!(chosen.status(), StatusCode::SEE_OTHER);
        CallbackUrl(location(&chosen))
    }

    /// The whole login; returns the area personale page.
    pub async fn login(&self, persona: &str) -> String {
        let callback = self.login_until_callback(persona).await;
        self.complete_login(&callback.0).await
    }

    /// The provider's callback, taken: the person lands on the area personale, whose page is
    /// returned.
    pub async fn complete_login(&self, callback: &str) -> String {
        let back = self.get(callback).await;
        assert_eq!(
            back.status(),
            StatusCode::SEE_OTHER,
            "callback: {}",
            back.text().await.unwrap_or_default()
        );
        assert_eq!(location(&back), "/area-personale");
        let area = self.get("/area-personale").await;
        assert_eq!(area.status(), StatusCode::OK);
        area.text().await.expect("area personale")
    }

    /// The CSRF token of the current session, read from a page.
    pub async fn csrf_token(&self) -> String {
        let html = self
            .get("/area-personale")
            .await
            .text()
            .await
            .expect("page");
        hidden_field(&html, "csrf_token").expect("csrf token on the page")
    }

    /// The body of the page at `path`.
    pub async fn text(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("page body")
    }

    /// Logs out through the page's form.
    pub async fn logout(&self) -> reqwest::Response {
        let csrf = self.csrf_token().await;
        self.post_form("/esci", &[("csrf_token", &csrf)]).await
    }

    /// Stops the server and starts it again on the same address, data and database, with changes.
    pub async fn restart_with(&mut self, customise: impl FnOnce(&mut Config)) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let mut config = self.config.clone();
        config.http.addr = self.url.trim_start_matches("http://").to_string();
        customise(&mut config);
        let server = Server::start(config.clone(), Arc::new(self.clock.clone()))
            .await
            .expect("Sportello restarts");
        self.config = config;
        self.server = Some(server);
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// An S3-compatible server (moto's, installed by `.ci/setup --tests` into `target/test-tools/s3`)
/// on loopback, with one bucket; it keeps what it holds in memory.
pub struct S3Server {
    pub port: u16,
    pub bucket: String,
    child: std::process::Child,
}

impl S3Server {
    pub async fn start(bucket: &str) -> S3Server {
        let port = free_port();
        let python = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/test-tools/s3/bin/python"
        );
        let mut child = std::process::Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto's S3 server (installed by .ci/setup --tests)");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client
                .put(format!("http://127.0.0.1:{port}/{bucket}"))
                .send()
                .await
            {
                assert!(r.status().is_success(), "bucket: {}", r.status());
                return S3Server {
                    port,
                    bucket: bucket.into(),
                    child,
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the S3 server did not start on port {port}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The object's address, read and written here as any S3 client would.
    pub fn object(&self, key: &str) -> String {
        format!("{}/{}/{key}", self.endpoint(), self.bucket)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real SMTP server (aiosmtpd, installed by `.ci/setup --tests`) on loopback, keeping what it
/// receives in a maildir.
pub struct SmtpServer {
    pub port: u16,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl SmtpServer {
    pub async fn start(port: u16) -> SmtpServer {
        let dir = tempfile::tempdir().expect("maildir");
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("aiosmtpd (python3-aiosmtpd, installed by .ci/setup --tests)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return SmtpServer { port, child, dir };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, raw.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let new = self.dir.path().join("maildir").join("new");
        let mut files: Vec<_> = std::fs::read_dir(new)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
    }

    /// Waits (up to 20 s, for the job runner) until `count` messages match `wanted`; returns them.
    pub async fn wait_for(
        &self,
        count: usize,
        wanted: impl Fn(&mail_parser::Message<'_>) -> bool,
    ) -> Vec<Vec<u8>> {
        for _ in 0..400 {
            let found: Vec<Vec<u8>> = self
                .messages()
                .into_iter()
                .filter(|raw| {
                    mail_parser::MessageParser::default()
                        .parse(raw)
                        .is_some_and(|m| wanted(&m))
                })
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no e-mail as expected arrived within 20 s");
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
