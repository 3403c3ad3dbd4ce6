//! The outbox relayed to RabbitMQ with publisher confirms.
//!
//!     cargo bench --bench relay                            # SQLite, the broker at 127.0.0.1:5672
//!     BENCH_DB=postgres cargo bench --bench relay          # PostgreSQL on 127.0.0.1:5432
//!     cargo bench --bench relay -- --backlog 20000 --paced 3000 --rate 300
//!
//! Sportello runs in this process (release build) on a fresh database; the broker is the real
//! RabbitMQ (`BENCH_AMQP_URL`), and a consumer in this process plays the CSI, draining its queue
//! and acknowledging each message. Every event comes from a real submission (draft, then the
//! submission transaction: number, history, snapshot, outbox row).
//!
//! 1. **backlog**: `--backlog` submissions committed while Sportello runs without a broker; then
//!    it is restarted with the broker, and the time until the last row is confirmed and marked
//!    sent gives events per second relayed with confirms.
//! 2. **paced**: `--paced` submissions at `--rate` per second with the relay running; the lag from
//!    each commit (the submission call returned) to the broker's confirm (the row's `sent_at`, wall
//!    clock) and to the CSI's consumer receiving it, p50/p99/max; and, apart, how long the
//!    submission took from the row's stamp (transaction start) to its commit.
//!
//! Then the check: every event reached the CSI's queue, and no event id is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{arg, fresh_database, percentile, start_on};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use portal::applications::form::Answers;
use portal::applications::store;
use portal::clock::{Clock, SystemClock};
use portal::csi::broker::{declare, Names};
use portal::db::Db;
use portal::domain::CodiceFiscale;

