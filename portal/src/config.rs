//! Configuration: defaults → an optional TOML file → `SPORTELLO_` environment variables
//! (`__` separates nested keys). Unknown keys are an error; secrets are redacted in `Debug`.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `development` (the embedded default) or `production`.
    pub mode: Mode,
    /// Where the SQLite file, the keys and the stored documents live.
    pub data_dir: PathBuf,
    /// The address citizens reach the portal at (e.g. `https://sportello.comune.it`).
    /// Defaults to `http://` + the address the server listens on.
    pub public_url: Option<String>,
    /// Folder of the front-end assets (`static/`, with Bootstrap Italia installed by the set-up).
    pub static_dir: PathBuf,
    /// Folder of the service definitions (`forms/`).
    pub forms_dir: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub ente: EnteConfig,
    pub auth: AuthConfig,
    pub keys: KeysConfig,
    pub federation: FederationConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub jobs: JobsConfig,
    pub appointments: AppointmentsConfig,
    pub email: EmailConfig,
    pub alerts: AlertsConfig,
    pub csi: CsiConfig,
    pub broker: BrokerConfig,
    pub documents: DocumentsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:` or `postgres:` URL; by default a SQLite file under `data_dir`.
    #[serde(serialize_with = "ser_opt_secret")]
    pub url: Option<SecretString>,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnteConfig {
    /// Shown in the header of every page.
    pub name: String,
    /// The network the ente belongs to, shown above its name.
    pub network: String,
    pub contact_email: String,
    /// Whether citizens see the names of the staff who consulted their data (otherwise their role
    /// and ente only).
    pub show_operator_names: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The development identity provider; `None` means "on in development, off in production".
    pub dev_idp: Option<bool>,
    /// Minutes of inactivity after which a session ends.
    pub session_idle_minutes: i64,
    /// Hours after login after which a session ends regardless of activity.
    pub session_absolute_hours: i64,
    /// The OpenID Connect client id the portal uses (its entity id under the SPID/CIE federation).
    pub client_id: Option<String>,
    /// The identity providers offered on the login page (besides the development one).
    pub providers: Vec<ProviderConfig>,
    /// The SPID level the staff administration pages need (2 or 3).
    pub staff_admin_level: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Spid,
    Cie,
}

/// An identity provider, found one of three ways: through the federation (`entity_id`), by OpenID
/// discovery (`issuer`), or from a static registration (`issuer` and `metadata_file`, a JSON file
/// with the provider's metadata and its `jwks`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Short name used in addresses, unique.
    pub id: String,
    pub kind: ProviderKind,
    /// Shown on the login page.
    pub label: String,
    pub entity_id: Option<String>,
    pub issuer: Option<String>,
    pub metadata_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// PEM (PKCS#8) RSA key the portal signs with. Required in production.
    pub signing_key_file: Option<PathBuf>,
    /// PEM (PKCS#8) RSA key userinfo is encrypted to. Required in production.
    pub encryption_key_file: Option<PathBuf>,
    /// PEM (PKCS#8) RSA key the entity configuration is signed with (the federation key, distinct
    /// from the OpenID keys). Required in production.
    pub federation_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustMark {
    pub id: String,
    /// The trust mark JWT issued to this portal.
    pub trust_mark: String,
}

/// A trust anchor of the federation: its entity id and a JSON file with its federation keys
/// (`{"keys": […]}`), as the federation publishes them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustAnchorConfig {
    pub entity_id: String,
    pub jwks_file: PathBuf,
}

/// What the portal says of itself in its entity configuration (`/.well-known/openid-federation`),
/// and whom it trusts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// The intermediates or trust anchors the portal is registered with.
    pub authority_hints: Vec<String>,
    /// The trust anchors providers are resolved up to.
    pub trust_anchors: Vec<TrustAnchorConfig>,
    pub trust_marks: Vec<TrustMark>,
    /// Default: `ente.name`.
    pub organization_name: Option<String>,
    pub logo_uri: Option<String>,
    /// How long the published entity configuration is valid.
    pub entity_configuration_hours: i64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            authority_hints: Vec::new(),
            trust_anchors: Vec::new(),
            trust_marks: Vec::new(),
            organization_name: None,
            logo_uri: None,
            entity_configuration_hours: 24,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `portal=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    #[serde(serialize_with = "ser_opt_secret")]
    pub bearer_token: Option<SecretString>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Runs the job lanes in this process (false: a process that only serves pages).
    pub run: bool,
    /// Seconds a claimed job stays leased; its runner renews the lease every third of it while
    /// the job runs, so only a dead process's jobs are taken over.
    pub lease_seconds: i64,
    /// Seconds a shutdown waits for running jobs before releasing them.
    pub shutdown_grace_seconds: u64,
    /// Each lane's runners and time limit: a full lane never delays another.
    pub lanes: LanesConfig,
    /// A peak: more "Conferma e invia" than this per second in this process. Meanwhile the
    /// lanes that yield to it (the alerts: receipts are on the confirmation page at once) wait,
    /// leaving the cores to the citizens' requests.
    pub peak_submissions_per_second: u64,
    /// The longest a yielding lane waits for a peak to end before it runs anyway.
    pub peak_max_wait_seconds: u64,
}

