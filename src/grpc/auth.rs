//! Bearer-token authentication as a tower layer: UNAUTHENTICATED without a valid token,
//! PERMISSION_DENIED for a token that may not do this; the caller's [`Principal`] (its thread
//! scope) travels to the handlers in the request extensions.
//!
//! Tokens are kept as SHA-256 digests and every stored digest is compared in constant time, so
//! neither the comparison nor the position of a match leaks through timing. Token text never
//! reaches a log or a message.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::{HeaderMap, Request, Response};
use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;
use tonic::Status;
use tower::{Layer, Service};

use crate::config::TokenEntry;
use crate::domain::Scope;

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (for logs).
    pub name: String,
    /// The threads it may touch.
    pub scope: Scope,
}

#[derive(Debug)]
struct StoredToken {
    digest: [u8; 32],
    principal: Principal,
}

/// Checks tokens; the token set can be replaced while serving (rotation).
#[derive(Debug)]
pub struct Authenticator {
    tokens: ArcSwap<Vec<StoredToken>>,
    open_health: bool,
    open_reflection: bool,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

fn stored(entries: &[TokenEntry]) -> Vec<StoredToken> {
    entries
        .iter()
        .map(|entry| StoredToken {
            digest: sha256(entry.token.expose().as_bytes()),
            principal: Principal {
                name: entry.name.clone(),
                scope: if entry.prefixes.is_empty() { Scope::All } else { Scope::Prefixes(entry.prefixes.clone()) },
            },
        })
        .collect()
}

impl Authenticator {
    /// Accepts `entries`; health checks and reflection may be left open.
    pub fn new(entries: &[TokenEntry], open_health: bool, open_reflection: bool) -> Self {
        Self { tokens: ArcSwap::from_pointee(stored(entries)), open_health, open_reflection }
    }

    /// Replaces the accepted tokens (calls in flight keep their principal).
    pub fn replace(&self, entries: &[TokenEntry]) {
        self.tokens.store(Arc::new(stored(entries)));
    }

    /// How many tokens are accepted.
    pub fn token_count(&self) -> usize {
        self.tokens.load().len()
    }

    /// Authenticates a call to `path`; `None` when the path needs no token.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<Option<Principal>, Status> {
        if (self.open_health && path.starts_with("/grpc.health.v1.Health/"))
            || (self.open_reflection && path.starts_with("/grpc.reflection."))
        {
            return Ok(None);
        }
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "missing bearer token: send the metadata `authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("malformed authorization metadata: expected `Bearer <token>`"))?;
        let principal = self.find(token).ok_or_else(|| Status::unauthenticated("unknown or revoked bearer token"))?;
        if principal.scope != Scope::All && path.starts_with("/checkpoint.v1.DiagnosticsService/") {
            return Err(Status::permission_denied(format!(
                "token {:?} is scoped to some threads and may not read server diagnostics",
                principal.name
            )));
        }
        Ok(Some(principal))
    }

    /// The principal of `token`, comparing against every stored digest in constant time.
    fn find(&self, token: &str) -> Option<Principal> {
        let presented = sha256(token.as_bytes());
        let tokens = self.tokens.load();
        let mut found: Option<&StoredToken> = None;
        for stored in tokens.iter() {
            if bool::from(stored.digest.ct_eq(&presented)) {
                found = Some(stored);
            }
        }
        found.map(|t| t.principal.clone())
    }
}

/// The layer; `None` turns authentication off.
#[derive(Debug, Clone, Default)]
pub struct AuthLayer {
    authenticator: Option<Arc<Authenticator>>,
}

impl AuthLayer {
    /// Authenticates with `authenticator`, or lets every call through when `None`.
    pub fn new(authenticator: Option<Arc<Authenticator>>) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate { inner, authenticator: self.authenticator.clone() }
    }
}

/// The wrapped service.
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    authenticator: Option<Arc<Authenticator>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authenticate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(authenticator) = &self.authenticator {
            match authenticator.check(request.uri().path(), request.headers()) {
                Ok(Some(principal)) => {
                    request.extensions_mut().insert(principal);
                }
                Ok(None) => {}
                Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
            }
        }
        Box::pin(self.inner.call(request))
    }
}

