//! The CheckpointService handlers: validate, convert, call the store, convert back.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::domain::Scope;
use crate::grpc::auth::scope_of;
use crate::grpc::convert::Converter;
use crate::grpc::deadline::{client_deadline, unary_deadline};
use crate::grpc::pb;
use crate::grpc::pb::checkpoint_service_server::CheckpointService;
use crate::storage::Store;

/// The gRPC face of the store.
#[derive(Debug, Clone)]
pub struct CheckpointGrpc {
    store: Arc<Store>,
    convert: Converter,
    default_deadline: Duration,
}

impl CheckpointGrpc {
    /// Handlers over `store`, enforcing the limits of `validator`.
    pub fn new(store: Arc<Store>, validator: crate::domain::Validator, default_deadline: Duration) -> Self {
        Self { store, convert: Converter::new(validator), default_deadline }
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListResponse, Status>> + Send + 'static>>;

/// What every unary handler starts from: the call's deadline, the caller's scope and the message.
struct Unary<T> {
    deadline: Instant,
    scope: Scope,
    message: T,
}

impl CheckpointGrpc {
    /// Splits a unary request into its deadline (the client's, or the default), scope and message.
    fn unary<T>(&self, request: Request<T>) -> Unary<T> {
        let deadline = unary_deadline(request.metadata(), self.default_deadline);
        let scope = scope_of(&request);
        Unary { deadline, scope, message: request.into_inner() }
    }
}

/// Names the call's thread on its span, then refuses it unless the thread is inside `scope`.
fn admit(scope: &Scope, thread_id: &str, checkpoint_ns: Option<&str>) -> Result<(), Status> {
    record_scope(thread_id, checkpoint_ns);
    authorize(scope, [thread_id])
}

/// PERMISSION_DENIED unless every thread is inside the caller's scope.
fn authorize<'a>(scope: &Scope, thread_ids: impl IntoIterator<Item = &'a str>) -> Result<(), Status> {
    match scope.first_denied(thread_ids) {
        Some(thread_id) => {
            Err(Status::permission_denied(format!("thread {thread_id:?} is outside this token's scope")))
        }
        None => Ok(()),
    }
}

/// Names the thread and namespace on the call's span (never values or metadata contents).
fn record_scope(thread_id: &str, checkpoint_ns: Option<&str>) {
    let span = tracing::Span::current();
    span.record("checkpointd.thread_id", thread_id);
    if let Some(ns) = checkpoint_ns {
        span.record("checkpointd.checkpoint_ns", ns);
    }
}

#[tonic::async_trait]
impl CheckpointService for CheckpointGrpc {
    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let Unary { deadline, scope, message } = self.unary(request);
        let put = self.convert.put(message)?;
        admit(&scope, &put.thread_id, Some(&put.checkpoint_ns))?;
        let stored = self.store.put(put, deadline).await?;
        Ok(Response::new(pb::PutResponse { config: Some(stored.into()) }))
    }

    async fn put_writes(
        &self,
        request: Request<pb::PutWritesRequest>,
    ) -> Result<Response<pb::PutWritesResponse>, Status> {
        let Unary { deadline, scope, message } = self.unary(request);
        let writes = self.convert.put_writes(message)?;
        admit(&scope, &writes.thread_id, Some(&writes.checkpoint_ns))?;
        self.store.put_writes(&writes, deadline).await?;
        Ok(Response::new(pb::PutWritesResponse {}))
    }

    async fn get_tuple(&self, request: Request<pb::GetTupleRequest>) -> Result<Response<pb::GetTupleResponse>, Status> {
        let Unary { deadline, scope, message } = self.unary(request);
        let get = self.convert.get_tuple(message)?;
        admit(&scope, &get.thread_id, Some(&get.checkpoint_ns))?;
        let tuple = self.store.get_tuple(&get, deadline).await?;
        Ok(Response::new(pb::GetTupleResponse { tuple: tuple.map(Into::into) }))
    }

    async fn get_delta_channel_history(
        &self,
        request: Request<pb::GetDeltaChannelHistoryRequest>,
    ) -> Result<Response<pb::GetDeltaChannelHistoryResponse>, Status> {
        let Unary { deadline, scope, message } = self.unary(request);
        let query = self.convert.delta_history(message)?;
        admit(&scope, &query.thread_id, Some(&query.checkpoint_ns))?;
        let histories = self.store.get_delta_channel_history(&query, deadline).await?;
        Ok(Response::new(pb::GetDeltaChannelHistoryResponse {
            channels: histories.into_iter().map(Into::into).collect(),
        }))
    }

    type ListStream = ListStream;

    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<ListStream>, Status> {
        let deadline = client_deadline(request.metadata());
        let scope = scope_of(&request);
        let mut query = self.convert.list(request.into_inner())?;
        match &query.thread_id {
            Some(thread_id) => {
                admit(&scope, thread_id, query.checkpoint_ns.as_deref())?;
            }
            None => query.thread_prefixes = scope.prefixes().map(<[String]>::to_vec),
        }
        let stream = self
            .store
            .list(query, deadline)
            .map(|item| item.map(|tuple| pb::ListResponse { tuple: Some(tuple.into()) }).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn delete_thread(
        &self,
        request: Request<pb::DeleteThreadRequest>,
    ) -> Result<Response<pb::DeleteThreadResponse>, Status> {
        let Unary { deadline, scope, message } = self.unary(request);
        let thread_id = self.convert.delete_thread(message)?;
        admit(&scope, &thread_id, None)?;
        self.store.delete_thread(&thread_id, deadline).await?;
        Ok(Response::new(pb::DeleteThreadResponse {}))
    }

    async fn delete_for_runs(
        &self,
        request: Request<pb::DeleteForRunsRequest>,
    ) -> Result<Response<pb::DeleteForRunsResponse>, Status> {
        let Unary { deadline, scope, message } = self.unary(request);
        let mut delete = self.convert.delete_for_runs(message)?;
        delete.thread_prefixes = scope.prefixes().map(<[String]>::to_vec);
        self.store.delete_for_runs(&delete, deadline).await?;
        Ok(Response::new(pb::DeleteForRunsResponse {}))
    }

    async fn copy_thread(
        &self,
        request: Request<pb::CopyThreadRequest>,
    ) -> Result<Response<pb::CopyThreadResponse>, Status> {
        let Unary { deadline, scope, message } = self.unary(request);
        let copy = self.convert.copy_thread(message)?;
        record_scope(&copy.source_thread_id, None);
        authorize(&scope, [copy.source_thread_id.as_str(), copy.target_thread_id.as_str()])?;
        self.store.copy_thread(&copy, deadline).await?;
        Ok(Response::new(pb::CopyThreadResponse {}))
    }

    async fn prune(&self, request: Request<pb::PruneRequest>) -> Result<Response<pb::PruneResponse>, Status> {
        let Unary { deadline, scope, message } = self.unary(request);
        let prune = self.convert.prune(message)?;
        authorize(&scope, prune.thread_ids.iter().map(String::as_str))?;
        self.store.prune(&prune, deadline).await?;
        Ok(Response::new(pb::PruneResponse {}))
    }
}
