//! A TCP proxy between checkpointd and PostgreSQL that cuts, refuses, delays or swallows traffic,
//! or accepts new connections and never answers them.
//! A userspace proxy cannot fake a half-open socket (its kernel still acknowledges data), which
//! `netns.rs` covers; it fakes everything else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PASS: u8 = 0;
const BLACKHOLE: u8 = 1;
const REFUSE: u8 = 2;
const SILENT: u8 = 3;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Keep connections open but forward nothing (no FIN, no RST).
    Blackhole,
    /// Accept and immediately reset new connections.
    Refuse,
    /// Accept new connections and never answer them, nor close them (a hung pooler or load
    /// balancer); connections already open keep working.
    Silent,
}

#[derive(Debug)]
struct Control {
    mode: AtomicU8,
    latency_ms: AtomicU64,
    cut: watch::Sender<u64>,
    refused: AtomicU64,
    /// Connections accepted in silent mode: kept open, unanswered, until the proxy is dropped.
    silent: Mutex<Vec<TcpStream>>,
}

/// A running proxy.
#[derive(Debug)]
pub struct FaultProxy {
    pub port: u16,
    control: Arc<Control>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies 127.0.0.1:<port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let control = Arc::new(Control {
            mode: AtomicU8::new(PASS),
            latency_ms: AtomicU64::new(0),
            cut: watch::channel(0).0,
            refused: AtomicU64::new(0),
            silent: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept(listener, upstream, control.clone()));
        FaultProxy { port, control, task }
    }

    /// Switches the mode for all traffic, current and new.
    pub fn set_mode(&self, mode: Mode) {
        let value = match mode {
            Mode::Pass => PASS,
            Mode::Blackhole => BLACKHOLE,
            Mode::Refuse => REFUSE,
            Mode::Silent => SILENT,
        };
        self.control.mode.store(value, Ordering::SeqCst);
    }

    /// Delays every chunk by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.control.latency_ms.store(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// How many connections were refused so far.
    pub fn refused(&self) -> u64 {
        self.control.refused.load(Ordering::SeqCst)
    }

    /// How many connections were accepted and left unanswered so far.
    pub fn silent(&self) -> usize {
        self.control.silent.lock().map_or(0, |held| held.len())
    }

    /// Resets every open connection (both sides see RST).
    pub fn cut_all(&self) {
        self.control.cut.send_modify(|generation| *generation += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_all();
    }
}

/// Makes closing the socket send RST instead of FIN. A zero linger never blocks on drop, which
/// is what tokio's deprecation warns about.
#[allow(deprecated)]
fn reset_on_close(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

async fn accept(listener: TcpListener, upstream: SocketAddr, control: Arc<Control>) {
    while let Ok((client, _)) = listener.accept().await {
        match control.mode.load(Ordering::SeqCst) {
            REFUSE => {
                reset_on_close(&client);
                drop(client);
                control.refused.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            SILENT => {
                if let Ok(mut held) = control.silent.lock() {
                    held.push(client);
                }
                continue;
            }
            _ => {}
        }
        tokio::spawn(relay(client, upstream, control.clone()));
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, control: Arc<Control>) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    reset_on_close(&client);
    reset_on_close(&server);
    let mut cut = control.cut.subscribe();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut up = tokio::spawn(pump(client_read, server_write, control.clone()));
    let mut down = tokio::spawn(pump(server_read, client_write, control.clone()));
    tokio::select! {
        _ = cut.changed() => {}
        _ = async { let _ = (&mut up).await; let _ = (&mut down).await; } => {}
    }
    up.abort();
    down.abort();
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    control: Arc<Control>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if control.mode.load(Ordering::SeqCst) == BLACKHOLE {
            continue;
        }
        let latency = control.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
