//! Connectors at run time: the live view of push connectors that ingestion
//! authenticates against, and what each connector has been doing (pollers join here
//! as they arrive).

mod activity;
mod registry;

pub use activity::{run_flusher, Activity};
pub use registry::{PushConnectors, PushTarget};
