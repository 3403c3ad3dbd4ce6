//! Builds Sportello: configuration checked, database migrated, keys loaded, listener bound (port 0
//! in tests), web server and job workers started. Returns the address and a handle to stop it all.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use tera::Tera;

use crate::applications::catalogue::Catalogue;
use crate::auth::dev_idp::trust_anchor::{DevTrustAnchor, Subordinate};
use crate::auth::dev_idp::{personas, DevIdp};
use crate::auth::federation::trust_chain::TrustAnchor;
use crate::auth::keys::{self, PortalKeys};
use crate::auth::oidc::{ProviderEntry, ProviderSource, RelyingParty};
use crate::clock::SharedClock;
use crate::config::{Config, Mode, ProviderKind};
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
    pub dev_idp: Option<Box<DevIdp>>,
    pub dev_trust_anchor: Option<Box<DevTrustAnchor>>,
    /// Where documents are kept, encrypted.
    pub vault: crate::documents::vault::Vault,
    /// Turns for the child processes that inspect uploads (`documents.inspect_concurrency`).
    pub inspections: Arc<tokio::sync::Semaphore>,
    /// The portal's own paper forms (`forms/paper`).
    pub paper_forms: Arc<crate::documents::paper::PaperForms>,
    /// The OCR worker processes (`documents.ocr_engines`).
    pub ocr: Arc<crate::documents::ocr::OcrPool>,
    /// Where "Conferma e invia" sends drafts, committed together when they come together.
    pub desk: crate::applications::desk::Desk,
    /// The appointments' availability shown recently (dropped when places change).
    pub availability: crate::appointments::store::AvailabilityCache,
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

/// Who logs people in: the configured providers and trust anchors, and in development mode the
/// development identity provider under its development trust anchor.
struct Identity {
    providers: Vec<ProviderEntry>,
    anchors: Vec<TrustAnchor>,
    dev_idp: Option<Box<DevIdp>>,
    dev_trust_anchor: Option<Box<DevTrustAnchor>>,
}

