//! The server under test: started from this very binary (or an existing process named by pid),
//! and its CPU time and memory read from `/proc`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::Channel;

use crate::BenchError;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// CPU time and memory of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory now, in bytes.
    pub rss_bytes: u64,
    /// The most resident memory so far, in bytes.
    pub peak_rss_bytes: u64,
}

/// Reads the usage of process `pid` (Linux).
pub(crate) fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kilobytes = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(Usage {
        cpu_seconds: ticks / clock_ticks_per_second(),
        rss_bytes: kilobytes("VmRSS:")? * 1024,
        peak_rss_bytes: kilobytes("VmHWM:")? * 1024,
    })
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A server this benchmark started; stopped when dropped.
#[derive(Debug)]
pub(crate) struct SpawnedServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl SpawnedServer {
    /// Starts `checkpointd serve` (this executable) against `database_url` with `extra` flags.
    pub(crate) fn start(database_url: &str, extra: &[String]) -> std::io::Result<SpawnedServer> {
        let port = checkpointd::devdb::free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(server_binary()?)
            .args(["serve", "--listen", &addr.to_string()])
            .args(extra)
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(SpawnedServer { child, addr })
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// The `checkpointd` binary built beside this one (cargo puts both in the same directory).
fn server_binary() -> std::io::Result<std::path::PathBuf> {
    let binary = std::env::current_exe()?.with_file_name("checkpointd");
    if binary.is_file() {
        return Ok(binary);
    }
    let message = format!("no checkpointd binary at {} (build it, or give --target)", binary.display());
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, message))
}

/// Waits until the server at `addr` reports SERVING.
pub(super) async fn wait_until_serving(addr: SocketAddr, limit: Duration) -> Result<(), BenchError> {
    let deadline = tokio::time::Instant::now() + limit;
    let endpoint = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| BenchError::Connect { target: addr, source: e.into() })?;
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let request = HealthCheckRequest { service: "checkpoint.v1.CheckpointService".into() };
            if let Ok(response) = HealthClient::new(channel).check(request).await
                && response.into_inner().status == ServingStatus::Serving as i32
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BenchError::NotServing { addr, limit });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_usage() {
        let own = usage(std::process::id()).expect("usage of this process");
        assert!(own.rss_bytes > 0 && own.peak_rss_bytes >= own.rss_bytes);
        assert!(own.cpu_seconds >= 0.0);
    }
}