fn amqp_url() -> String {
    std::env::var("BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// One submission; returns the pratica and the wall-clock time its transaction had committed.
async fn submit_one(db: &Db, i: usize) -> (String, i64) {
    let cf = CodiceFiscale::synthetic(i).unwrap().to_string();
    let answers = Answers::new();
    let now = SystemClock.now_ms();
    let draft = store::create_draft(
        db,
        now,
        &store::NewDraft {
            ente_code: "valleverde",
            service_code: "sad",
            form_version: 1,
            applicant_cf: &cf,
            answers: &answers,
        },
    )
    .await
    .unwrap();
    store::submit(
        db,
        SystemClock.now_ms(),
        &draft,
        &store::Submission {
            ente_code: "valleverde".into(),
            service_code: "sad".into(),
            applicant_cf: cf.clone(),
            applicant_name: "Maria Esposito".into(),
            service_title: "Assistenza domiciliare (SAD)".into(),
            form_version: 1,
            term_days: 30,
            answers: answers.clone(),
            summary: Vec::new(),
            declarations: vec!["Dichiaro".into()],
            slot_labels: Vec::new(),
            delegate: None,
        },
    )
    .await
    .unwrap();
    (draft, SystemClock.now_ms())
}

async fn pending(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let backlog: usize = arg("--backlog", 10_000);
    let paced: usize = arg("--paced", 2_000);
    let rate: f64 = arg("--rate", 200.0);
    let dir = tempfile::tempdir().unwrap();
    let (url, backend) = fresh_database(dir.path()).await;
    let prefix = format!("bench-{}", std::process::id());
    let names = Names::new(&prefix);

    // The CSI: declares its objects, consumes and acknowledges, noting when each event arrived.
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {}: {e}", amqp_url()));
    let channel = connection.create_channel().await.unwrap();
    declare(&channel, &names, &[]).await.unwrap();
    let arrivals: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let mut consumer = channel
        .basic_consume(
            names.csi_queue.as_str().into(),
            "bench-csi".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let sink = arrivals.clone();
    let deliveries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = deliveries.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let id = d
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            sink.lock().unwrap().insert(id, SystemClock.now_ms());
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = d.ack(BasicAckOptions::default()).await;
        }
    });

    // 1. The backlog, committed without a broker.
    let (server, _) = start_on(dir.path(), &url, |_| {}).await;
    let db = server.db.clone();
    let seeding = Instant::now();
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < backlog {
                submit_one(&db, i).await;
                i += workers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "relay on {backend}: {backlog} submissions committed in {:.1} s without a broker",
        seeding.elapsed().as_secs_f64()
    );
    server.stop().await;
    let started = Instant::now();
    let (server, _) = start_on(dir.path(), &url, |c| {
        c.broker.url = Some(amqp_url().into());
        c.broker.prefix = prefix.clone();
    })
    .await;
    let db = server.db.clone();
    while pending(&db).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    println!(
        "backlog: {backlog} events confirmed and marked sent in {:.2} s (start-up and connection included): {:.0} events/s",
        took.as_secs_f64(),
        backlog as f64 / took.as_secs_f64()
    );

    // 2. Paced submissions with the relay running.
    let paced_start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = Vec::new();
    let mut committed: HashMap<String, i64> = HashMap::new();
    for n in 0..paced {
        let due = paced_start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let db = db.clone();
        tasks.push(tokio::spawn(
            async move { submit_one(&db, backlog + n).await },
        ));
    }
    for t in tasks {
        let (pratica, at) = t.await.unwrap();
        committed.insert(pratica, at);
    }
    while pending(&db).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all: Vec<(String, i64, Option<i64>, String)> = sqlx::query_as(
        "SELECT event_id, created_at, sent_at, aggregate_id FROM outbox ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // Wait for the consumer to have everything (or give up after 30 s).
    let waited = Instant::now();
    while arrivals.lock().unwrap().len() < all.len() && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = arrivals.lock().unwrap().clone();
    let paced_rows = &all[backlog..];
    // From the commit (the submission call returned) — not the row's stamp, which is taken
    // when the transaction starts.
    let since_commit = |pratica: &String, at: i64| {
        let commit = committed.get(pratica).copied().unwrap_or(at);
        Duration::from_millis((at - commit).max(0) as u64)
    };
    let mut to_confirm: Vec<Duration> = paced_rows
        .iter()
        .map(|(_, created, sent, pratica)| since_commit(pratica, sent.unwrap_or(*created)))
        .collect();
    let mut to_csi: Vec<Duration> = paced_rows
        .iter()
        .filter_map(|(id, _, _, pratica)| got.get(id).map(|at| since_commit(pratica, *at)))
        .collect();
    let mut stamp_to_commit: Vec<Duration> = paced_rows
        .iter()
        .map(|(_, created, _, pratica)| {
            let commit = committed.get(pratica).copied().unwrap_or(*created);
            Duration::from_millis((commit - created).max(0) as u64)
        })
        .collect();
    to_confirm.sort();
    to_csi.sort();
    stamp_to_commit.sort();
    println!(
        "paced at {rate}/s: the submission itself (stamp → commit) p50 {}, p99 {}",
        ms(percentile(&stamp_to_commit, 0.5)),
        ms(percentile(&stamp_to_commit, 0.99)),
    );
    println!(
        "paced at {rate}/s: {paced} events; commit → confirm p50 {}, p99 {}, max {}; commit → CSI's consumer p50 {}, p99 {}, max {}",
        ms(percentile(&to_confirm, 0.5)),
        ms(percentile(&to_confirm, 0.99)),
        ms(*to_confirm.last().unwrap_or(&Duration::ZERO)),
        ms(percentile(&to_csi, 0.5)),
        ms(percentile(&to_csi, 0.99)),
        ms(*to_csi.last().unwrap_or(&Duration::ZERO)),
    );
    let ids: HashSet<&String> = all.iter().map(|(id, _, _, _)| id).collect();
    let missing = ids.iter().filter(|id| !got.contains_key(**id)).count();
    let delivered = deliveries.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "check: {} events committed, {} reached the CSI ({} deliveries), {missing} missing",
        ids.len(),
        got.len(),
        delivered
    );
    server.stop().await;
    for q in [&names.csi_queue, &names.inbound_queue, &names.dead_letters] {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [&names.exchange, &names.dead_letters] {
        let _ = channel
            .exchange_delete(x.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "ok".into()).await;
    if missing > 0 {
        std::process::exit(1);
    }
}
