//! The target guard: which addresses deliveries may go to (SPEC §6).
//!
//! Link-local addresses (169.254.0.0/16, fe80::/10) are always refused: cloud metadata
//! services live there, and a subscription must not be a way to read them. Loopback
//! and private ranges are allowed unless the config denies them, because on-prem
//! receivers live there. The guard runs when a subscription is written (for an
//! address in the URL) and again at every connection, on the addresses a name
//! resolved to ([`GuardedResolver`]), so a name pointing somewhere refused is caught.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why a target was refused.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The address is link-local, or loopback/private while those are denied.
    #[error("deliveries to {0} are refused: {1}")]
    Refused(IpAddr, &'static str),
    /// Every address the name resolved to was refused.
    #[error("{0} resolves only to refused addresses")]
    AllRefused(String),
}

/// The policy: link-local always refused, loopback and private as configured.
#[derive(Clone, Copy, Debug)]
pub struct TargetGuard {
    /// Also refuse loopback and private addresses.
    pub deny_private: bool,
}

impl TargetGuard {
    /// Whether `ip` may be delivered to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), GuardError> {
        let ip = canonical(ip);
        if is_link_local(ip) {
            return Err(GuardError::Refused(
                ip,
                "link-local addresses are never delivered to",
            ));
        }
        if self.deny_private && is_loopback_or_private(ip) {
            return Err(GuardError::Refused(
                ip,
                "loopback and private addresses are denied by the configuration (outbound_deny_private)",
            ));
        }
        Ok(())
    }

    /// Checks a URL whose host is an address; a name is checked when it is resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), GuardError> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }

    /// A resolver for the delivery client that drops refused addresses.
    pub fn resolver(self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { guard: self })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn is_loopback_or_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00
        }
    }
}

/// The system resolver, minus the addresses the guard refuses: reqwest connects only
/// to what this returns.
#[derive(Debug)]
pub struct GuardedResolver {
    guard: TargetGuard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Port 0: reqwest sets the URL's port on what it gets back.
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found
                .filter(|addr| guard.check_ip(addr.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(GuardError::AllRefused(host)) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_always_refused_and_private_only_when_denied() {
        let open = TargetGuard {
            deny_private: false,
        };
        let closed = TargetGuard { deny_private: true };
        for refused in ["169.254.169.254", "fe80::1", "::ffff:169.254.1.1"] {
            let ip: IpAddr = refused.parse().expect("ip");
            assert!(open.check_ip(ip).is_err(), "{refused}");
            assert!(closed.check_ip(ip).is_err(), "{refused}");
        }
        for private in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "fd00::1"] {
            let ip: IpAddr = private.parse().expect("ip");
            assert!(open.check_ip(ip).is_ok(), "{private}");
            assert!(closed.check_ip(ip).is_err(), "{private}");
        }
        let public: IpAddr = "93.184.216.34".parse().expect("ip");
        assert!(closed.check_ip(public).is_ok());
        let url = Url::parse("http://[fe80::1]:8080/x").expect("url");
        assert!(open.check_url(&url).is_err());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        let closed = TargetGuard { deny_private: true }.resolver();
        let name: Name = "localhost".parse().expect("name");
        assert!(closed.resolve(name).await.is_err());
        let open = TargetGuard {
            deny_private: false,
        }
        .resolver();
        let name: Name = "localhost".parse().expect("name");
        assert!(open.resolve(name).await.is_ok());
    }
}
