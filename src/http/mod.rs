//! The HTTP edge: listeners (HTTPS with rustls, optional plain HTTP), TLS material,
//! the router, request ids, connection and body limits, and the one error body every
//! failure uses.

mod body;
mod error;
mod idle;
mod listener;
mod router;
pub mod tls;

use std::net::SocketAddr;

pub use body::{body_failure, declared_length, read_limited, unreadable};
pub use error::{ApiError, RequestId};
pub use listener::{serve, Connections};
pub use router::Routes;

/// The peer address of the connection a request came in on, for per-client limits.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);