/// The job lanes: each kind of job belongs to one (see `jobs::Lane`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LanesConfig {
    /// Alerts delivered: inbox, e-mail.
    pub alerts: LaneConfig,
    /// Documents read by OCR, removed documents' files deleted.
    pub documents: LaneConfig,
    /// Sweeps: sessions purged, holds expired, reminders found, retention.
    pub housekeeping: LaneConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    /// Jobs of this lane run at once in this process (0: none here).
    pub workers: usize,
    /// Seconds one job may run; past it the attempt fails (and is retried with backoff).
    pub timeout_seconds: u64,
    /// Waits while this process has a peak of submissions (`jobs.peak_submissions_per_second`).
    #[serde(default)]
    pub yields_to_peak: bool,
}

impl Default for LanesConfig {
    fn default() -> Self {
        LanesConfig {
            alerts: LaneConfig {
                // Mostly waiting on the SMTP server (lettre 0.11.23 sends without TCP_NODELAY:
                // 40 ms a message per connection), so many at once.
                workers: 16,
                timeout_seconds: 120,
                yields_to_peak: true,
            },
            documents: LaneConfig {
                workers: 2,
                timeout_seconds: 900,
                yields_to_peak: false,
            },
            housekeeping: LaneConfig {
                workers: 1,
                timeout_seconds: 300,
                yields_to_peak: false,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppointmentsConfig {
    /// Minutes a chosen time stays reserved while the citizen completes the booking.
    pub hold_minutes: i64,
    /// Hours a citizen of the waiting list has to accept a freed place.
    pub offer_hours: i64,
}

impl Default for AppointmentsConfig {
    fn default() -> Self {
        AppointmentsConfig {
            hold_minutes: 10,
            offer_hours: 24,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The sender of every e-mail.
    pub from: String,
    /// `smtp://host:port` (STARTTLS when offered is not forced), `smtp://host:port?tls=required`
    /// or `smtps://user:password@host` (TLS; credentials in the URL). When unset, e-mails are written
    /// as `.eml` files under `folder` instead of being sent.
    #[serde(serialize_with = "ser_opt_secret")]
    pub smtp_url: Option<SecretString>,
    /// Where e-mails go without an SMTP server (relative paths are under `data_dir`).
    pub folder: PathBuf,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            from: "Sportello sociale <noreply@comune.valleverde.example.it>".into(),
            smtp_url: None,
            folder: PathBuf::from("mail"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Hours before an appointment that its reminder goes out.
    pub appointment_reminder_hours: i64,
    /// Days before a deadline (documents requested, preavviso di rigetto) that reminders go out.
    pub deadline_reminder_days: Vec<i64>,
    /// Days before a service stops taking applications that a draft of it is recalled.
    pub draft_closing_days: i64,
    /// Days before a pratica's legal term that its ente's operators are told.
    pub staff_term_days: i64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            appointment_reminder_hours: 24,
            deadline_reminder_days: vec![3, 1],
            draft_closing_days: 7,
            staff_term_days: 5,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsiConfig {
    /// Minutes an access token of a CSI client lasts.
    pub token_minutes: i64,
    /// The CSI systems allowed in, each limited to the enti it serves. In development, when none
    /// is configured, a demo client `csi-demo` (secret `csi-demo-secret`) serves the demo enti.
    pub clients: Vec<CsiClient>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsiClient {
    pub id: String,
    /// SHA-256 (hex) of the client's secret: the secret itself is never stored.
    pub secret_sha256: String,
    pub enti: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentsConfig {
    /// The master key that wraps each document's own key: 64 hex characters (`openssl rand -hex
    /// 32`), mode 0600. Required in production; in development `<data_dir>/keys/documents.key`
    /// is generated.
    pub master_key_file: Option<PathBuf>,
    /// The largest file accepted, in megabytes.
    pub max_file_mb: u64,
    /// All the documents of one pratica, in megabytes, and how many files.
    pub max_pratica_mb: u64,
    pub max_pratica_files: i64,
    /// All the documents of one citizen, in megabytes.
    pub max_citizen_mb: u64,
    /// The most pages of a PDF.
    pub max_pages: usize,
    /// The limits of the child process that inspects each file: CPU seconds, wall-clock seconds,
    /// address space in megabytes.
    pub inspect_cpu_seconds: u64,
    pub inspect_wall_seconds: u64,
    pub inspect_memory_mb: u64,
    /// The program run (as `<program> intake <in> <out>`) to inspect a file; default: this binary.
    pub intake_program: Option<PathBuf>,
    /// How many files are inspected at once in this process (each in its own child process).
    pub inspect_concurrency: usize,
    /// clamd for the virus scan (`host:port` or a Unix socket path); unset: no scan.
    pub clamd: Option<String>,
    /// How many OCR worker processes read documents at once (each with its Tesseract engine);
    /// 0 turns OCR off.
    pub ocr_engines: usize,
    /// Limits of each page read by an OCR worker (CPU and wall-clock seconds), and of each
    /// worker process's address space (megabytes). A page over them is "Non leggibile".
    pub ocr_page_cpu_seconds: u64,
    pub ocr_page_wall_seconds: u64,
    pub ocr_memory_mb: u64,
    /// The Tesseract model (`ita`: the tesseract-ocr-ita package).
    pub ocr_language: String,
    /// Where the encrypted files are kept.
    pub storage: StorageConfig,
    /// Days the documents of a closed pratica (accolta, respinta, ritirata, annullata) are kept
    /// after it closed; then their stored bytes are deleted. Unset: kept (the ente's records
    /// policy decides).
    pub retention_days: Option<u32>,
}

/// Where the documents' encrypted files are kept, through `object_store`: a local folder (the
/// default, `<data_dir>/files`) or an S3-compatible bucket. Whatever is chosen, the files are
/// encrypted before they leave the portal; the storage never sees a document or its key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub kind: StorageKind,
    /// `local`: the folder (default `<data_dir>/files`).
    pub path: Option<PathBuf>,
    /// `s3`: the bucket, which must exist.
    pub bucket: Option<String>,
    /// `s3`: the endpoint of an S3-compatible service (MinIO, Ceph, a cloud provider's); unset: AWS.
    pub endpoint: Option<String>,
    /// `s3`: the region (default `us-east-1`, or `AWS_REGION`).
    pub region: Option<String>,
    /// `s3`: the credentials; unset: the `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` variables
    /// (or the instance's role).
    pub access_key_id: Option<String>,
    #[serde(serialize_with = "ser_opt_secret")]
    pub secret_access_key: Option<SecretString>,
    /// `s3`: allow an `http://` endpoint (a service on the same host or network).
    pub allow_http: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    Local,
    S3,
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        DocumentsConfig {
            master_key_file: None,
            max_file_mb: 20,
            max_pratica_mb: 100,
            max_pratica_files: 30,
            max_citizen_mb: 500,
            max_pages: 50,
            inspect_cpu_seconds: 20,
            inspect_wall_seconds: 30,
            inspect_memory_mb: 1024,
            intake_program: None,
            inspect_concurrency: 2,
            ocr_engines: 2,
            ocr_page_cpu_seconds: 30,
            ocr_page_wall_seconds: 60,
            ocr_memory_mb: 1024,
            ocr_language: "ita".into(),
            clamd: None,
            storage: StorageConfig::default(),
            retention_days: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `amqp://user:password@host:5672/%2f` (or `amqps://`): when set, the outbox is relayed to
    /// RabbitMQ and the CSI's events are consumed from it, beside the HTTP feed.
    #[serde(serialize_with = "ser_opt_secret")]
    pub url: Option<SecretString>,
    /// The prefix of the exchanges and queues: `<prefix>.eventi` (topic exchange, routing key
    /// `<ente>.<event>`), `<prefix>.csi` (the CSI's queue), `<prefix>.dal-csi` (the CSI's events
    /// in), `<prefix>.scartati` (dead letters).
    pub prefix: String,
    /// The enti whose events the CSI may send through the broker (default: every ente).
    pub enti: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: None,
            prefix: "sportello".into(),
            enti: Vec::new(),
        }
    }
}

fn ser_opt_secret<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Development,
            data_dir: PathBuf::from("data"),
            public_url: None,
            static_dir: PathBuf::from("static"),
            forms_dir: PathBuf::from("forms"),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            ente: EnteConfig::default(),
            auth: AuthConfig::default(),
            keys: KeysConfig::default(),
            federation: FederationConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            jobs: JobsConfig::default(),
            appointments: AppointmentsConfig::default(),
            email: EmailConfig::default(),
            alerts: AlertsConfig::default(),
            csi: CsiConfig {
                token_minutes: 60,
                clients: Vec::new(),
            },
            broker: BrokerConfig::default(),
            documents: DocumentsConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: "127.0.0.1:8080".into(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 10,
        }
    }
}

impl Default for EnteConfig {
    fn default() -> Self {
        EnteConfig {
            name: "Comune di Valleverde".into(),
            network: "Ambito territoriale sociale di Valleverde".into(),
            contact_email: "servizisociali@comune.valleverde.example.it".into(),
            show_operator_names: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            dev_idp: None,
            session_idle_minutes: 30,
            session_absolute_hours: 8,
            client_id: None,
            providers: Vec::new(),
            staff_admin_level: 2,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            run: true,
            lease_seconds: 60,
            shutdown_grace_seconds: 20,
            lanes: LanesConfig::default(),
            peak_submissions_per_second: 50,
            peak_max_wait_seconds: 120,
        }
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend, ConfigError> {
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(ConfigError::Invalid(format!(
                "database.url: the scheme '{scheme}' is not supported; use a sqlite: or postgres: URL"
            ))),
        }
    }
}

impl Config {
    /// Defaults, then the TOML file if given, then `SPORTELLO_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "the configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("SPORTELLO_").split("__"));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that hold whatever the source of the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Backend::of_url(&self.database_url())?;
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("public_url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::Invalid(
                    "public_url: must be an http(s) URL".into(),
                ));
            }
        }
        if !(1..=120).contains(&self.appointments.hold_minutes)
            || !(1..=168).contains(&self.appointments.offer_hours)
        {
            return Err(ConfigError::Invalid(
                "appointments: hold_minutes 1–120, offer_hours 1–168".into(),
            ));
        }
        if !(2..=3).contains(&self.auth.staff_admin_level) {
            return Err(ConfigError::Invalid(
                "auth.staff_admin_level: 2 or 3".into(),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for p in &self.auth.providers {
            let at =
                |what: &str| ConfigError::Invalid(format!("auth.providers '{}': {what}", p.id));
            if p.id.is_empty()
                || !p.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                || p.id == "dev"
            {
                return Err(at("id: letters, digits and dashes ('dev' is reserved)"));
            }
            if !ids.insert(p.id.clone()) {
                return Err(at("id used twice"));
            }
            match (&p.entity_id, &p.issuer) {
                (Some(_), None) if p.metadata_file.is_none() => {}
                (None, Some(_)) => {}
                _ => return Err(at(
                    "give either entity_id (federation) or issuer (with an optional metadata_file)",
                )),
            }
            if p.entity_id.is_some() && self.federation.trust_anchors.is_empty() {
                return Err(at("entity_id needs federation.trust_anchors"));
            }
        }
        if self.auth.session_idle_minutes <= 0 || self.auth.session_absolute_hours <= 0 {
            return Err(ConfigError::Invalid(
                "auth: session timeouts must be positive".into(),
            ));
        }
        let storage = &self.documents.storage;
        if storage.kind == StorageKind::S3 && storage.bucket.is_none() {
            return Err(ConfigError::Invalid(
                "documents.storage.bucket: the s3 storage needs the name of its bucket".into(),
            ));
        }
        if self.mode == Mode::Production {
            if self.auth.dev_idp == Some(true) {
                return Err(ConfigError::Invalid(
                    "auth.dev_idp: the development identity provider cannot be enabled in production mode"
                        .into(),
                ));
            }
            if self.keys.signing_key_file.is_none()
                || self.keys.encryption_key_file.is_none()
                || self.keys.federation_key_file.is_none()
            {
                return Err(ConfigError::Invalid(
                    "keys: production mode needs keys.signing_key_file, keys.encryption_key_file and keys.federation_key_file"
                        .into(),
                ));
            }
            if self.documents.master_key_file.is_none() {
                return Err(ConfigError::Invalid(
                    "documents.master_key_file: production mode needs the master key of the stored documents".into(),
                ));
            }
            if self.public_url.is_none() {
                return Err(ConfigError::Invalid(
                    "public_url: required in production mode".into(),
                ));
            }
            // The client_id and redirect_uri published to the federation derive from it; the
            // SPID/CIE rules allow only https.
            if self
                .public_url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"))
            {
                return Err(ConfigError::Invalid(
                    "public_url: production mode needs an https:// address (SPID and CIE accept no other)"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    pub fn dev_idp_enabled(&self) -> bool {
        self.auth.dev_idp.unwrap_or(self.mode == Mode::Development)
    }

    /// The database URL, defaulting to a SQLite file under the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose_secret().to_string(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("sportello.db").display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_schemes_are_refused_with_a_clear_message() {
        let err = Backend::of_url("mysql://localhost/x")
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("'mysql' is not supported"));
        assert_eq!(
            Backend::of_url("postgres://x/y").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("sqlite://a.db").ok(), Some(Backend::Sqlite));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut config = Config::default();
        config.database.url = Some(SecretString::from("postgres://u:hunter2@db/x"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn production_refuses_the_development_identity_provider() {
        let mut config = Config {
            mode: Mode::Production,
            public_url: Some("https://sportello.example.it".into()),
            ..Config::default()
        };
        config.keys.signing_key_file = Some("s.pem".into());
        config.keys.encryption_key_file = Some("e.pem".into());
        config.keys.federation_key_file = Some("f.pem".into());
        assert!(
            config.validate().is_err(),
            "the documents' master key is missing"
        );
        config.documents.master_key_file = Some("d.key".into());
        assert!(config.validate().is_ok());
        // An http address would be published as the client_id and redirect_uri: refused.
        config.public_url = Some("http://sportello.example.it".into());
        let refused = config.validate().err().map(|e| e.to_string());
        assert!(refused.unwrap_or_default().contains("https://"));
        config.public_url = Some("https://sportello.example.it".into());
        config.auth.dev_idp = Some(true);
        assert!(config.validate().is_err());
    }
}

#[cfg(test)]
mod readme_tests {
    use super::*;

    /// The README's example configuration is valid and means the defaults.
    #[test]
    fn the_documented_example_loads() -> Result<(), Box<dyn std::error::Error>> {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
        let start = readme.find("```toml\n").ok_or("no toml block")? + 8;
        let end = start + readme[start..].find("```").ok_or("unterminated")?;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("sportello.toml");
        std::fs::write(&file, &readme[start..end])?;
        let config = Config::load(Some(&file))?;
        assert_eq!(config.http.addr, HttpConfig::default().addr);
        assert_eq!(config.auth.session_idle_minutes, 30);
        Ok(())
    }
}
