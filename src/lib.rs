//! datapool: one binary that takes data in (webhooks, an ingest API, SQL and file
//! pollers), keeps it in an embedded store as a live DataPool of streams → items →
//! fields, and serves it to displays, dashboards and subscribers.
//!
//! # Layout
//! - [`cli`]: the command line; `serve` runs the server, the other commands drive a
//!   running server over its admin API.
//! - [`config`]: the server's settings, layered defaults < TOML < `DATAPOOL_*` < flags.
//! - [`connectors`]: connectors at run time: the cache ingestion authenticates against,
//!   their activity, and the SQL pollers (`connectors::sql` runs one query).
//! - [`app`]: builds the services, binds the listeners and owns shutdown.
//! - [`http`]: listeners (HTTPS with rustls, optional plain HTTP), TLS material, the
//!   router, request ids and the one error body every failure uses.
//! - [`api`]: request handlers: operations probes and the admin API.
//! - [`auth`]: credential formats, hashing and the failed-authentication limiter.
//! - [`backup`]: the backup file: a consistent snapshot of the store and the data dir's
//!   secret files, written by a running server and restored offline.
//! - [`ingest`]: the durable path of a write: group commit to the journal, then the
//!   applier into the pool and the change log.
//! - [`metrics`]: what the server counts, and `/metrics` in OpenMetrics text.
//! - [`ids`]: random identifiers for connectors, keys and requests.
//! - [`model`]: streams, connectors, subscriptions, and the JSON documents that
//!   describe them.
//! - [`outbound`]: delivering change notifications to subscriptions: workers, retries,
//!   signing, the target guard.
//! - [`private_file`]: writing files only the service user may read.
//! - [`store`]: persistence; the only module that touches sled.
//! - [`systemd`]: readiness, watchdog and stopping notices for a `Type=notify` unit.
//! - [`ui`]: the embedded web UI at `/` and its sign-in sessions.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod private_file;
pub mod store;
pub mod systemd;
pub mod ui;
