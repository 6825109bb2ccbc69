//! PEM files for both TLS stacks (the gRPC listener and the database client): certificate
//! chains, private keys and root stores, with errors that name the file, never its contents.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file cannot be read or holds nothing usable.
#[derive(Debug, thiserror::Error)]
#[error("cannot load {what} from {path}: {problem}")]
pub struct PemError {
    /// Which file, in words ("the server key").
    pub what: &'static str,
    /// Its path.
    pub path: String,
    /// What went wrong.
    pub problem: String,
}

impl PemError {
    fn new(what: &'static str, path: &Path, problem: impl ToString) -> Self {
        Self { what, path: path.display().to_string(), problem: problem.to_string() }
    }
}

/// Every certificate in the file; at least one.
pub(crate) fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemError::new(what, path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| PemError::new(what, path, e))?;
    if certs.is_empty() {
        return Err(PemError::new(what, path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// The first private key in the file.
pub(crate) fn private_key(path: &Path, what: &'static str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::new(what, path, e))
}

/// A root store of every certificate in the file.
pub(crate) fn root_store(path: &Path, what: &'static str) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, what)? {
        roots.add(cert).map_err(|e| PemError::new(what, path, e))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_named_but_its_contents_never_are() {
        let path = std::env::temp_dir().join(format!("checkpointd-pem-test-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate: hunter2-secret\n").expect("write the file");
        let error = certificates(&path, "the root certificates").expect_err("nothing usable");
        let _ = std::fs::remove_file(&path);
        let message = error.to_string();
        assert!(
            message.contains("the root certificates") && message.contains(&path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("no PEM certificate found"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let error = private_key(Path::new("/nonexistent/checkpointd.key"), "the server key").expect_err("missing");
        assert!(
            error.to_string().starts_with("cannot load the server key from /nonexistent/checkpointd.key"),
            "{error}"
        );
    }
}
