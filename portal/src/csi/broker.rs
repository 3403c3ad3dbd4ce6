//! The hand-off through RabbitMQ (lapin), when `broker.url` is set, beside the HTTP feed.
//!
//! Out: the relay publishes the outbox in order to a durable topic exchange (`<prefix>.eventi`,
//! routing key `<ente>.<event>`) as persistent CloudEvents, with publisher confirms; a row is
//! marked sent only once the broker confirmed it, and a failure stops the batch there, so the
//! events of a pratica keep their order. One process relays at a time (a lease in the database),
//! so several `serve` processes never interleave. The CSI reads the durable quorum queue
//! `<prefix>.csi`; what it refuses (a nack without requeue) goes to the dead letters
//! `<prefix>.scartati`. A message can come twice (a crash between the confirm and the mark): its
//! `message_id` and CloudEvent `id` are the outbox event id, for the CSI to deduplicate.
//!
//! In: the CSI publishes its own events to the quorum queue `<prefix>.dal-csi` (through the
//! default exchange). Each is applied like one sent over HTTP (schema, enti, status rules, at
//! most once by event id); a refused one is republished to the dead letters with its reason in
//! the `x-motivo` header, and kept in `inbound_events`.
//!
//! A lost connection is retried with backoff (0.5 s doubling to 10 s), forever.

use std::time::Duration;

use actix_web::web;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::watch;

use super::api::{apply, Applied};
use super::events::cloud_event;
use crate::clock::{Clock, SystemClock};
use crate::config::CsiClient;
use crate::db::Db;
use crate::server::AppState;
use crate::telemetry::OutcomeLabels;

/// The lease a relaying process holds, and how long it lasts without renewal. Leases and lag are
/// about real time, whatever clock the domain uses: they read the system clock.
const LEASE: &str = "outbox";
const LEASE_MS: i64 = 15_000;
/// Rows published per round (each round waits for all their confirms).
const BATCH: i64 = 200;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long a connection attempt, and a published message's confirm, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The names of the broker's objects, from `broker.prefix`.
#[derive(Debug, Clone)]
pub struct Names {
    pub exchange: String,
    pub dead_letters: String,
    pub csi_queue: String,
    pub inbound_queue: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            exchange: format!("{prefix}.eventi"),
            dead_letters: format!("{prefix}.scartati"),
            csi_queue: format!("{prefix}.csi"),
            inbound_queue: format!("{prefix}.dal-csi"),
        }
    }
}

type BrokerResult<T> = Result<T, String>;

fn err(context: &str) -> impl Fn(lapin::Error) -> String + '_ {
    move |e| format!("{context}: {e}")
}

fn quorum(dead_letters: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(dlx) = dead_letters {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
    }
    args
}

/// Declares the exchanges and queues (idempotent): the CSI's queue is bound to the events of
/// `enti` (all when empty).
pub async fn declare(channel: &Channel, names: &Names, enti: &[String]) -> BrokerResult<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (exchange, kind) in [
        (&names.exchange, ExchangeKind::Topic),
        (&names.dead_letters, ExchangeKind::Fanout),
    ] {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                kind,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(err("exchange"))?;
    }
    for (queue, dlx) in [
        (&names.dead_letters, None),
        (&names.csi_queue, Some(names.dead_letters.as_str())),
        (&names.inbound_queue, Some(names.dead_letters.as_str())),
    ] {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                quorum(dlx),
            )
            .await
            .map_err(err("queue"))?;
    }
    let keys: Vec<String> = if enti.is_empty() {
        vec!["#".into()]
    } else {
        enti.iter().map(|e| format!("{e}.#")).collect()
    };
    for key in keys {
        channel
            .queue_bind(
                names.csi_queue.as_str().into(),
                names.exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err("bind"))?;
    }
    channel
        .queue_bind(
            names.dead_letters.as_str().into(),
            names.dead_letters.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err("bind"))?;
    Ok(())
}

/// Takes or renews the relay lease for `holder`; false while another process holds it.
async fn hold_lease(db: &Db, holder: &str) -> BrokerResult<bool> {
    let now = SystemClock.now_ms();
    let done = sqlx::query(
        "INSERT INTO relay_leases (name, holder, lease_until) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until \
         WHERE relay_leases.holder = excluded.holder OR relay_leases.lease_until < $4",
    )
    .bind(LEASE)
    .bind(holder)
    .bind(now + LEASE_MS)
    .bind(now)
    .execute(&db.pool)
    .await
    .map_err(|e| format!("lease: {e}"))?;
    Ok(done.rows_affected() == 1)
}

async fn release_lease(db: &Db, holder: &str) {
    let released = sqlx::query("DELETE FROM relay_leases WHERE name = $1 AND holder = $2")
        .bind(LEASE)
        .bind(holder)
        .execute(&db.pool)
        .await;
    if let Err(e) = released {
        tracing::warn!(error = %e, "the relay lease could not be released; it lapses by itself");
    }
}

