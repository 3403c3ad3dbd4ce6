//! The hand-off through the real RabbitMQ on this machine (`TEST_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): a submission becomes a message on the CSI's queue; the
//! CSI's answer through the broker reaches the citizen's page, once; a refused one goes to the
//! dead letters with its reason; with the broker stopped for 30 seconds in the middle of a stream
//! of submissions, or the portal killed while relaying, nothing is lost and, after deduplication by
//! event id, nothing is doubled. These tests fail, never skip, when the broker is unreachable.
//! They take turns (one of them stops the broker), and each uses its own exchanges and queues.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use portal::applications::form::Answers;
use portal::applications::store;
use portal::clock::Clock;
use portal::csi::broker::{declare, Names};
use portal::csi::events::{short_type, validate};
use portal::db::Db;
use serde_json::{json, Value};

use crate::applications::{ready_draft, submission};
use crate::appointments::Citizen;
use crate::csi::event;
use crate::support::{root, spawn_app_with, TestApp, TestDatabase};

/// One broker test at a time: one of them stops the broker.
pub(crate) static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn broker_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub(crate) fn unique_prefix(name: &str) -> String {
    format!("test-{name}-{}", uuid_like())
}

fn uuid_like() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

async fn connect() -> Connection {
    Connection::connect(&broker_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is unreachable at {}: {e}", broker_url()))
}

/// The CSI's side: a consumer of `<prefix>.csi` that keeps every delivery (duplicates included)
/// and reconnects by itself when the broker goes away.
pub(crate) struct CsiQueue {
    received: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CsiQueue {
    pub(crate) async fn start(prefix: &str) -> CsiQueue {
        let names = Names::new(prefix);
        // The objects exist before anything is published (the portal declares the same).
        let connection = connect().await;
        let channel = connection.create_channel().await.expect("channel");
        declare(&channel, &names, &[]).await.expect("declare");
        let _ = connection.close(200, "ok".into()).await;
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let consumed: Result<(), lapin::Error> = async {
                    let connection =
                        Connection::connect(&broker_url(), ConnectionProperties::default()).await?;
                    let channel = connection.create_channel().await?;
                    let mut consumer = channel
                        .basic_consume(
                            names.csi_queue.as_str().into(),
                            "test-csi".into(),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await?;
                    while let Some(delivery) = consumer.next().await {
                        let delivery = delivery?;
                        let mut event: Value =
                            serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
                        event["_message_id"] = json!(delivery
                            .properties
                            .message_id()
                            .as_ref()
                            .map(|m| m.to_string()));
                        sink.lock().unwrap().push(event);
                        delivery.ack(BasicAckOptions::default()).await?;
                    }
                    Ok(())
                }
                .await;
                let _ = consumed;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        CsiQueue { received, task }
    }

    fn all(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    pub(crate) fn distinct(&self) -> HashSet<String> {
        self.all()
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until `n` distinct events arrived; panics with what came after `limit`.
    async fn wait_distinct(&self, n: usize, limit: Duration) -> Vec<Value> {
        let start = Instant::now();
        while self.distinct().len() < n {
            assert!(
                start.elapsed() < limit,
                "{} of {n} events reached the CSI's queue in {limit:?}",
                self.distinct().len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.all()
    }
}

impl Drop for CsiQueue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Removes a test's queues and exchanges.
pub(crate) async fn remove(prefix: &str) {
    let names = Names::new(prefix);
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("channel");
    for queue in [&names.csi_queue, &names.inbound_queue, &names.dead_letters] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [&names.exchange, &names.dead_letters] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "ok".into()).await;
}

/// The CSI publishes one of its events to the portal's queue, with a confirm.
async fn publish_to_portal(prefix: &str, body: &[u8]) {
    let names = Names::new(prefix);
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = channel
        .basic_publish(
            "".into(),
            names.inbound_queue.as_str().into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
    let _ = connection.close(200, "ok".into()).await;
}

async fn app_with_broker(prefix: &str) -> TestApp {
    let prefix = prefix.to_string();
    spawn_app_with(move |c| {
        c.broker.url = Some(broker_url().into());
        c.broker.prefix = prefix;
    })
    .await
}

/// A sent SAD application of `cf`, through the submission transaction (number, history,
/// snapshot, outbox event).
async fn submit(db: &Db, now_ms: i64, draft: &str, cf: &str) {
    let answers = Answers::new();
    store::submit(db, now_ms, draft, &submission(cf, "valleverde", &answers))
        .await
        .expect("submitted");
}

async fn new_draft(db: &Db, now_ms: i64, cf: &str) -> String {
    store::create_draft(
        db,
        now_ms,
        &store::NewDraft {
            ente_code: "valleverde",
            service_code: "sad",
            form_version: 1,
            applicant_cf: cf,
            answers: &Answers::new(),
        },
    )
    .await
    .expect("draft")
}

async fn outbox_ids(db: &Db) -> (HashSet<String>, i64) {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT event_id, status FROM outbox")
        .fetch_all(&db.pool)
        .await
        .expect("outbox");
    let pending = rows.iter().filter(|(_, s)| s != "sent").count() as i64;
    (rows.into_iter().map(|(id, _)| id).collect(), pending)
}

#[tokio::test]
async fn a_submission_reaches_the_csi_queue_and_the_csi_s_answer_the_citizen_s_page_once() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("flusso");
    let csi = CsiQueue::start(&prefix).await;
    let app = app_with_broker(&prefix).await;
    let citizen = Citizen::new(&app, 21).await;
    let id = ready_draft(&app, &citizen.cf).await;
    submit(app.db(), app.clock.now_ms(), &id, &citizen.cf).await;

    let events = csi.wait_distinct(1, Duration::from_secs(20)).await;
    let e = &events[0];
    assert_eq!(e["type"], "it.sportello.pratica.inviata.v1");
    assert_eq!(e["subject"], id.as_str());
    assert_eq!(e["_message_id"], e["id"], "message_id is the event id");
    let mut checked = e.clone();
    checked.as_object_mut().map(|o| o.remove("_message_id"));
    validate("cloudevent", &checked).expect("a CloudEvent");
    validate(short_type(e["type"].as_str().unwrap()).unwrap(), &e["data"])
        .expect("data per the published schema");
    let start = Instant::now();
    while outbox_ids(app.db()).await.1 > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "marked sent after the confirm"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The CSI takes it in charge through the broker, twice (a redelivery), and sends two bad ones.
    let taken = event(
        "csi-b-1",
        "csi.stato",
        json!({ "pratica": id, "stato": "presa_in_carico" }),
    );
    publish_to_portal(&prefix, taken.to_string().as_bytes()).await;
    publish_to_portal(&prefix, taken.to_string().as_bytes()).await;
    let wrong = event("csi-b-2", "csi.protocollo", json!({ "pratica": id }));
    publish_to_portal(&prefix, wrong.to_string().as_bytes()).await;
    publish_to_portal(&prefix, b"non sono json").await;

    let start = Instant::now();
    loop {
        let page = citizen.text(&format!("/domande/{id}")).await;
        if page.contains("Presa in carico") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the CSI's change reaches the citizen's page"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names = Names::new(&prefix);
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("channel");
    let mut dead = Vec::new();
    let start = Instant::now();
    while dead.len() < 2 && start.elapsed() < Duration::from_secs(20) {
        match channel
            .basic_get(
                names.dead_letters.as_str().into(),
                BasicGetOptions::default(),
            )
            .await
            .expect("get")
        {
            Some(m) => {
                let reason = m
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-motivo").cloned());
                m.delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack");
                dead.push(match reason {
                    Some(AMQPValue::LongString(s)) => s.to_string(),
                    other => format!("{other:?}"),
                });
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        dead.len(),
        2,
        "both refused ones are dead letters: {dead:?}"
    );
    assert!(dead.iter().any(|r| r.contains("non è JSON")), "{dead:?}");
    assert!(
        dead.iter()
            .any(|r| r.contains("\"protocollo\" is a required")),
        "{dead:?}"
    );
    let _ = connection.close(200, "ok".into()).await;

    let taken_once: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM application_history WHERE application_id = $1 AND to_status = 'presa_in_carico'",
    )
    .bind(&id)
    .fetch_one(&app.db().pool)
    .await
    .expect("history");
    assert_eq!(taken_once, 1, "applied at most once");
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("sportello_broker_connected 1")
            && metrics.contains("sportello_outbox_relayed_total{outcome=\"confirmed\"} 1")
            && metrics.contains("sportello_outbox_pending 0")
            && metrics.contains("sportello_csi_inbound_total{outcome=\"refused\"} 2")
            && metrics.contains("sportello_outbox_lag_seconds_count 1"),
        "{metrics}"
    );
    app.stop().await;
    remove(&prefix).await;
}

#[tokio::test]
async fn the_reference_client_answers_through_the_broker() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("demo");
    let app = app_with_broker(&prefix).await;
    let citizen = Citizen::new(&app, 22).await;
    let id = ready_draft(&app, &citizen.cf).await;
    submit(app.db(), app.clock.now_ms(), &id, &citizen.cf).await;
    let start = Instant::now();
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains(&id)) {
        assert!(start.elapsed() < Duration::from_secs(20), "{lines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        lines.extend(
            portal::csi::demo::broker_once(&broker_url(), &prefix)
                .await
                .expect("a pass"),
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("it.sportello.pratica.inviata.v1") && l.contains("valleverde")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("presa in carico: pubblicata")),
        "{lines:?}"
    );
    let start = Instant::now();
    while !citizen
        .text(&format!("/domande/{id}"))
        .await
        .contains("Presa in carico")
    {
        assert!(start.elapsed() < Duration::from_secs(20), "taken in charge");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
    remove(&prefix).await;
}

fn rabbitmqctl(arg: &str) {
    let status = std::process::Command::new("rabbitmqctl")
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {arg}");
}

#[tokio::test]
async fn with_the_broker_stopped_for_30_seconds_nothing_is_lost_or_doubled() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("fermo");
    let csi = CsiQueue::start(&prefix).await;
    let app = app_with_broker(&prefix).await;
    const N: usize = 120;
    let mut drafts = Vec::new();
    for i in 0..N {
        let cf = portal::domain::CodiceFiscale::synthetic(100 + i)
            .unwrap()
            .to_string();
        drafts.push((new_draft(app.db(), app.clock.now_ms(), &cf).await, cf));
    }
    // A stream of submissions, one every 300 ms (36 s), with the broker down for 30 s of it.
    let db = app.db().clone();
    let now = app.clock.now_ms();
    let stream = tokio::spawn(async move {
        for (draft, cf) in drafts {
            submit(&db, now, &draft, &cf).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    csi.wait_distinct(5, Duration::from_secs(20)).await;
    rabbitmqctl("stop_app");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (_, pending_while_down) = outbox_ids(app.db()).await;
    assert!(pending_while_down > 0, "submissions waited in the outbox");
    rabbitmqctl("start_app");
    stream.await.expect("the stream of submissions");

    let all = csi.wait_distinct(N, Duration::from_secs(90)).await;
    let (ids, pending) = outbox_ids(app.db()).await;
    assert_eq!(pending, 0, "every event confirmed and marked sent");
    assert_eq!(csi.distinct(), ids, "each committed event, none other");
    let per_pratica: HashSet<&str> = all.iter().filter_map(|e| e["subject"].as_str()).collect();
    assert_eq!(per_pratica.len(), N);
    eprintln!(
        "broker stopped 30 s: {N} events, {} deliveries ({} redelivered, removed by event id)",
        all.len(),
        all.len() - N
    );
    app.stop().await;
    remove(&prefix).await;
}

/// `sportello serve` as a child process on `database_url`, with the broker.
/// Starts `sportello serve` in `dir`; its log goes to `serve-<n>.log`, one per start.
fn serve(dir: &std::path::Path, database_url: &str, prefix: &str) -> std::process::Child {
    let log = (1..)
        .map(|n| dir.join(format!("serve-{n}.log")))
        .find(|p| !p.exists())
        .expect("a log name");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sportello"))
        .current_dir(dir)
        .env("SPORTELLO_DATA_DIR", dir.join("data"))
        .env("SPORTELLO_HTTP__ADDR", "127.0.0.1:0")
        .env("SPORTELLO_STATIC_DIR", root().join("static"))
        .env("SPORTELLO_FORMS_DIR", root().join("forms"))
        .env("SPORTELLO_DATABASE__URL", database_url)
        .env("SPORTELLO_BROKER__URL", broker_url())
        .env("SPORTELLO_BROKER__PREFIX", prefix)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("sportello serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("the address");
    assert!(
        line.contains("in ascolto"),
        "{line}{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    child
}

/// What to read when the relay did not do what a test expected: the lease, the outbox, the
/// CSI's queue as the broker counts it, and the end of each process's log.
async fn relay_state(db: &Db, dir: &std::path::Path, prefix: &str) -> String {
    let lease: Option<(String, i64)> =
        sqlx::query_as("SELECT holder, lease_until FROM relay_leases WHERE name = 'outbox'")
            .fetch_optional(&db.pool)
            .await
            .unwrap_or(None);
    let (_, pending) = outbox_ids(db).await;
    let queued = match connect().await.create_channel().await {
        Ok(channel) => channel
            .queue_declare(
                Names::new(prefix).csi_queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map(|q| q.message_count().to_string())
            .unwrap_or_else(|e| e.to_string()),
        Err(e) => e.to_string(),
    };
    let now = portal::clock::SystemClock.now_ms();
    let mut out = format!(
        "lease {lease:?} (now {now}); outbox pending {pending}; messages waiting in the CSI's queue {queued}\n"
    );
    for n in 1.. {
        let Ok(log) = std::fs::read_to_string(dir.join(format!("serve-{n}.log"))) else {
            break;
        };
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        out.push_str(&format!(
            "--- serve-{n}.log (last lines)\n{}\n",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    out
}

#[tokio::test]
async fn with_the_portal_killed_while_relaying_nothing_is_lost_or_doubled() {
    let _turn = TURN.lock().await;
    let prefix = unique_prefix("ucciso");
    let csi = CsiQueue::start(&prefix).await;
    let dir = tempfile::tempdir().expect("folder");
    let database = TestDatabase::create(dir.path()).await;
    let mut portal = serve(dir.path(), &database.url, &prefix);
    let db = Db::connect(&database.url, 1).await.expect("database");
    const N: usize = 600;
    let now = portal::clock::SystemClock.now_ms();
    let stream = {
        let db = db.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let cf = portal::domain::CodiceFiscale::synthetic(1000 + i)
                    .unwrap()
                    .to_string();
                let draft = new_draft(&db, now, &cf).await;
                submit(&db, now, &draft, &cf).await;
                // A steady stream; it also leaves SQLite's one writer lock to the portal.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // Killed (SIGKILL: no clean stop) once the relay is under way, with the stream still going.
    csi.wait_distinct(50, Duration::from_secs(60)).await;
    portal.kill().expect("kill");
    portal.wait().expect("killed");
    let (_, pending_at_kill) = outbox_ids(&db).await;
    assert!(
        pending_at_kill > 0 || !stream.is_finished(),
        "killed in the middle of relaying"
    );
    let dead: Option<String> =
        sqlx::query_scalar("SELECT holder FROM relay_leases WHERE name = 'outbox'")
            .fetch_optional(&db.pool)
            .await
            .unwrap();
    // Started again: it takes the relay over once the dead process's lease lapses (15 s).
    let mut portal = serve(dir.path(), &database.url, &prefix);
    let start = Instant::now();
    loop {
        let holder: Option<String> =
            sqlx::query_scalar("SELECT holder FROM relay_leases WHERE name = 'outbox'")
                .fetch_optional(&db.pool)
                .await
                .unwrap();
        if holder.is_some() && holder != dead {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            panic!(
                "the new process did not take the relay over within 60 s:\n{}",
                relay_state(&db, dir.path(), &prefix).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "relay taken over {:.1} s after the restart",
        start.elapsed().as_secs_f64()
    );
    stream.await.expect("the stream of submissions");
    let start = Instant::now();
    while csi.distinct().len() < N {
        if start.elapsed() > Duration::from_secs(90) {
            panic!(
                "{} of {N} events reached the CSI's queue within 90 s of the takeover:\n{}",
                csi.distinct().len(),
                relay_state(&db, dir.path(), &prefix).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = csi.all();
    let start = Instant::now();
    while outbox_ids(&db).await.1 > 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "all marked sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ids, _) = outbox_ids(&db).await;
    assert_eq!(csi.distinct(), ids, "each committed event, none other");
    eprintln!(
        "portal killed while relaying: {N} events, {} deliveries ({} redelivered, removed by event id)",
        all.len(),
        all.len() - N
    );
    portal.kill().expect("kill");
    let _ = portal.wait();
    db.pool.close().await;
    drop(database);
    remove(&prefix).await;
}
