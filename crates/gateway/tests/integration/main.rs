//! Integration tests: the real server on 127.0.0.1:0 in front of an
//! in-process mock upstream, driven over HTTP.
//!
//! Every test gets a fresh database: SQLite by default, PostgreSQL when
//! `TOLLGATE_TEST_POSTGRES_URL` is set (see `store::testing`).

mod accounts;
mod amounts;
mod anthropic;
mod channels;
mod chaos;
mod common;
mod console;
mod errors;
mod faults;
mod files;
mod media;
mod metrics_auth;
mod mounts;
mod oauth;
mod override_rules;
mod payments;
mod rate_limits;
mod rate_limits_keys;
mod redis_server;
mod relay;
mod reload;
mod responses;
mod responses_checks;
mod shared_limits;
mod upstream_requests;