fn identity_setup(
    config: &Config,
    public_url: &str,
    client_id: &str,
    keys: &PortalKeys,
) -> Result<Identity, StartError> {
    let setup = |e: String| StartError::Setup(e);
    let mut anchors = Vec::new();
    for anchor in &config.federation.trust_anchors {
        let text = std::fs::read_to_string(&anchor.jwks_file).map_err(|e| {
            setup(format!(
                "trust anchor {}: {}: {e}",
                anchor.entity_id,
                anchor.jwks_file.display()
            ))
        })?;
        let jwks: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            setup(format!(
                "trust anchor {}: {}: {e}",
                anchor.entity_id,
                anchor.jwks_file.display()
            ))
        })?;
        anchors.push(TrustAnchor {
            entity_id: anchor.entity_id.clone(),
            jwks,
        });
    }
    let mut providers = Vec::new();
    for p in &config.auth.providers {
        let source = match (&p.entity_id, &p.issuer, &p.metadata_file) {
            (Some(entity_id), _, _) => ProviderSource::Federation {
                entity_id: entity_id.clone(),
            },
            (None, Some(issuer), None) => ProviderSource::Discovery {
                issuer: issuer.clone(),
            },
            (None, Some(issuer), Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    setup(format!(
                        "auth.providers '{}': {}: {e}",
                        p.id,
                        file.display()
                    ))
                })?;
                let metadata: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    setup(format!(
                        "auth.providers '{}': {}: {e}",
                        p.id,
                        file.display()
                    ))
                })?;
                if metadata.get("issuer").and_then(|v| v.as_str()) != Some(issuer.as_str())
                    || metadata.get("jwks").is_none()
                {
                    return Err(setup(format!("auth.providers '{}': the metadata file must name the issuer and carry jwks", p.id)));
                }
                ProviderSource::Static { metadata }
            }
            (None, None, _) => {
                return Err(setup(format!(
                    "auth.providers '{}': no entity_id or issuer",
                    p.id
                )))
            }
        };
        providers.push(ProviderEntry {
            id: p.id.clone(),
            kind: p.kind,
            label: p.label.clone(),
            source,
        });
    }
    if !config.dev_idp_enabled() {
        return Ok(Identity {
            providers,
            anchors,
            dev_idp: None,
            dev_trust_anchor: None,
        });
    }
    // Config::validate (run first by Server::start) refuses the development provider in production.
    let dir = keys::key_dir(&config.data_dir)?;
    let idp = DevIdp::new(
        public_url,
        keys::read_or_generate(&dir.join("dev-idp.pem"))?,
        keys::read_or_generate(&dir.join("dev-idp-federation.pem"))?,
        client_id.to_string(),
        keys.signing.public_jwk("sig", "RS256"),
        keys.encryption.public_jwk("enc", "RSA-OAEP-256"),
    );
    let policy = serde_json::json!({ "openid_provider": {
        "token_endpoint_auth_methods_supported": { "subset_of": ["private_key_jwt"] },
        "userinfo_encryption_alg_values_supported": { "subset_of": ["RSA-OAEP", "RSA-OAEP-256"] },
    } });
    let ta = DevTrustAnchor::new(
        public_url,
        keys::read_or_generate(&dir.join("dev-ta.pem"))?,
        vec![
            Subordinate {
                entity_id: idp.issuer.clone(),
                jwks: idp.federation_jwks(),
                metadata_policy: Some(policy),
            },
            Subordinate {
                entity_id: client_id.to_string(),
                jwks: serde_json::json!({ "keys": [keys.federation.public_jwk("sig", "RS256").as_ref()] }),
                metadata_policy: None,
            },
        ],
    );
    anchors.push(TrustAnchor {
        entity_id: ta.entity_id.clone(),
        jwks: ta.jwks(),
    });
    for (id, kind, label) in [
        ("spid", ProviderKind::Spid, "SPID (identità di prova)"),
        ("cie", ProviderKind::Cie, "CIE (identità di prova)"),
    ] {
        if providers.iter().any(|p| p.id == id) {
            return Err(setup(format!(
                "auth.providers: the id '{id}' is the development provider's"
            )));
        }
        providers.push(ProviderEntry {
            id: id.into(),
            kind,
            label: label.into(),
            source: ProviderSource::Federation {
                entity_id: idp.issuer.clone(),
            },
        });
    }
    Ok(Identity {
        providers,
        anchors,
        dev_idp: Some(Box::new(idp)),
        dev_trust_anchor: Some(Box::new(ta)),
    })
}

pub struct Server {
    pub addr: SocketAddr,
    pub public_url: String,
    pub db: Db,
    handle: ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: WorkerHandle,
    /// The RabbitMQ relay and consumer, when `broker.url` is set.
    broker: Option<tokio::task::JoinHandle<()>>,
    /// Stops the relay and the wake-ups' listener.
    stop_background: tokio::sync::watch::Sender<bool>,
    /// On PostgreSQL, the task listening for the wake-ups (`db::wake`).
    wakeups: Option<tokio::task::JoinHandle<()>>,
    ocr: Arc<crate::documents::ocr::OcrPool>,
    desk_db: Db,
}

