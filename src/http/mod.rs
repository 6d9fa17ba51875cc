//! The HTTP edge: listeners (HTTPS with rustls, optional plain HTTP), TLS material,
//! the router, request ids, connection and body limits, and the one error body every
//! failure uses.

mod body;
mod error;
mod forwarded;
mod idle;
mod listener;
mod router;
pub mod tls;

use std::net::IpAddr;

pub use body::{body_failure, declared_length, read_limited, unreadable};
pub use error::{ApiError, ErrorBody, ErrorDetail, RequestId};
pub use forwarded::{ForwardedError, ProxyNet, TrustedProxies};
pub use listener::{serve, Connections};
pub use router::Routes;

/// The address a request comes from ([`TrustedProxies::client`]), for per-client
/// limits and logs.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);
