//! Connectors at run time: the live view of push connectors that ingestion
//! authenticates against, what each connector has been doing, and the SQL pollers
//! with the test that runs a connector's fetch once.

mod activity;
mod poller;
pub mod probe;
mod registry;
pub mod sql;

pub use activity::{run_flusher, Activity};
pub use poller::{PollContext, Pollers};
pub use registry::{PushConnectors, PushTarget};