impl Server {
    pub async fn start(config: Config, clock: SharedClock) -> Result<Server, StartError> {
        config.validate()?;
        std::fs::create_dir_all(config.data_dir.join("files")).map_err(|e| {
            StartError::Setup(format!("data_dir {}: {e}", config.data_dir.display()))
        })?;
        let assets = crate::web::assets::Assets::load(
            &config.static_dir,
            crate::web::templates::sources()
                .into_iter()
                .chain(crate::citizen::SECTIONS.iter().map(|s| s.icon)),
        )
        .map_err(|e| StartError::Setup(e.to_string()))?;
        let db = migrate(&config).await?;
        if config.mode == Mode::Development {
            seed_demo(&db).await.map_err(crate::db::DbError::from)?;
            crate::appointments::seed_demo(&db, clock.now_ms())
                .await
                .map_err(crate::db::DbError::from)?;
        }
        let keys = PortalKeys::load(&config)?;
        let catalogue = Catalogue::load(&config.forms_dir)?;
        let paper_forms = Arc::new(
            crate::documents::paper::PaperForms::load(&config.forms_dir)
                .map_err(|e| StartError::Setup(format!("paper forms: {e}")))?,
        );
        let ocr = Arc::new(crate::documents::ocr::OcrPool::start(
            config.documents.ocr_engines,
            crate::documents::ocr::WorkerSettings::from_config(
                &config.documents,
                &config.forms_dir,
            ),
        ));
        let templates = crate::web::templates::load(&assets)
            .map_err(|e| StartError::Templates(e.to_string()))?;

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
        let identity = identity_setup(&config, &public_url, &client_id, &keys)?;
        let relying_party = RelyingParty::new(
            client_id.clone(),
            format!("{public_url}/auth/callback"),
            keys.signing.clone(),
            keys.encryption.clone(),
            identity.providers,
            identity.anchors,
        )
        .map_err(|e| StartError::Setup(e.to_string()))?;

        let store = crate::documents::storage::open(&config.documents.storage, &config.data_dir)
            .await
            .map_err(|e| StartError::Setup(format!("documents.storage: {e}")))?;
        let vault = crate::documents::vault::Vault::open(
            &config
                .documents
                .master_key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join("keys/documents.key")),
            store,
            config.documents.master_key_file.is_none()
                && config.mode == crate::config::Mode::Development,
        )
        .map_err(|e| StartError::Setup(format!("documents: {e}")))?;
        // The submission desk writes through a connection of its own: on a click day it would
        // otherwise wait for one behind every citizen's reads.
        let desk_db = Db::connect(&config.database_url(), 1).await?;
        // Every connection open before `/readyz` can say ready.
        db.warm().await?;
        desk_db.warm().await?;
        let metrics = Arc::new(Metrics::new());
        let peak = crate::jobs::Peak::default();
        let state = web::Data::new(AppState {
            vault,
            paper_forms: paper_forms.clone(),
            ocr: ocr.clone(),
            desk: crate::applications::desk::Desk::start(
                desk_db.clone(),
                metrics.submission_batch.clone(),
                peak.clone(),
            ),
            inspections: Arc::new(tokio::sync::Semaphore::new(
                config.documents.inspect_concurrency.max(1),
            )),
            availability: Default::default(),
            public_url: public_url.clone(),
            db: db.clone(),
            clock: clock.clone(),
            templates,
            keys,
            metrics: metrics.clone(),
            catalogue,
            relying_party,
            dev_idp: identity.dev_idp,
            dev_trust_anchor: identity.dev_trust_anchor,
            config: config.clone(),
        });