/// The scope of the call's principal (every thread when unauthenticated).
pub(crate) fn scope_of<T>(request: &tonic::Request<T>) -> Scope {
    request.extensions().get::<Principal>().map(|p| p.scope.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, parse_tokens};

    const FULL: &str = "full-access-token-0123456789";
    const TENANT: &str = "tenant-a-token-0123456789ab";

    fn authenticator() -> Authenticator {
        let tokens = parse_tokens(&format!("{FULL} name=ops\n{TENANT} name=tenant-a prefix=a/")).expect("tokens");
        Authenticator::new(&tokens, true, false)
    }

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
        }
        headers
    }

    const PUT: &str = "/checkpoint.v1.CheckpointService/Put";

    #[test]
    fn a_missing_malformed_or_unknown_token_is_unauthenticated() {
        let auth = authenticator();
        for value in [None, Some("Basic abc"), Some("Bearer "), Some("Bearer not-a-known-token-at-all")] {
            let status = auth.check(PUT, &headers(value)).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{value:?}");
        }
    }

    #[test]
    fn a_known_token_yields_its_principal() {
        let auth = authenticator();
        let full = auth.check(PUT, &headers(Some(&format!("Bearer {FULL}")))).expect("ok").expect("principal");
        assert_eq!((full.name.as_str(), full.scope), ("ops", Scope::All));
        let tenant = auth.check(PUT, &headers(Some(&format!("Bearer {TENANT}")))).expect("ok").expect("principal");
        assert_eq!(tenant.scope, Scope::Prefixes(vec!["a/".into()]));
    }

    #[test]
    fn health_can_be_open_while_reflection_is_closed() {
        let auth = authenticator();
        assert!(matches!(auth.check("/grpc.health.v1.Health/Check", &headers(None)), Ok(None)));
        assert!(auth.check("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &headers(None)).is_err());
    }

    #[test]
    fn scoped_tokens_may_not_read_diagnostics() {
        let status = authenticator()
            .check("/checkpoint.v1.DiagnosticsService/GetStatus", &headers(Some(&format!("Bearer {TENANT}"))))
            .expect_err("denied");
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn rotation_replaces_the_accepted_tokens() {
        let auth = authenticator();
        let next = TokenEntry { token: Secret::new("rotated-token-0123456789"), name: "next".into(), prefixes: vec![] };
        auth.replace(&[next]);
        assert!(auth.check(PUT, &headers(Some(&format!("Bearer {FULL}")))).is_err(), "the old token is revoked");
        assert!(auth.check(PUT, &headers(Some("Bearer rotated-token-0123456789"))).is_ok());
    }

    #[test]
    fn messages_never_contain_a_token() {
        let status = authenticator().check(PUT, &headers(Some("Bearer some-secret-guess-12345"))).expect_err("unknown");
        assert!(!status.message().contains("some-secret-guess"));
    }
}

/// The token file behind an authenticator, combined with the tokens given inline.
#[derive(Debug)]
pub(crate) struct TokenFile {
    path: std::path::PathBuf,
    inline: Vec<TokenEntry>,
    authenticator: Arc<Authenticator>,
}

impl TokenFile {
    /// Watches `path` for `authenticator`, keeping `inline` tokens too.
    pub(crate) fn new(path: std::path::PathBuf, inline: Vec<TokenEntry>, authenticator: Arc<Authenticator>) -> Self {
        Self { path, inline, authenticator }
    }

    /// All tokens: the file's and the inline ones.
    pub(crate) fn read(&self) -> Result<Vec<TokenEntry>, crate::config::TokenFileError> {
        let mut tokens = crate::config::read_token_file(&self.path)?;
        tokens.extend(self.inline.iter().cloned());
        Ok(tokens)
    }
}

impl crate::reload::Reload for TokenFile {
    fn name(&self) -> &'static str {
        "bearer tokens"
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        vec![self.path.clone()]
    }

    fn reload(&self) -> Result<(), crate::reload::ReloadError> {
        self.authenticator.replace(&self.read()?);
        Ok(())
    }
}
