//! TLS for the gRPC listener: rustls with a configuration that is rebuilt from its files on
//! demand (certificate rotation) while connections already open keep their session, optional
//! mutual TLS, and the stream of accepted, handshaken connections tonic serves.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::ServerTls;
use crate::pem::{self, PemError};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration could not be built. Names files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// A file cannot be read or holds nothing usable.
    #[error(transparent)]
    File(#[from] PemError),
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("invalid TLS configuration: {0}")]
    Rustls(String),
}

/// The listener's TLS configuration, swappable while serving.
#[derive(Debug)]
pub struct ReloadableTls {
    files: ServerTls,
    current: ArcSwap<rustls::ServerConfig>,
}

impl ReloadableTls {
    /// Loads the files; fails when they are unusable.
    pub fn load(files: ServerTls) -> Result<Self, ServerTlsError> {
        let config = build(&files)?;
        Ok(Self { files, current: ArcSwap::from_pointee(config) })
    }

    /// Re-reads the files; on failure the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), ServerTlsError> {
        self.current.store(Arc::new(build(&self.files)?));
        Ok(())
    }

    /// The files to watch for changes.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let mut files = vec![self.files.cert.clone(), self.files.key.clone()];
        files.extend(self.files.client_ca.clone());
        files
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

fn build(files: &ServerTls) -> Result<rustls::ServerConfig, ServerTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = pem::certificates(&files.cert, "the server certificate")?;
    let key = pem::private_key(&files.key, "the server key")?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerTlsError::Rustls(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = pem::root_store(ca, "the client CA")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ServerTlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| ServerTlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts TCP connections and yields those that complete a TLS handshake. Handshakes run
/// concurrently, each bounded, so a slow or hostile client cannot stall the listener.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadableTls>,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                stream = crate::accept::accept(&listener) => stream,
                () = sender.closed() => return,
            };
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        let _ = sender.send(Ok(tls_stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

impl crate::reload::Reload for ReloadableTls {
    fn name(&self) -> &'static str {
        "TLS certificate"
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        ReloadableTls::files(self)
    }

    fn reload(&self) -> Result<(), crate::reload::ReloadError> {
        Ok(ReloadableTls::reload(self)?)
    }
}