        let https = public_url.starts_with("https://");
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::FormConfig::default().limit(256 * 1024))
                .wrap(from_fn(crate::web::security::session_and_csrf))
                .wrap(ErrorHandlers::new().default_handler(crate::web::error::render_error_page))
                .wrap(crate::web::security::headers(https))
                .wrap(from_fn(crate::web::telemetry))
                // Pages and API answers compressed as the browser accepts; static assets carry their
                // own precompressed bodies, and documents are sent as stored (`Content-Encoding:
                // identity`), so neither is compressed twice.
                .wrap(actix_web::middleware::Compress::default())
                .app_data(web::Data::new(assets.clone()))
                .route(
                    "/static/{path:.*}",
                    web::get().to(crate::web::assets::serve),
                )
                .configure(crate::web::health::routes)
                .configure(crate::pages::routes)
                .configure(crate::auth::routes)
                .configure(crate::auth::federation::routes)
                .configure(crate::delegations::pages::routes)
                .configure(crate::citizen::routes)
                .configure(crate::delegations::office::routes)
                .configure(crate::applications::routes)
                .configure(crate::documents::routes)
                .configure(crate::appointments::routes)
                .configure(crate::alerts::inbox::routes)
                .configure(crate::triage::routes)
                .configure(crate::csi::api::routes)
                .configure(crate::staff::routes)
                .configure(crate::auth::dev_idp::routes)
                .configure(crate::auth::dev_idp::trust_anchor::routes)
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
        handlers.insert(
            crate::appointments::EXPIRE_JOB,
            Arc::new(crate::appointments::ExpireHolds {
                offer_ms: config.appointments.offer_hours * 3_600_000,
            }),
        );
        crate::appointments::schedule_expiry(&db, clock.now_ms(), 60_000)
            .await
            .map_err(crate::db::DbError::from)?;
        let mailer = crate::alerts::mail::Mailer::new(&config.email, &config.data_dir)
            .map_err(StartError::Setup)?;
        handlers.insert(
            crate::alerts::DELIVER_JOB,
            Arc::new(crate::alerts::deliver::Deliver {
                mailer,
                from: config.email.from.clone(),
                public_url: public_url.clone(),
                ente_name: config.ente.name.clone(),
                templates: state.templates.clone(),
                catalogue: state.catalogue.clone(),
                config: config.alerts.clone(),
            }),
        );
        handlers.insert(
            crate::documents::ocr::JOB,
            Arc::new(crate::documents::ocr::ReadDocuments {
                pool: ocr.clone(),
                vault: state.vault.clone(),
                forms: paper_forms,
            }),
        );
        handlers.insert(
            crate::documents::purge::JOB,
            Arc::new(crate::documents::purge::Purge {
                vault: state.vault.clone(),
                retention_days: config.documents.retention_days,
            }),
        );
        handlers.insert(
            crate::documents::purge::RETENTION_JOB,
            Arc::new(crate::documents::purge::Retention {
                retention_days: config.documents.retention_days,
            }),
        );
        crate::documents::purge::schedule_retention(&db, clock.now_ms(), 60_000)
            .await
            .map_err(crate::db::DbError::from)?;
        handlers.insert(
            crate::alerts::sweep::SWEEP_JOB,
            Arc::new(crate::alerts::sweep::Sweep {
                catalogue: state.catalogue.clone(),
                config: config.alerts.clone(),
            }),
        );
        crate::alerts::sweep::schedule_sweep(&db, clock.now_ms(), 60_000)
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
            peak,
        }
        .spawn();

        let (stop_broker, stopped) = tokio::sync::watch::channel(false);
        let broker = crate::csi::broker::spawn(state.clone(), stopped.clone());
        // On PostgreSQL, the relay and the job runners are woken by NOTIFY at commit, whichever
        // process committed; the same switch stops the listener.
        let wakeups = (db.backend == crate::db::Backend::Postgres)
            .then(|| tokio::spawn(crate::db::wake::listen(config.database_url(), stopped)));

        tracing::info!(%addr, public_url = %public_url, mode = ?config.mode, backend = ?db.backend, broker = broker.is_some(), "Sportello is serving");
        Ok(Server {
            addr,
            public_url,
            db,
            handle,
            server,
            workers,
            broker,
            stop_background: stop_broker,
            wakeups,
            ocr,
            desk_db,
        })
    }

    /// The pids of the OCR worker processes alive now.
    pub fn ocr_workers(&self) -> Vec<u32> {
        self.ocr.workers()
    }

    /// Stops accepting requests, finishes those in flight, stops the workers, closes the database.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.server.await;
        let _ = self.stop_background.send(true);
        if let Some(relay) = self.broker {
            let _ = relay.await;
        }
        if let Some(listener) = self.wakeups {
            let _ = listener.await;
        }
        self.workers.shutdown().await;
        self.ocr.stop();
        self.desk_db.pool.close().await;
        self.db.pool.close().await;
    }
}
