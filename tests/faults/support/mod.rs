//! Fault-injection support: TLS clusters, the ledger load, a fault proxy, PgBouncer, network
//! namespaces and log capture.

pub mod certs;
pub mod cluster;
pub mod load;
pub mod logs;
pub mod netns;
pub mod pgbouncer;
pub mod proxy;
pub mod service;

/// Fault scenarios run one at a time: they restart servers and load both cores. (An async
/// mutex, so a failed scenario does not poison the others.)
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}
