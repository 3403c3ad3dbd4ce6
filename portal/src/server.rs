//! Builds Sportello: configuration checked, database migrated, keys loaded, listener bound (port 0
//! in tests), web server and job workers started. Returns the address and a handle to stop it all.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_files::Files;
use actix_web::dev::ServerHandle;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use sha2::{Digest, Sha256};
use tera::Tera;

use crate::applications::catalogue::Catalogue;
use crate::auth::dev_idp::{personas, DevIdp};
use crate::auth::keys::{self, PortalKeys};
use crate::auth::oidc::RelyingParty;
use crate::auth::IdentityProvider;
use crate::clock::SharedClock;
use crate::config::{Config, Mode};
use crate::db::Db;
use crate::jobs::{Handlers, JobContext, Worker, WorkerHandle};
use crate::telemetry::Metrics;
use crate::web::session::{self, PurgeSessions};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Keys(#[from] crate::auth::keys::KeyError),
    #[error(transparent)]
    Catalogue(#[from] crate::applications::catalogue::CatalogueError),
    #[error("templates: {0}")]
    Templates(String),
    #[error("{0}")]
    Setup(String),
}

/// Everything a request handler may need; shared by all workers.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub public_url: String,
    pub db: Db,
    pub clock: SharedClock,
    pub templates: Tera,
    pub keys: PortalKeys,
    pub metrics: Arc<Metrics>,
    pub catalogue: Catalogue,
    pub relying_party: RelyingParty,
    pub identity_providers: Vec<IdentityProvider>,
    pub dev_idp: Option<Box<DevIdp>>,
    pub asset_version: String,
}

impl AppState {
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// `scheme://host[:port]` of the public URL.
    pub fn public_origin(&self) -> String {
        url::Url::parse(&self.public_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| self.public_url.clone())
    }
}

