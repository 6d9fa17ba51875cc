//! Connectors at run time: the live view of push connectors that ingestion
//! authenticates against, what each connector has been doing, the pollers of SQL
//! queries, file URLs and watched folders, file uploads, and the test that runs a
//! connector's fetch once.

mod activity;
pub mod file;
mod poller;
pub mod probe;
mod record;
mod registry;
mod sink;
pub mod sql;

pub use activity::{run_flusher, Activity};
pub use poller::{PollContext, PollError, Pollers};
pub use registry::{PushConnectors, PushTarget};
