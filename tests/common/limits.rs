//! Raw connections to the plain-HTTP listener, for tests that need what an HTTP
//! client library hides: a body sent in pieces or never finished, a connection held
//! open or watched for the server closing it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TestServer;

/// Longest an answer or a close the server owes may take to arrive: a margin for
/// loaded CI machines, not a timing claim.
pub const OWED: Duration = Duration::from_secs(15);

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

/// One TCP connection to a server's plain-HTTP listener.
pub struct RawConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawConnection {
    /// Connects to `server`'s plain-HTTP listener (started with `--http-listen`).
    pub async fn open(server: &TestServer) -> RawConnection {
        RawConnection::open_to(server.http.expect("started with --http-listen")).await
    }

    /// Connects to `server`'s plain-HTTP listener with a small receive buffer, so that
    /// what the peer does not read stays on the server's side.
    pub async fn open_reading_little(server: &TestServer) -> RawConnection {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(64 * 1024)
            .expect("receive buffer");
        let addr = server.http.expect("started with --http-listen");
        let stream = socket.connect(addr).await.expect("connect");
        RawConnection {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Connects to `addr`.
    pub async fn open_to(addr: SocketAddr) -> RawConnection {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawConnection {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Sends the head of a POST to `path` with `key` as bearer, declaring a body of
    /// `length` bytes of `content_type`, and the first `start` bytes of it.
    pub async fn start_post(
        &mut self,
        path: &str,
        key: &str,
        content_type: &str,
        length: usize,
        start: &str,
    ) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: datapool\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n{start}"
        );
        self.send(head.as_bytes()).await;
    }

    /// Sends `GET {path}` on this connection, kept alive.
    pub async fn get(&mut self, path: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: datapool\r\n\r\n");
        self.send(request.as_bytes()).await;
    }

    /// Sends `GET {path}` with `token` as bearer.
    pub async fn get_as(&mut self, path: &str, token: &str) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: datapool\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        self.send(request.as_bytes()).await;
    }

    /// Reads until the server closes the connection (or resets it); the bytes read.
    pub async fn read_to_close(&mut self) -> usize {
        let mut total = self.buffer.len();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(OWED, self.stream.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => return total,
                Ok(Ok(read)) => total += read,
                Err(_) => panic!("the server neither sent more nor closed the connection"),
            }
        }
    }

    /// The next response, or `None` when none arrives within `within`.
    pub async fn response_within(&mut self, within: Duration) -> Option<RawResponse> {
        tokio::time::timeout(within, self.read_response())
            .await
            .ok()
    }

    /// The next response; panics when the server closes the connection first.
    pub async fn response(&mut self) -> RawResponse {
        self.response_within(OWED)
            .await
            .expect("a response in time")
    }

    /// Whether the server closes the connection within `within` (reading nothing more).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, self.stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    async fn read_response(&mut self) -> RawResponse {
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head}"));
        let length = content_length(&head);
        while self.buffer.len() < head_end + length {
            self.fill().await;
        }
        let body_bytes: Vec<u8> = self
            .buffer
            .drain(..head_end + length)
            .skip(head_end)
            .collect();
        let body = serde_json::from_slice(&body_bytes).unwrap_or(Value::Null);
        RawResponse { status, head, body }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await.expect("read");
        assert!(read > 0, "the server closed the connection");
        self.buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The `Content-Length` of a response head (0 when absent).
fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A webhook push to `stream` whose body never finishes: it holds an ingest slot
/// until dropped or until the body timeout.
pub async fn held_push(server: &TestServer, stream: &str, key: &str) -> RawConnection {
    let mut connection = RawConnection::open(server).await;
    connection
        .start_post(
            &format!("/api/webhook/{stream}"),
            key,
            "application/json",
            1000,
            "{\"id\":",
        )
        .await;
    connection
}
