//! Structured logs (text or JSON, with a request id on every line of a request) and Prometheus
//! metrics. Personal data never goes into either: spans carry the method, the route pattern
//! (`/area-personale/{section}`, never the raw path or query) and the status.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// An error with its causes, `outer: inner: …`, for the log.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    pub lane: String,
}

/// The job lanes, per lane: what is due and waiting, how long the oldest due job has waited,
/// what runs now, what failed for good. Updated by the worker every few seconds.
#[derive(Debug, Default)]
pub struct LaneMetrics {
    pub running: Family<LaneLabels, Gauge>,
    pub queued: Family<LaneLabels, Gauge>,
    pub oldest_due_seconds: Family<LaneLabels, Gauge>,
    pub failed: Family<LaneLabels, Gauge>,
}

impl LaneMetrics {
    fn register(registry: &mut Registry) -> LaneMetrics {
        let m = LaneMetrics::default();
        registry.register(
            "jobs_running",
            "Background jobs running now in this process, by lane",
            m.running.clone(),
        );
        registry.register(
            "jobs_queued",
            "Background jobs due and waiting for a runner, by lane",
            m.queued.clone(),
        );
        registry.register(
            "jobs_oldest_due_seconds",
            "How long the oldest due job of the lane has waited",
            m.oldest_due_seconds.clone(),
        );
        registry.register(
            "jobs_failed",
            "Background jobs given up after their last attempt, by lane",
            m.failed.clone(),
        );
        m
    }

    pub fn lane(family: &Family<LaneLabels, Gauge>, lane: &str) -> Gauge {
        family
            .get_or_create(&LaneLabels { lane: lane.into() })
            .clone()
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub jobs: Family<JobLabels, Counter>,
    pub lanes: LaneMetrics,
    pub logins: Family<JobLabels, Counter>,
    pub broker: BrokerMetrics,
    /// Drafts sent in each transaction of the submission desk.
    pub submission_batch: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// The hand-off through RabbitMQ: what waits in the outbox, how long commit → confirm takes,
/// what was relayed or failed, what came back from the CSI.
#[derive(Debug)]
pub struct BrokerMetrics {
    pub connected: Gauge,
    pub pending: Gauge,
    pub relayed: Family<OutcomeLabels, Counter>,
    pub lag: Histogram,
    pub inbound: Family<OutcomeLabels, Counter>,
}

impl BrokerMetrics {
    fn register(registry: &mut Registry) -> BrokerMetrics {
        let m = BrokerMetrics {
            connected: Gauge::default(),
            pending: Gauge::default(),
            relayed: Family::default(),
            lag: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            inbound: Family::default(),
        };
        registry.register(
            "broker_connected",
            "1 while the connection to RabbitMQ is up",
            m.connected.clone(),
        );
        registry.register(
            "outbox_pending",
            "Outbox events not yet confirmed by the broker",
            m.pending.clone(),
        );
        registry.register(
            "outbox_relayed",
            "Outbox events published, by outcome (confirmed, failed)",
            m.relayed.clone(),
        );
        registry.register(
            "outbox_lag_seconds",
            "From the commit of an outbox event to the broker's confirm",
            m.lag.clone(),
        );
        registry.register(
            "csi_inbound",
            "Events from the CSI through the broker, by outcome",
            m.inbound.clone(),
        );
        m
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sportello");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let jobs = Family::<JobLabels, Counter>::default();
        let logins = Family::<JobLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        registry.register(
            "jobs",
            "Background jobs finished, by kind and outcome",
            jobs.clone(),
        );
        let lanes = LaneMetrics::register(&mut registry);
        registry.register(
            "logins",
            "Login attempts, by provider and outcome",
            logins.clone(),
        );
        let submission_batch = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "submission_batch_size",
            "Drafts sent together in one transaction by the submission desk",
            submission_batch.clone(),
        );
        let broker = BrokerMetrics::register(&mut registry);
        Metrics {
            submission_batch,
            broker,
            registry,
            http_requests,
            http_duration,
            jobs,
            lanes,
            logins,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
