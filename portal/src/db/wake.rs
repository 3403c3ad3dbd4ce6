//! Wake-ups: hints that rows were committed for the relay (the outbox) or for the job runners (the
//! jobs), so that they look at once instead of at their next poll. On PostgreSQL a trigger
//! notifies at commit (migration 0015) and [`listen`] hears every process's rows; on SQLite, which
//! serves one process, the submission desk rings after its commit. A hint may be lost or spurious:
//! the relay and the runners still poll, only less often, so nothing depends on it.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

/// The PostgreSQL channels the triggers notify.
const OUTBOX_CHANNEL: &str = "sportello_outbox";
const JOBS_CHANNEL: &str = "sportello_jobs";

static OUTBOX: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);
/// Per kind of job, the runners that run it.
static JOBS: LazyLock<Mutex<HashMap<String, Vec<watch::Sender<u64>>>>> =
    LazyLock::new(Default::default);

/// A receiver whose `changed()` resolves at the next ring after it last looked.
pub fn outbox() -> watch::Receiver<u64> {
    OUTBOX.subscribe()
}

/// Events were committed to the outbox.
pub fn ring_outbox() {
    OUTBOX.send_modify(|n| *n = n.wrapping_add(1));
}

/// A receiver rung when jobs of one of `kinds` are scheduled.
pub fn jobs(kinds: &[&str]) -> watch::Receiver<u64> {
    let (sender, receiver) = watch::channel(0);
    if let Ok(mut runners) = JOBS.lock() {
        for kind in kinds {
            let list = runners.entry((*kind).to_string()).or_default();
            list.retain(|s| s.receiver_count() > 0);
            list.push(sender.clone());
        }
    }
    receiver
}

/// Jobs of `kind` were committed (`None`: of any kind).
pub fn ring_jobs(kind: Option<&str>) {
    if let Ok(runners) = JOBS.lock() {
        for (k, list) in runners.iter() {
            if kind.is_none_or(|kind| kind == k) {
                for s in list {
                    s.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }
}

/// On PostgreSQL: listens to the triggers' channels on a connection of its own and rings the
/// topics, reconnecting after a failure, until `stop` turns true.
pub async fn listen(url: String, mut stop: watch::Receiver<bool>) {
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen_all([OUTBOX_CHANNEL, JOBS_CHANNEL]).await {
                Ok(()) => loop {
                    tokio::select! {
                        heard = listener.recv() => match heard {
                            Ok(n) if n.channel() == OUTBOX_CHANNEL => ring_outbox(),
                            Ok(n) => ring_jobs(Some(n.payload()).filter(|k| !k.is_empty())),
                            Err(e) => {
                                tracing::warn!(error = %e, "wake-ups: the listening connection failed");
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                },
                Err(e) => tracing::warn!(error = %e, "wake-ups: LISTEN failed"),
            },
            Err(e) => tracing::warn!(error = %e, "wake-ups: no listening connection"),
        }
        // Meanwhile the pollers poll; a missed hint only costs a poll interval.
        ring_outbox();
        ring_jobs(None);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}
