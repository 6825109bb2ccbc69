//! Watches the database with a bounded ping on a dedicated connection and publishes whether it
//! is reachable, so the health service tells the truth and calls fail fast during an outage.
//!
//! The probe uses its own connection, not the pool, so a saturated pool never reads as an outage.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::MonitorConfig;
use crate::storage::pool::{PgConn, Pool};

/// Starts the monitor. The receiver reads `true` while the database is reachable; it starts
/// `false` until the first probe succeeds.
pub(crate) fn spawn(pool: Arc<Pool>, config: MonitorConfig, shutdown: CancellationToken) -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(!config.enabled);
    if config.enabled {
        tokio::spawn(watch_database(pool, config, sender, shutdown));
    }
    receiver
}

async fn watch_database(
    pool: Arc<Pool>,
    config: MonitorConfig,
    sender: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut probe = Probe { pool, conn: None, timeout: config.probe_timeout };
    let mut streak = Streak::default();
    loop {
        let ok = probe.run().await;
        let up = *sender.borrow();
        if let Some(next) = streak.observe(ok, up, &config) {
            let span = tracing::info_span!("checkpointd.database_health", database_up = next);
            let _entered = span.enter();
            if next {
                tracing::info!(target: "checkpointd::health", "database reachable: serving");
            } else {
                tracing::warn!(target: "checkpointd::health", failures = config.failures_to_down, "database unreachable: not serving");
            }
            sender.send_replace(next);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(config.interval) => {}
        }
    }
}

struct Probe {
    pool: Arc<Pool>,
    conn: Option<PgConn>,
    timeout: Duration,
}

impl Probe {
    /// Pings over the kept connection, reconnecting when there is none; a failure drops it.
    async fn run(&mut self) -> bool {
        let ok = tokio::time::timeout(self.timeout, self.ping()).await.unwrap_or(false);
        if !ok {
            self.conn = None;
        }
        ok
    }

    async fn ping(&mut self) -> bool {
        if self.conn.is_none() {
            match self.pool.dedicated().await {
                Ok(conn) => self.conn = Some(conn),
                Err(e) => {
                    tracing::debug!(target: "checkpointd::health", error = %e, "health probe cannot connect");
                    return false;
                }
            }
        }
        match self.conn.as_mut() {
            Some(conn) => conn.batch_execute("SELECT 1").await.is_ok(),
            None => false,
        }
    }
}

/// Counts consecutive probe results and decides state changes.
#[derive(Debug, Default)]
struct Streak {
    successes: u32,
    failures: u32,
}

impl Streak {
    /// Returns the new state when `ok` completes a streak that changes `up`.
    fn observe(&mut self, ok: bool, up: bool, config: &MonitorConfig) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            (!up && self.successes >= config.successes_to_up.max(1)).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (up && self.failures >= config.failures_to_down.max(1)).then_some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MonitorConfig {
        MonitorConfig {
            enabled: true,
            interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            failures_to_down: 2,
            successes_to_up: 1,
        }
    }

    #[test]
    fn goes_down_after_consecutive_failures_and_up_after_a_success() {
        let mut streak = Streak::default();
        let c = config();
        assert_eq!(streak.observe(true, false, &c), Some(true), "first success brings it up");
        assert_eq!(streak.observe(false, true, &c), None, "one failure is not an outage");
        assert_eq!(streak.observe(true, true, &c), None);
        assert_eq!(streak.observe(false, true, &c), None);
        assert_eq!(streak.observe(false, true, &c), Some(false));
        assert_eq!(streak.observe(false, false, &c), None);
        assert_eq!(streak.observe(true, false, &c), Some(true));
    }
}