/// Opens the database of `config` and applies the migrations.
pub async fn migrate(config: &Config) -> Result<Db, StartError> {
    config.validate()?;
    let db = Db::connect(&config.database_url(), config.database.max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

/// The enti and staff roles of the demo (development mode only).
async fn seed_demo(db: &Db) -> Result<(), sqlx::Error> {
    for (code, name) in personas::DEMO_ENTI {
        sqlx::query("INSERT INTO enti (code, name) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING")
            .bind(*code)
            .bind(*name)
            .execute(&db.pool)
            .await?;
    }
    for (cf, ente, role) in personas::DEMO_STAFF {
        sqlx::query("INSERT INTO staff_roles (cf, ente_code, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(*cf)
            .bind(*ente)
            .bind(*role)
            .execute(&db.pool)
            .await?;
    }
    Ok(())
}

/// A short hash of the static assets' identity, appended to their URLs so they can be cached for long.
fn asset_version(static_dir: &Path) -> String {
    let mut hasher = Sha256::new();
    for rel in ["package.json", "css/sportello.css"] {
        if let Ok(bytes) = std::fs::read(static_dir.join(rel)) {
            hasher.update(&bytes);
        }
    }
    hasher.update(env!("CARGO_PKG_VERSION"));
    hasher
        .finalize()
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct Server {
    pub addr: SocketAddr,
    pub public_url: String,
    pub db: Db,
    handle: ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: WorkerHandle,
}

impl Server {
    pub async fn start(config: Config, clock: SharedClock) -> Result<Server, StartError> {
        config.validate()?;
        std::fs::create_dir_all(config.data_dir.join("files")).map_err(|e| {
            StartError::Setup(format!("data_dir {}: {e}", config.data_dir.display()))
        })?;
        let bootstrap = config.static_dir.join("node_modules/bootstrap-italia/dist");
        if !bootstrap.is_dir() {
            return Err(StartError::Setup(format!(
                "Bootstrap Italia is not installed under {}: run .ci/setup (or `npm ci --prefix {}`)",
                bootstrap.display(),
                config.static_dir.display()
            )));
        }
        let db = migrate(&config).await?;
        if config.mode == Mode::Development {
            seed_demo(&db).await.map_err(crate::db::DbError::from)?;
        }
        let keys = PortalKeys::load(&config)?;
        let catalogue = Catalogue::load(&config.forms_dir)?;
        let templates =
            crate::web::templates::load().map_err(|e| StartError::Templates(e.to_string()))?;

        let listener = TcpListener::bind(&config.http.addr)
            .map_err(|e| StartError::Setup(format!("http.addr {}: {e}", config.http.addr)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Setup(e.to_string()))?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let client_id = config
            .auth
            .client_id
            .clone()
            .unwrap_or_else(|| public_url.clone());
        let relying_party = RelyingParty::new(
            client_id.clone(),
            format!("{public_url}/auth/callback"),
            keys.signing.clone(),
            keys.encryption.clone(),
        )
        .map_err(|e| StartError::Setup(e.to_string()))?;

        let (dev_idp, identity_providers) = if config.dev_idp_enabled() {
            if config.mode == Mode::Production {
                return Err(StartError::Setup(
                    "the development identity provider is refused in production mode".into(),
                ));
            }
            let idp_key =
                keys::read_or_generate(&keys::key_dir(&config.data_dir)?.join("dev-idp.pem"))?;
            let idp = DevIdp::new(
                &public_url,
                idp_key,
                client_id,
                keys.signing.public_jwk("sig", "RS256"),
                keys.encryption.public_jwk("enc", "RSA-OAEP-256"),
            );
            let providers = vec![
                IdentityProvider {
                    id: "spid".into(),
                    label: "SPID (identità di prova)".into(),
                    issuer: idp.issuer.clone(),
                },
                IdentityProvider {
                    id: "cie".into(),
                    label: "CIE (identità di prova)".into(),
                    issuer: idp.issuer.clone(),
                },
            ];
            (Some(Box::new(idp)), providers)
        } else {
            (None, Vec::new())
        };

        let metrics = Arc::new(Metrics::new());
        let state = web::Data::new(AppState {
            asset_version: asset_version(&config.static_dir),
            public_url: public_url.clone(),
            db: db.clone(),
            clock: clock.clone(),
            templates,
            keys,
            metrics: metrics.clone(),
            catalogue,
            relying_party,
            identity_providers,
            dev_idp,
            config: config.clone(),
        });

        let https = public_url.starts_with("https://");
        let static_dir = config.static_dir.clone();
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::FormConfig::default().limit(256 * 1024))
                .wrap(from_fn(crate::web::security::session_and_csrf))
                .wrap(ErrorHandlers::new().default_handler(crate::web::error::render_error_page))
                .wrap(crate::web::security::headers(https))
                .wrap(from_fn(crate::web::telemetry))
                .service(
                    web::scope("/static")
                        .wrap(from_fn(crate::web::security::long_cache))
                        .service(Files::new(
                            "/bootstrap-italia",
                            static_dir.join("node_modules/bootstrap-italia/dist"),
                        ))
                        .service(Files::new("/css", static_dir.join("css"))),
                )
                .configure(crate::web::health::routes)
                .configure(crate::pages::routes)
                .configure(crate::auth::routes)
                .configure(crate::auth::federation::routes)
                .configure(crate::citizen::routes)
                .configure(crate::auth::dev_idp::routes)
        })
        .listen(listener)
        .map_err(|e| StartError::Setup(e.to_string()))?
        .disable_signals()
        .shutdown_timeout(10)
        .run();
        let handle = server.handle();
        let server = tokio::spawn(server);

        let mut handlers: Handlers = HashMap::new();
        handlers.insert(
            session::PURGE_JOB,
            Arc::new(PurgeSessions {
                idle_ms: config.auth.session_idle_minutes * 60_000,
                absolute_ms: config.auth.session_absolute_hours * 3_600_000,
            }),
        );
        session::schedule_purge(&db, clock.now_ms(), 60_000)
            .await
            .map_err(crate::db::DbError::from)?;
        let workers = Worker {
            ctx: JobContext {
                db: db.clone(),
                clock,
            },
            handlers,
            config: config.jobs.clone(),
            metrics,
            poll_interval: Duration::from_millis(500),
        }
        .spawn();

        tracing::info!(%addr, public_url = %public_url, mode = ?config.mode, backend = ?db.backend, "Sportello is serving");
        Ok(Server {
            addr,
            public_url,
            db,
            handle,
            server,
            workers,
        })
    }

    /// Stops accepting requests, finishes those in flight, stops the workers, closes the database.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.server.await;
        self.workers.shutdown().await;
        self.db.pool.close().await;
    }
}
