//! Re-reads configuration files while serving: on SIGHUP, and when a watched file changes
//! (checked every few seconds), so certificates and tokens rotate without a restart or a dropped
//! connection. A file that fails to load leaves the previous configuration in force.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

/// Something built from files that can be rebuilt.
pub(crate) trait Reload: Send + Sync {
    /// What it is, for logs.
    fn name(&self) -> &'static str;
    /// The files it is built from.
    fn files(&self) -> Vec<PathBuf>;
    /// Rebuilds it from its files.
    fn reload(&self) -> Result<(), ReloadError>;
}

/// Why a reload failed: each source's own typed error (a token file's `TokenFileError`, a
/// certificate's `ServerTlsError`), behind one type so every source can be watched alike.
pub(crate) type ReloadError = Box<dyn std::error::Error + Send + Sync>;

/// A file's identity for change detection: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

fn stamps(target: &dyn Reload) -> HashMap<PathBuf, Stamp> {
    target.files().into_iter().map(|f| (f.clone(), stamp(&f))).collect()
}

fn reload(target: &dyn Reload, why: &str) {
    match target.reload() {
        Ok(()) => tracing::info!(what = target.name(), why, "configuration reloaded"),
        Err(e) => {
            tracing::error!(what = target.name(), why, error = %e, "reload failed; keeping the previous configuration")
        }
    }
}

/// Watches `targets` until `stop` is cancelled.
pub(crate) fn spawn(targets: Vec<Arc<dyn Reload>>, poll: Duration, stop: CancellationToken) {
    if targets.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut seen: Vec<HashMap<PathBuf, Stamp>> = targets.iter().map(|t| stamps(t.as_ref())).collect();
        let mut hangup = hangup_signal();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = next_hangup(&mut hangup) => {
                    for target in &targets {
                        reload(target.as_ref(), "SIGHUP");
                    }
                }
                () = tokio::time::sleep(poll) => {
                    for (target, before) in targets.iter().zip(seen.iter_mut()) {
                        let now = stamps(target.as_ref());
                        if now != *before {
                            *before = now;
                            reload(target.as_ref(), "file changed");
                        }
                    }
                }
            }
        }
    });
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn next_hangup(signal: &mut Hangup) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}
