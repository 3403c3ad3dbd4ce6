//! Wake-ups: hints that rows were committed for the relay (the outbox) or for the job runners (the
//! jobs), so that they look at once instead of at their next poll. On PostgreSQL a trigger
//! notifies at commit (migration 0015) and [`listen`] hears every process's rows; on SQLite, which
//! serves one process, the submission desk rings after its commit. A hint may be lost or spurious:
//! the relay and the runners still poll, only less often, so nothing depends on it.

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Events added to the outbox.
    Outbox,
    /// Jobs scheduled.
    Jobs,
}

static OUTBOX: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);
static JOBS: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

impl Topic {
    fn sender(self) -> &'static watch::Sender<u64> {
        match self {
            Topic::Outbox => &OUTBOX,
            Topic::Jobs => &JOBS,
        }
    }

    /// The PostgreSQL channel the trigger notifies.
    pub fn channel(self) -> &'static str {
        match self {
            Topic::Outbox => "sportello_outbox",
            Topic::Jobs => "sportello_jobs",
        }
    }

    /// A receiver whose `changed()` resolves at the next ring after it last looked.
    pub fn subscribe(self) -> watch::Receiver<u64> {
        self.sender().subscribe()
    }

    pub fn ring(self) {
        self.sender().send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// On PostgreSQL: listens to the triggers' channels on a connection of its own and rings the
/// topics, reconnecting after a failure, until `stop` turns true.
pub async fn listen(url: String, mut stop: watch::Receiver<bool>) {
    let topics = [Topic::Outbox, Topic::Jobs];
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => {
                match listener
                    .listen_all(topics.iter().map(|t| t.channel()))
                    .await
                {
                    Ok(()) => loop {
                        tokio::select! {
                            heard = listener.recv() => match heard {
                                Ok(n) => {
                                    if let Some(t) = topics.iter().find(|t| t.channel() == n.channel()) {
                                        t.ring();
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "wake-ups: the listening connection failed");
                                    break;
                                }
                            },
                            _ = stop.changed() => return,
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "wake-ups: LISTEN failed"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "wake-ups: no listening connection"),
        }
        // Meanwhile the pollers poll; a missed hint only costs a poll interval.
        for t in topics {
            t.ring();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}
