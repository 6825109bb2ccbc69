//! Retry decisions, kept pure: classification of failures and the backoff policy.
//!
//! Nothing here sleeps or does IO; `storage::runner` applies these decisions.

mod classify;
mod policy;
mod sqlstate;

pub use classify::{ErrorClass, Failure, Phase, classify};
pub use policy::{Decision, GiveUpReason, RetryBudget, RetryPolicy};
pub use sqlstate::SqlState;