type Row = (i64, String, String, String, String, i64, Option<String>);

/// Publishes the next pending rows in order and marks sent those the broker confirmed; returns
/// how many. Stops at the first that was not confirmed (an error: the session starts again).
async fn relay_batch(
    state: &AppState,
    db: &Db,
    channel: &Channel,
    names: &Names,
) -> BrokerResult<usize> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, event_id, event_type, aggregate_id, payload, created_at, ente_code FROM outbox \
         WHERE status = 'pending' ORDER BY id LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(&db.pool)
    .await
    .map_err(|e| format!("outbox: {e}"))?;
    let metrics = &state.metrics.broker;
    let mut confirms = Vec::with_capacity(rows.len());
    let mut failure = None;
    for (id, event_id, event_type, aggregate_id, payload, created_at, ente) in &rows {
        let body = cloud_event(
            &state.public_url,
            event_id,
            event_type,
            aggregate_id,
            *created_at,
            payload,
        )
        .to_string();
        let routing = format!("{}.{event_type}", ente.as_deref().unwrap_or("nessuno"));
        let published = channel
            .basic_publish(
                names.exchange.as_str().into(),
                routing.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/cloudevents+json".into())
                    .with_message_id(event_id.as_str().into())
                    .with_timestamp(u64::try_from(created_at.div_euclid(1000)).unwrap_or(0)),
            )
            .await;
        match published {
            Ok(confirm) => confirms.push((*id, *created_at, confirm)),
            Err(e) => {
                failure = Some(format!("publish: {e}"));
                break;
            }
        }
    }
    let mut confirmed = Vec::with_capacity(confirms.len());
    for (id, created_at, confirm) in confirms {
        // A broker that blocks publishers (a disk or memory alarm) or loses a confirm would
        // otherwise hold the relay, and its lease, for ever: the session starts again instead.
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(Ok(c)) if c.is_ack() => confirmed.push((id, created_at)),
            Ok(Ok(_)) => {
                failure.get_or_insert_with(|| "the broker refused a message (nack)".into());
                break;
            }
            Ok(Err(e)) => {
                failure.get_or_insert_with(|| format!("confirm: {e}"));
                break;
            }
            Err(_) => {
                failure.get_or_insert_with(|| {
                    format!(
                        "no confirm within {} s (is the broker blocking publishers?)",
                        CONFIRM_TIMEOUT.as_secs()
                    )
                });
                break;
            }
        }
    }
    let now = SystemClock.now_ms();
    for chunk in confirmed.chunks(100) {
        let sql = format!(
            "UPDATE outbox SET status = 'sent', sent_at = $1 WHERE id IN ({})",
            crate::db::placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(now);
        for (id, _) in chunk {
            q = q.bind(id);
        }
        q.execute(&db.pool)
            .await
            .map_err(|e| format!("outbox: {e}"))?;
    }
    let ok = OutcomeLabels {
        outcome: "confirmed".into(),
    };
    for (_, created_at) in &confirmed {
        metrics.relayed.get_or_create(&ok).inc();
        metrics
            .lag
            .observe((now - created_at).max(0) as f64 / 1000.0);
    }
    if let Some(failure) = failure {
        metrics
            .relayed
            .get_or_create(&OutcomeLabels {
                outcome: "failed".into(),
            })
            .inc();
        return Err(failure);
    }
    Ok(confirmed.len())
}

/// While this process holds the relay's lease, relays batch after batch until the backlog is through.
async fn relay_all(
    state: &AppState,
    db: &Db,
    holder: &str,
    publisher: &Channel,
    names: &Names,
) -> BrokerResult<()> {
    if hold_lease(db, holder).await? {
        while relay_batch(state, db, publisher, names).await? == BATCH as usize {}
    }
    Ok(())
}

async fn pending(db: &Db) -> BrokerResult<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        .fetch_one(&db.pool)
        .await
        .map_err(|e| format!("outbox: {e}"))
}

/// The CSI behind the broker: it may act on `broker.enti` (every ente when empty).
async fn broker_client(state: &AppState) -> BrokerResult<CsiClient> {
    let enti = if state.config.broker.enti.is_empty() {
        sqlx::query_scalar("SELECT code FROM enti")
            .fetch_all(&state.db.pool)
            .await
            .map_err(|e| format!("enti: {e}"))?
    } else {
        state.config.broker.enti.clone()
    };
    Ok(CsiClient {
        id: "broker".into(),
        secret_sha256: String::new(),
        enti,
    })
}

async fn ack(delivery: &Delivery) -> BrokerResult<()> {
    delivery
        .ack(BasicAckOptions::default())
        .await
        .map(|_| ())
        .map_err(err("ack"))
}

