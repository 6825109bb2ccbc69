//! The CheckpointService handlers: validate, convert, call the store, convert back.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

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
        let deadline = unary_deadline(request.metadata(), self.default_deadline);
        let put = self.convert.put(request.into_inner())?;
        record_scope(&put.thread_id, Some(&put.checkpoint_ns));
        let stored = self.store.put(&put, deadline).await?;
        Ok(Response::new(pb::PutResponse { config: Some(stored.into()) }))
    }

    async fn put_writes(
        &self,
        request: Request<pb::PutWritesRequest>,
    ) -> Result<Response<pb::PutWritesResponse>, Status> {
        let deadline = unary_deadline(request.metadata(), self.default_deadline);
        let writes = self.convert.put_writes(request.into_inner())?;
        record_scope(&writes.thread_id, Some(&writes.checkpoint_ns));
        self.store.put_writes(&writes, deadline).await?;
        Ok(Response::new(pb::PutWritesResponse {}))
    }

    async fn get_tuple(&self, request: Request<pb::GetTupleRequest>) -> Result<Response<pb::GetTupleResponse>, Status> {
        let deadline = unary_deadline(request.metadata(), self.default_deadline);
        let get = self.convert.get_tuple(request.into_inner())?;
        record_scope(&get.thread_id, Some(&get.checkpoint_ns));
        let tuple = self.store.get_tuple(&get, deadline).await?;
        Ok(Response::new(pb::GetTupleResponse { tuple: tuple.map(Into::into) }))
    }

    type ListStream = ListStream;

    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<ListStream>, Status> {
        let deadline = client_deadline(request.metadata());
        let query = self.convert.list(request.into_inner())?;
        if let Some(thread_id) = &query.thread_id {
            record_scope(thread_id, query.checkpoint_ns.as_deref());
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
        let deadline = unary_deadline(request.metadata(), self.default_deadline);
        let thread_id = self.convert.delete_thread(request.into_inner())?;
        record_scope(&thread_id, None);
        self.store.delete_thread(&thread_id, deadline).await?;
        Ok(Response::new(pb::DeleteThreadResponse {}))
    }

    async fn delete_for_runs(
        &self,
        request: Request<pb::DeleteForRunsRequest>,
    ) -> Result<Response<pb::DeleteForRunsResponse>, Status> {
        let deadline = unary_deadline(request.metadata(), self.default_deadline);
        let delete = self.convert.delete_for_runs(request.into_inner())?;
        self.store.delete_for_runs(&delete, deadline).await?;
        Ok(Response::new(pb::DeleteForRunsResponse {}))
    }

    async fn copy_thread(
        &self,
        request: Request<pb::CopyThreadRequest>,
    ) -> Result<Response<pb::CopyThreadResponse>, Status> {
        let deadline = unary_deadline(request.metadata(), self.default_deadline);
        let copy = self.convert.copy_thread(request.into_inner())?;
        record_scope(&copy.source_thread_id, None);
        self.store.copy_thread(&copy, deadline).await?;
        Ok(Response::new(pb::CopyThreadResponse {}))
    }

    async fn prune(&self, request: Request<pb::PruneRequest>) -> Result<Response<pb::PruneResponse>, Status> {
        let deadline = unary_deadline(request.metadata(), self.default_deadline);
        let prune = self.convert.prune(request.into_inner())?;
        self.store.prune(&prune, deadline).await?;
        Ok(Response::new(pb::PruneResponse {}))
    }
}
