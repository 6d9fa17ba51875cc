//! Who a request comes from: the connection's peer, or, when the peer is a reverse
//! proxy the operator trusts (`trusted_proxies`), the address that proxy names in
//! `X-Forwarded-For`. Failed-credential limiting and the logs use this address, so a
//! proxy's own address does not stand for all its clients, and nobody else can pick
//! the address they are counted under.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The header a reverse proxy appends the address of its own peer to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Why an entry of `trusted_proxies` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardedError {
    /// Neither a CIDR nor an address.
    #[error("invalid trusted proxy {0:?}: expected a CIDR such as 10.0.0.0/8 or fd00::/8, or a single address")]
    InvalidProxy(String),
}

/// One entry of `trusted_proxies`: a network in CIDR notation, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProxyNet(IpNet);

impl FromStr for ProxyNet {
    type Err = ForwardedError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(|net| ProxyNet(net.trunc()))
            .map_err(|_| ForwardedError::InvalidProxy(text.to_owned()))
    }
}

impl TryFrom<String> for ProxyNet {
    type Error = ForwardedError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<ProxyNet> for String {
    fn from(net: ProxyNet) -> String {
        net.to_string()
    }
}

impl fmt::Display for ProxyNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed; none by default, and then
/// the header is ignored.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<ProxyNet>);

impl TrustedProxies {
    /// Trusts the proxies in `nets`.
    pub fn new(nets: Vec<ProxyNet>) -> Self {
        TrustedProxies(nets)
    }

    /// The client of a request that came from `peer` with `headers`: `peer` unless it
    /// is a trusted proxy; then the right-most `X-Forwarded-For` address that is not a
    /// trusted proxy itself (the left-most when all are). A hop that is not an address
    /// ends the walk at the last trusted one, which vouched for nothing further.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let Ok(text) = value.to_str() else {
                return client;
            };
            for hop in text.rsplit(',') {
                let Some(address) = hop_address(hop) else {
                    return client;
                };
                client = address;
                if !self.trusts(client) {
                    return client;
                }
            }
        }
        client
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.0.contains(&address))
    }
}

/// The address of one `X-Forwarded-For` hop: a bare address, or one with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) as some proxies write it.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().expect("valid net")).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, value.parse().expect("header value"));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("literal address")
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.1"]);
        let headers = forwarded(&["198.51.100.9, 203.0.113.7", "10.1.2.3"]);
        assert_eq!(trusted.client(ip("192.0.2.1"), &headers), ip("203.0.113.7"));
        let all_trusted = forwarded(&["10.9.9.9, 10.1.2.3"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &all_trusted), ip("10.9.9.9"));
        let with_port = forwarded(&["[2001:db8::7]:4711"]);
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &with_port),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn an_untrusted_peer_or_a_broken_hop_is_not_looked_past() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let spoofed = forwarded(&["203.0.113.7"]);
        assert_eq!(
            trusted.client(ip("198.51.100.1"), &spoofed),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &spoofed),
            ip("10.0.0.1")
        );
        let broken = forwarded(&["203.0.113.7, unknown, 10.2.2.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &broken), ip("10.2.2.2"));
        let mapped = ip("::ffff:10.0.0.1");
        assert_eq!(trusted.client(mapped, &spoofed), ip("203.0.113.7"));
    }

    #[test]
    fn entries_are_cidrs_or_addresses() {
        assert_eq!(
            "10.1.2.3/8".parse::<ProxyNet>().map(|n| n.to_string()),
            Ok("10.0.0.0/8".to_owned())
        );
        assert_eq!(
            "::1".parse::<ProxyNet>().map(|n| n.to_string()),
            Ok("::1/128".to_owned())
        );
        for bad in ["10.0.0.0/33", "10.0.0", "proxy.local", ""] {
            let error = bad.parse::<ProxyNet>().expect_err(bad);
            assert!(
                error.to_string().contains("invalid trusted proxy"),
                "{error}"
            );
        }
    }
}
