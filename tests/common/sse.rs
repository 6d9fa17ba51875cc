//! A small Server-Sent Events reader over a streaming reqwest response, enough for
//! the tests: `id:`, `event:` and `data:` fields, dispatch on a blank line, `:`
//! comments ignored, lines ended by `\n`, `\r\n` or `\r`.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::Value;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The `id:` field of this event, if it had its own (unlike a browser's
    /// `lastEventId`, not carried over from earlier events).
    pub id: Option<String>,
    /// The `event:` field, `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl Event {
    /// The data parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }

    /// The id as a number.
    pub fn seq(&self) -> u64 {
        let id = self.id.as_deref().expect("the event has an id");
        id.parse()
            .unwrap_or_else(|_| panic!("event id {id:?} is not a number"))
    }
}

type Chunks = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// Reads events from an open `text/event-stream` response.
pub struct SseReader {
    chunks: Chunks,
    buffer: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    skip_lf: bool,
    id: Option<String>,
    event: String,
    data: Vec<String>,
    ended: bool,
}

impl SseReader {
    /// Reads the body of `response`.
    pub fn new(response: reqwest::Response) -> SseReader {
        let chunks = response
            .bytes_stream()
            .map(|chunk| chunk.map(|bytes| bytes.to_vec()));
        SseReader {
            chunks: Box::pin(chunks),
            buffer: Vec::new(),
            skip_lf: false,
            id: None,
            event: String::new(),
            data: Vec::new(),
            ended: false,
        }
    }

    /// The next event, or `None` when none comes within `within` or the stream ends.
    pub async fn next_within(&mut self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.next_event())
            .await
            .ok()
            .flatten()
    }

    /// The next event, or `None` when the stream ends.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            while let Some(line) = self.take_line() {
                if let Some(event) = self.process(&line) {
                    return Some(event);
                }
            }
            if self.ended {
                return None;
            }
            match self.chunks.next().await {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => panic!("the event stream failed: {error}"),
                None => self.ended = true,
            }
        }
    }

    /// Takes one complete line off the buffer, without its end.
    fn take_line(&mut self) -> Option<String> {
        if self.skip_lf && !self.buffer.is_empty() {
            if self.buffer[0] == b'\n' {
                self.buffer.remove(0);
            }
            self.skip_lf = false;
        }
        let end = self.buffer.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        let terminator = self.buffer[end];
        let mut consumed = end + 1;
        if terminator == b'\r' {
            match self.buffer.get(end + 1) {
                Some(b'\n') => consumed += 1,
                Some(_) => {}
                None => self.skip_lf = true,
            }
        }
        self.buffer.drain(..consumed);
        Some(line)
    }

    /// Applies one line; a blank line dispatches the event gathered so far. Unlike a
    /// browser, an event with a type but no data (e.g. a bare `event: reset`) is
    /// dispatched too, so the tests can see it.
    fn process(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_empty() {
                self.id = None;
                return None;
            }
            let event = Event {
                id: self.id.take(),
                event: if self.event.is_empty() {
                    "message".to_owned()
                } else {
                    std::mem::take(&mut self.event)
                },
                data: std::mem::take(&mut self.data).join("\n"),
            };
            return Some(event);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "event" => self.event = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }
}
