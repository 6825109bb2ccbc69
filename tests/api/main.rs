//! Integration tests: the real server on port 0 against a fresh PostgreSQL database per test.

mod helpers;

mod delta;
mod get_tuple;
mod list;
mod maintenance;
mod put;
mod round_trips;
mod schema;
mod service;
mod validation;
mod writes;
