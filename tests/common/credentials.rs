//! Raw HTTP/1.1 over the plain listener, for requests a client library cannot hold
//! half-sent: the request's head is written in two parts, with the server known to have
//! read the first before the test goes on.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{eventually, EVENTUALLY};

/// An HTTP/1.1 request whose head the server has read only in part.
pub struct HalfSentRequest {
    stream: TcpStream,
}

impl HalfSentRequest {
    /// Connects to `server` and writes `start` (the request line and some headers, not
    /// the blank line that ends the head); returns once the server has read it.
    pub async fn open(server: SocketAddr, start: &str) -> HalfSentRequest {
        let mut stream = TcpStream::connect(server).await.expect("connect");
        stream.write_all(start.as_bytes()).await.expect("write");
        let client = stream.local_addr().expect("local address");
        eventually(EVENTUALLY, "the server reading the request", async || {
            unread_by_server(server, client)
                .map(|unread| unread == 0)?
                .then_some(())
        })
        .await;
        HalfSentRequest { stream }
    }

    /// Ends the head and reads the whole answer (the server closes the connection):
    /// the status code and the header lines, lowercased.
    pub async fn finish(mut self) -> (u16, Vec<String>) {
        self.stream.write_all(b"\r\n").await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            self.stream.read_to_end(&mut answer),
        )
        .await
        .expect("the server answers and closes")
        .expect("read");
        let text = String::from_utf8_lossy(&answer).to_lowercase();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        (status, lines.map(str::to_owned).collect())
    }
}

/// Bytes the kernel holds for the server's end of the `server`–`client` connection
/// that the server has not read yet, from `/proc/net/tcp`; `None` while the connection
/// is not listed.
fn unread_by_server(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{:04X}", server.port());
    let remote = format!(":{:04X}", client.port());
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let (here, there, queues) = (columns.get(1)?, columns.get(2)?, columns.get(4)?);
        (here.ends_with(&local) && there.ends_with(&remote))
            .then(|| u64::from_str_radix(queues.split(':').nth(1)?, 16).ok())
            .flatten()
    })
}