/// Applies one event from the CSI; a refused one goes to the dead letters with its reason.
async fn inbound(
    state: &AppState,
    client: &CsiClient,
    channel: &Channel,
    names: &Names,
    delivery: Delivery,
) -> BrokerResult<()> {
    let outcome = match serde_json::from_slice::<Value>(&delivery.data) {
        Ok(body) => apply(state, client, &body).await,
        Err(_) => Ok(Applied::Refused("il messaggio non è JSON".into())),
    };
    let count = |outcome: &str| {
        state
            .metrics
            .broker
            .inbound
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    };
    match outcome {
        Ok(Applied::Applied) => {
            count("applied");
            ack(&delivery).await
        }
        Ok(Applied::Duplicate(_)) => {
            count("duplicate");
            ack(&delivery).await
        }
        Ok(Applied::Refused(reason)) => {
            count("refused");
            tracing::warn!(%reason, "an event from the CSI was refused and dead-lettered");
            let mut headers = delivery.properties.headers().clone().unwrap_or_default();
            headers.insert("x-motivo".into(), AMQPValue::LongString(reason.into()));
            let confirm = channel
                .basic_publish(
                    names.dead_letters.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &delivery.data,
                    delivery.properties.clone().with_headers(headers),
                )
                .await
                .map_err(err("dead letter"))?
                .await
                .map_err(err("dead letter"))?;
            if !confirm.is_ack() {
                return Err("the broker refused the dead letter".into());
            }
            ack(&delivery).await
        }
        Err(e) => {
            // The database failed: the event goes back to the queue, to be tried again.
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "an event from the CSI could not be applied now");
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .map_err(err("nack"))?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        }
    }
}

/// One connection's life: declare, then relay the outbox and apply the CSI's events until the
/// connection fails (an error) or `stop` says so.
async fn session(
    state: &AppState,
    url: &str,
    names: &Names,
    db: &Db,
    holder: &str,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> BrokerResult<()> {
    let connection = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("sportello".into()),
        ),
    )
    .await
    .map_err(|_| format!("connect: no answer within {} s", CONNECT_TIMEOUT.as_secs()))?
    .map_err(err("connect"))?;
    let publisher = connection.create_channel().await.map_err(err("channel"))?;
    declare(&publisher, names, &state.config.broker.enti).await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(err("confirm"))?;
    let consumer_channel = connection.create_channel().await.map_err(err("channel"))?;
    consumer_channel
        .basic_qos(20, BasicQosOptions::default())
        .await
        .map_err(err("qos"))?;
    let mut consumer = consumer_channel
        .basic_consume(
            names.inbound_queue.as_str().into(),
            "sportello".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err("consume"))?;
    let client = broker_client(state).await?;
    state.metrics.broker.connected.set(1);
    *backoff = FIRST_BACKOFF;
    tracing::info!("connected to the broker");
    // Woken when events are committed (`db::wake`); the tick is what is left if a wake-up is lost.
    let mut wake = crate::db::wake::outbox();
    let mut tick = tokio::time::interval(Duration::from_millis(match db.backend {
        crate::db::Backend::Postgres => 1000,
        crate::db::Backend::Sqlite => 200,
    }));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = connection.close(200, "arrivederci".into()).await;
                return Ok(());
            }
            delivery = consumer.next() => match delivery {
                Some(Ok(delivery)) => inbound(state, &client, &publisher, names, delivery).await?,
                Some(Err(e)) => return Err(format!("consumer: {e}")),
                None => return Err("the broker cancelled the consumer".into()),
            },
            _ = wake.changed() => {
                wake.borrow_and_update();
                relay_all(state, db, holder, &publisher, names).await?;
            }
            _ = tick.tick() => {
                wake.borrow_and_update();
                relay_all(state, db, holder, &publisher, names).await?;
                state.metrics.broker.pending.set(pending(db).await?);
            }
        }
    }
}

/// Starts the relay and the consumer when `broker.url` is set; they reconnect with backoff until
/// `stop` turns true.
pub fn spawn(
    state: web::Data<AppState>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let url = state
        .config
        .broker
        .url
        .as_ref()?
        .expose_secret()
        .to_string();
    let names = Names::new(&state.config.broker.prefix);
    let holder = uuid::Uuid::new_v4().to_string();
    Some(tokio::spawn(async move {
        // Connections of its own, so that a busy portal does not keep the relay waiting for one.
        let db = match Db::connect(&state.config.database_url(), 2).await {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!(error = %e, "the relay shares the portal's connections");
                state.db.clone()
            }
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            let ended = session(&state, &url, &names, &db, &holder, &mut stop, &mut backoff).await;
            state.metrics.broker.connected.set(0);
            match ended {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "broker unavailable");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        release_lease(&db, &holder).await;
        db.pool.close().await;
    }))
}
