//! Scale-out: two `sportello serve` processes on one PostgreSQL, one RabbitMQ and one S3 bucket,
//! behind HAProxy (Debian's, installed by `.ci/setup --tests`), as the README's production section
//! tells a region to grow. A click day goes through the proxy to both; one process is killed
//! (SIGKILL) in the middle of it. Whatever was answered with a receipt is stored once, the numbers
//! are gapless across the two processes, a session made on one is valid on the other, each receipt
//! job runs once (but for those the dead process was running), and every event reaches the CSI's
//! queue through one relay at a time. Always on PostgreSQL, whatever `TEST_DB` says: two processes
//! cannot share an embedded database.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portal::applications::store;
use portal::clock::{Clock, SystemClock};
use portal::config::Backend;
use portal::db::Db;

use crate::bench_common::{self, open_loop, serve, Served, SmtpSink};
use crate::broker::{broker_url, remove, unique_prefix, CsiQueue, TURN};
use crate::support::{free_port, S3Server, TestDatabase};

/// HAProxy in front of `backends` on `port`, health-checking `/readyz`; each answer says which
/// process gave it (`X-Servito-Da`). Connection failures and empty answers are retried on the
/// other process: "Conferma e invia" is idempotent (a second one creates nothing).
fn proxy(dir: &Path, port: u16, backends: &[(&str, &str)]) -> std::process::Child {
    let servers: String = backends
        .iter()
        .map(|(name, base)| {
            format!(
                "    server {name} {} check inter 500ms fall 3 rise 1\n",
                base.trim_start_matches("http://")
            )
        })
        .collect();
    let config = format!(
        "global\n    maxconn 4096\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    timeout check 5s\n    \
         retries 2\n    option redispatch\n    retry-on conn-failure empty-response\n\
         frontend portal\n    bind 127.0.0.1:{port}\n    default_backend sportello\n\
         backend sportello\n    balance roundrobin\n    option httpchk GET /readyz\n    \
         http-response set-header X-Servito-Da %s\n{servers}"
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, config).unwrap();
    std::process::Command::new("haproxy")
        .arg("-f")
        .arg(&file)
        .arg("-db")
        .stdout(std::fs::File::create(dir.join("haproxy.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("haproxy.err")).unwrap())
        .spawn()
        .expect("haproxy (installed by .ci/setup --tests)")
}

struct KillOnDrop(Vec<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_processes_behind_a_proxy_share_a_click_day_and_one_killed_loses_nothing() {
    let _turn = TURN.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create_on(dir.path(), Backend::Postgres).await;
    let s3 = S3Server::start("sportello-scaleout").await;
    let prefix = unique_prefix("scaleout");
    let csi = CsiQueue::start(&prefix).await;
    let (smtp, smtp_url) = SmtpSink::start().await;
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let env: Vec<(&str, String)> = vec![
        ("SPORTELLO_PUBLIC_URL", public.clone()),
        ("SPORTELLO_BROKER__URL", broker_url()),
        ("SPORTELLO_BROKER__PREFIX", prefix.clone()),
        ("SPORTELLO_EMAIL__SMTP_URL", smtp_url),
        ("SPORTELLO_DOCUMENTS__STORAGE__KIND", "s3".into()),
        ("SPORTELLO_DOCUMENTS__STORAGE__BUCKET", s3.bucket.clone()),
        ("SPORTELLO_DOCUMENTS__STORAGE__ENDPOINT", s3.endpoint()),
        ("SPORTELLO_DOCUMENTS__STORAGE__REGION", "eu-south-1".into()),
        (
            "SPORTELLO_DOCUMENTS__STORAGE__ACCESS_KEY_ID",
            "sportello".into(),
        ),
        (
            "SPORTELLO_DOCUMENTS__STORAGE__SECRET_ACCESS_KEY",
            "segreto-di-prova".into(),
        ),
        ("SPORTELLO_DOCUMENTS__STORAGE__ALLOW_HTTP", "true".into()),
        // A dead process's jobs are taken over after this.
        ("SPORTELLO_JOBS__LEASE_SECONDS", "6".into()),
    ];
    // The first process makes the schema, the demo's enti and the keys both read (one data
    // folder, as one configuration volume); the second starts on them.
    let a = serve(dir.path(), &database.url, &env).await;
    let b = serve(dir.path(), &database.url, &env).await;
    let (a_base, b_base) = (a.base.clone(), b.base.clone());
    let Served { child: a_child, .. } = a;
    let Served { child: b_child, .. } = b;
    let b_pid = b_child.id();
    let haproxy = proxy(dir.path(), port, &[("a", &a_base), ("b", &b_base)]);
    let _children = KillOnDrop(vec![a_child, b_child, haproxy]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    until(
        "the proxy sees both processes",
        Duration::from_secs(20),
        async || {
            let mut seen = HashSet::new();
            for _ in 0..6 {
                if let Ok(r) = client.get(format!("{public}/readyz")).send().await {
                    if let Some(s) = r.headers().get("x-servito-da") {
                        seen.insert(s.to_str().unwrap_or_default().to_string());
                    }
                }
            }
            seen.len() == 2
        },
    )
    .await;

    // Citizens: a session, an e-mail address and a complete SAD draft each.
    const N: usize = 800;
    let db = Db::connect(&database.url, 4).await.unwrap();
    let now = SystemClock.now_ms();
    let mut people = Vec::new();
    for i in 0..N {
        let s =
            bench_common::citizen_with_email(&db, now, 7000 + i, &format!("c{i}@esempio.it")).await;
        let draft = bench_common::sad_draft(&db, now, &s.cf, i).await;
        people.push((s, draft));
    }
    let people = Arc::new(people);

    // A session is one on both processes.
    for base in [&a_base, &b_base] {
        let r = client
            .get(format!("{base}/area-personale"))
            .header("Cookie", format!("sportello_session={}", people[0].0.token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the session is valid on {base}");
    }

    let send = {
        let (client, people, public) = (client.clone(), people.clone(), public.clone());
        move |i: usize| {
            let (client, people, public) = (client.clone(), people.clone(), public.clone());
            async move {
                let (s, draft) = &people[i];
                let r = bench_common::send_draft(&client, &public, s, draft).await;
                match r {
                    Ok(r) => {
                        let by = r
                            .headers()
                            .get("x-servito-da")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("?")
                            .to_string();
                        let ok = bench_common::is_receipt(&r);
                        (ok, format!("{} {by}", r.status().as_u16()))
                    }
                    Err(e) => (false, e.to_string()),
                }
            }
        }
    };

    // The click day through the proxy, 100 a second (the suite's debug build); the second process
    // is killed after 3 s.
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &b_pid.to_string()])
            .status();
    });
    let outcomes = open_loop(N, Some(100.0), send.clone()).await;
    killer.await.unwrap();
    let answered: Vec<usize> = outcomes.iter().filter(|o| o.ok).map(|o| o.i).collect();
    let by_b = outcomes
        .iter()
        .filter(|o| o.ok && o.what.ends_with(" b"))
        .count();
    let by_a = outcomes
        .iter()
        .filter(|o| o.ok && o.what.ends_with(" a"))
        .count();
    eprintln!(
        "{}; answered by a {by_a}, by b {by_b}",
        bench_common::report("scale-out click day, 100/s, b killed after 3 s", &outcomes)
    );
    assert!(by_a > 0 && by_b > 0, "both processes took submissions");

    // Every answered submission is stored, with its number.
    for &i in &answered {
        let app = store::get(&db, &people[i].1).await.unwrap().unwrap();
        assert!(app.numero.is_some(), "citizen {i} got a receipt: stored");
    }
    // Those without an answer press again (the proxy now sends them to the survivor): each gets
    // a receipt, and nothing is created twice.
    let failed: Vec<usize> = outcomes.iter().filter(|o| !o.ok).map(|o| o.i).collect();
    let failed = Arc::new(failed);
    let again = {
        let (failed, send) = (failed.clone(), send.clone());
        open_loop(failed.len(), None, move |k| send(failed[k])).await
    };
    assert!(
        again.iter().all(|o| o.ok),
        "pressed again, every one answered: {:?}",
        again
            .iter()
            .filter(|o| !o.ok)
            .map(|o| &o.what)
            .take(5)
            .collect::<Vec<_>>()
    );

    let rows = bench_common::numbers_per_ente(&db).await;
    assert_eq!(
        rows.iter().map(|r| r.1).sum::<i64>(),
        N as i64,
        "each stored once"
    );
    for (ente, n, distinct, max) in &rows {
        assert!(
            n == distinct && distinct == max,
            "{ente}: {n} pratiche numbered 1..{max} without gaps"
        );
    }

    // Every receipt job done; only those the killed process was running ran twice.
    until("every receipt e-mailed", Duration::from_secs(90), async || {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE idempotency_key LIKE 'alert:ricevuta:%' AND status <> 'done'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        left == 0
    })
    .await;
    let (jobs, twice): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END) AS BIGINT) FROM jobs \
         WHERE idempotency_key LIKE 'alert:ricevuta:%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(jobs, N as i64, "one receipt job per pratica");
    let runners = portal::config::Config::default().jobs.lanes.alerts.workers as i64;
    assert!(
        twice <= runners,
        "{twice} receipt jobs ran again: at most the dead process's {runners} alert runners'"
    );
    let mut per_citizen: HashMap<String, usize> = HashMap::new();
    for (to, _) in smtp.received.lock().unwrap().iter() {
        *per_citizen.entry(to.clone()).or_default() += 1;
    }
    assert_eq!(
        per_citizen.len(),
        N,
        "every citizen got the receipt by e-mail"
    );
    let doubled = per_citizen.values().filter(|&&n| n > 1).count();
    assert!(
        doubled as i64 <= twice,
        "{doubled} e-mailed twice, {twice} jobs ran twice"
    );

    // Every event reaches the CSI's queue, relayed by one process at a time (the lease), the
    // survivor taking over from the dead one.
    let events: HashSet<String> = sqlx::query_scalar::<_, String>(
        "SELECT event_id FROM outbox WHERE event_type = 'pratica.inviata'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(events.len(), N, "one event per pratica");
    until(
        "every event on the CSI's queue",
        Duration::from_secs(90),
        async || events.is_subset(&csi.distinct()),
    )
    .await;
    let holders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM relay_leases")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(holders, 1, "one relay lease");
    drop(_children);
    remove(&prefix).await;
}
