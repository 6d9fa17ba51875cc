//! Connectors at run time: the live view of push connectors that ingestion
//! authenticates against (pollers join here as they arrive).

mod registry;

pub use registry::{PushConnectors, PushTarget};
