//! Splits a bulk import body (SPEC §3.3) into its items as the bytes arrive, so a
//! 64 MiB import never sits in memory whole: NDJSON lines, or the elements of a
//! top-level array or of the `items` / `signals` array of a wrapper object.
//!
//! The splitter only finds where each item starts and ends (strings, escapes and
//! brackets); the caller parses each item on its own, so a malformed item is reported
//! by its index and the rest of the import goes on.

/// Largest single item of a bulk import, in bytes: the limit of a whole webhook body.
pub const MAX_ITEM_BYTES: usize = 1024 * 1024;
/// Longest member name read in a wrapper object; real names are short, and a bound
/// keeps a hostile body from growing one without end.
const MAX_KEY_BYTES: usize = 256;
/// Wrapper members whose array holds the items.
const ITEM_ARRAYS: [&[u8]; 2] = [b"items", b"signals"];

/// How a bulk body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkFormat {
    /// One JSON object per line (`application/x-ndjson`); blank lines are skipped.
    Ndjson,
    /// `{"items":[…]}`, `{"signals":[…]}` or a bare array.
    Json,
}

/// One item of the body, by its 0-based position (NDJSON: among non-blank lines).
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// The item's raw bytes, not yet parsed.
    Item {
        /// Its position.
        index: usize,
        /// Its JSON text.
        bytes: Vec<u8>,
    },
    /// An item over [`MAX_ITEM_BYTES`]; its bytes were skipped, not kept.
    TooLarge {
        /// Its position.
        index: usize,
    },
}

/// The body's framing is broken (not a single item's content): nothing after this
/// point can be split reliably.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at byte {offset})")]
pub struct SplitError {
    /// Bytes of the body read before the fault.
    pub offset: u64,
    /// What was wrong.
    pub message: String,
}

/// Splits a body into [`Piece`]s, fed chunk by chunk.
pub struct Splitter {
    format: BulkFormat,
    lines: Lines,
    json: JsonFrame,
}

impl Splitter {
    /// A splitter for a body in `format`.
    pub fn new(format: BulkFormat) -> Splitter {
        Splitter {
            format,
            lines: Lines::default(),
            json: JsonFrame::default(),
        }
    }

    /// Feeds the next chunk of the body, adding every item it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Piece>) -> Result<(), SplitError> {
        match self.format {
            BulkFormat::Ndjson => {
                self.lines.push(chunk, out);
                Ok(())
            }
            BulkFormat::Json => self.json.push(chunk, out),
        }
    }

    /// Ends the body: adds a last unterminated line, or fails if the JSON is incomplete.
    pub fn finish(&mut self, out: &mut Vec<Piece>) -> Result<(), SplitError> {
        match self.format {
            BulkFormat::Ndjson => {
                self.lines.end_line(out);
                Ok(())
            }
            BulkFormat::Json => self.json.finish(),
        }
    }
}

/// The bytes of the item being read, up to [`MAX_ITEM_BYTES`].
#[derive(Default)]
struct Capture {
    bytes: Vec<u8>,
    overflow: bool,
    index: usize,
}

impl Capture {
    fn extend(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.bytes.len() + bytes.len() > MAX_ITEM_BYTES {
            self.overflow = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(bytes);
        }
    }

    /// Emits the captured item and starts the next position.
    fn emit(&mut self, out: &mut Vec<Piece>) {
        let index = self.index;
        out.push(if self.overflow {
            Piece::TooLarge { index }
        } else {
            Piece::Item {
                index,
                bytes: std::mem::take(&mut self.bytes),
            }
        });
        self.overflow = false;
        self.index += 1;
    }
}

/// NDJSON: items end at `\n`.
#[derive(Default)]
struct Lines {
    capture: Capture,
    /// Whether the current line has anything but whitespace (also when it overflowed).
    content: bool,
}

impl Lines {
    fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Piece>) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            self.extend(&chunk[..end]);
            self.end_line(out);
            chunk = &chunk[end + 1..];
        }
        self.extend(chunk);
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.content |= !bytes.iter().all(u8::is_ascii_whitespace);
        self.capture.extend(bytes);
    }

    fn end_line(&mut self, out: &mut Vec<Piece>) {
        if self.content {
            self.capture.emit(out);
        }
        self.capture.bytes.clear();
        self.capture.overflow = false;
        self.content = false;
    }
}

/// Where the JSON framing reader is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Before the top-level value.
    #[default]
    Start,
    /// In the wrapper object: a member name or `}`.
    Key,
    /// Inside a member name.
    KeyString,
    /// After a member name.
    Colon,
    /// Before a member's value.
    MemberValue,
    /// Inside a member's value that is not an item array.
    SkipValue,
    /// In the wrapper object after a member: `,` or `}`.
    AfterMember,
    /// In an item array: an item or `]`.
    Element,
    /// Inside an item.
    InElement,
    /// In an item array after an item: `,` or `]`.
    AfterElement,
    /// After the top-level value: only whitespace may follow.
    Done,
}

/// Whether a byte consumed by the reader was used up or must be read again in the
/// next state (it ended a number or `true`/`false`/`null` without belonging to it).
enum Step {
    Consumed,
    Again,
}

/// Follows one JSON value's strings and brackets to find where it ends.
#[derive(Default)]
struct ValueScan {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

/// What a byte did to the value being scanned.
enum ValueStep {
    /// The value goes on.
    More,
    /// The value ended with this byte.
    EndedWith,
    /// The value ended just before this byte.
    EndedBefore,
}

impl ValueScan {
    fn step(&mut self, b: u8) -> ValueStep {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.depth == 0 {
                    return ValueStep::EndedWith;
                }
            }
            return ValueStep::More;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth == 0 => return ValueStep::EndedBefore,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return ValueStep::EndedWith;
                }
            }
            b',' if self.depth == 0 => return ValueStep::EndedBefore,
            _ if self.depth == 0 && b.is_ascii_whitespace() => return ValueStep::EndedBefore,
            _ => {}
        }
        ValueStep::More
    }
}

/// `{"items":[…]}`, `{"signals":[…]}` or `[…]`, read byte by byte.
#[derive(Default)]
struct JsonFrame {
    state: State,
    /// Whether the top-level value is the array itself (no wrapper object).
    bare_array: bool,
    /// Whether an item array was found.
    found: bool,
    key: Vec<u8>,
    key_escaped: bool,
    value: ValueScan,
    capture: Capture,
    offset: u64,
}

impl JsonFrame {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<Piece>) -> Result<(), SplitError> {
        let mut i = 0;
        while let Some(&b) = chunk.get(i) {
            if let Step::Consumed = self.step(b, out)? {
                i += 1;
                self.offset += 1;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SplitError> {
        match self.state {
            State::Done if self.found || self.bare_array => Ok(()),
            State::Done => Err(self.error("the object has no \"items\" or \"signals\" array")),
            State::Start => Err(self.error("the body is empty")),
            _ => Err(self.error("the body ends before its JSON does")),
        }
    }

    fn error(&self, message: &str) -> SplitError {
        SplitError {
            offset: self.offset,
            message: message.to_owned(),
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<Piece>) -> Result<Step, SplitError> {
        let blank = b.is_ascii_whitespace();
        match self.state {
            State::InElement => return Ok(self.in_element(b, out)),
            State::KeyString => return self.key_byte(b),
            State::SkipValue => {
                return Ok(match self.value.step(b) {
                    ValueStep::More => Step::Consumed,
                    ValueStep::EndedWith => self.then(State::AfterMember),
                    ValueStep::EndedBefore => {
                        self.state = State::AfterMember;
                        Step::Again
                    }
                })
            }
            _ if blank => return Ok(Step::Consumed),
            _ => {}
        }
        match (self.state, b) {
            (State::Start, b'[') => {
                self.bare_array = true;
                Ok(self.then(State::Element))
            }
            (State::Start, b'{') => Ok(self.then(State::Key)),
            (State::Start, _) => Err(self.error(
                "a JSON bulk body is an object with an \"items\" or \"signals\" array, or an array",
            )),
            (State::Key, b'"') => {
                self.key.clear();
                Ok(self.then(State::KeyString))
            }
            (State::Key, b'}') => Ok(self.then(State::Done)),
            (State::Colon, b':') => Ok(self.then(State::MemberValue)),
            (State::MemberValue, _) => self.member_value(b),
            (State::AfterMember, b',') => Ok(self.then(State::Key)),
            (State::AfterMember, b'}') => Ok(self.then(State::Done)),
            (State::Element, b']') | (State::AfterElement, b']') => {
                let next = if self.bare_array {
                    State::Done
                } else {
                    State::AfterMember
                };
                Ok(self.then(next))
            }
            (State::Element, _) => {
                self.value = ValueScan::default();
                self.state = State::InElement;
                Ok(Step::Again)
            }
            (State::AfterElement, b',') => Ok(self.then(State::Element)),
            (State::Done, _) => Err(self.error("unexpected data after the end of the JSON body")),
            (state, _) => Err(self.error(&format!(
                "unexpected {:?} {}",
                char::from(b),
                expectation(state)
            ))),
        }
    }

    fn then(&mut self, state: State) -> Step {
        self.state = state;
        Step::Consumed
    }

    fn in_element(&mut self, b: u8, out: &mut Vec<Piece>) -> Step {
        match self.value.step(b) {
            ValueStep::More => {
                self.capture.extend(&[b]);
                Step::Consumed
            }
            ValueStep::EndedWith => {
                self.capture.extend(&[b]);
                self.capture.emit(out);
                self.then(State::AfterElement)
            }
            ValueStep::EndedBefore => {
                self.capture.emit(out);
                self.state = State::AfterElement;
                Step::Again
            }
        }
    }

    fn key_byte(&mut self, b: u8) -> Result<Step, SplitError> {
        if self.key_escaped {
            self.key_escaped = false;
        } else if b == b'\\' {
            self.key_escaped = true;
        } else if b == b'"' {
            return Ok(self.then(State::Colon));
        }
        if self.key.len() >= MAX_KEY_BYTES {
            return Err(self.error("a member name of the wrapper object is too long"));
        }
        self.key.push(b);
        Ok(Step::Consumed)
    }

    fn member_value(&mut self, b: u8) -> Result<Step, SplitError> {
        if !ITEM_ARRAYS.contains(&self.key.as_slice()) {
            self.value = ValueScan::default();
            self.state = State::SkipValue;
            return Ok(Step::Again);
        }
        if b != b'[' {
            return Err(self.error("\"items\" and \"signals\" must be arrays"));
        }
        self.found = true;
        Ok(self.then(State::Element))
    }
}

/// What the reader expected in `state`, for error messages.
fn expectation(state: State) -> &'static str {
    match state {
        State::Key => "where a member name or } was expected",
        State::Colon => "where : was expected",
        State::AfterMember => "where , or } was expected",
        State::AfterElement => "where , or ] was expected",
        _ => "in the JSON body",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `body` fed in chunks of `size` bytes.
    fn split(format: BulkFormat, body: &[u8], size: usize) -> Result<Vec<Piece>, SplitError> {
        let mut splitter = Splitter::new(format);
        let mut out = Vec::new();
        for chunk in body.chunks(size) {
            splitter.push(chunk, &mut out)?;
        }
        splitter.finish(&mut out)?;
        Ok(out)
    }

    fn items(pieces: &[Piece]) -> Vec<(usize, String)> {
        pieces
            .iter()
            .map(|piece| match piece {
                Piece::Item { index, bytes } => {
                    (*index, String::from_utf8_lossy(bytes).into_owned())
                }
                Piece::TooLarge { index } => (*index, "<too large>".into()),
            })
            .collect()
    }

    #[test]
    fn ndjson_lines_are_items_and_blank_lines_do_not_count() {
        let body = b"{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json\n{\"c\":3}";
        for size in [1, 3, body.len()] {
            let pieces = split(BulkFormat::Ndjson, body, size).expect("splits");
            assert_eq!(
                items(&pieces),
                vec![
                    (0, "{\"a\":1}\r".to_owned()),
                    (1, "{\"b\":2}".to_owned()),
                    (2, "not json".to_owned()),
                    (3, "{\"c\":3}".to_owned()),
                ]
            );
        }
    }

    #[test]
    fn wrapper_arrays_yield_their_elements_whatever_the_chunking() {
        let body = br#" {"source":{"x":[1,"]"]},"signals":[ {"a":"}\"{"} ,{"b":[1,{"c":2}]},3,"s",null ], "n": 5 } "#;
        for size in [1, 2, 7, body.len()] {
            let pieces = split(BulkFormat::Json, body, size).expect("splits");
            assert_eq!(
                items(&pieces),
                vec![
                    (0, r#"{"a":"}\"{"}"#.to_owned()),
                    (1, r#"{"b":[1,{"c":2}]}"#.to_owned()),
                    (2, "3".to_owned()),
                    (3, r#""s""#.to_owned()),
                    (4, "null".to_owned()),
                ]
            );
        }
    }

    #[test]
    fn a_bare_array_and_the_items_member_work_too() {
        let pieces = split(BulkFormat::Json, br#"[{"a":1},{"a":2}]"#, 4).expect("splits");
        assert_eq!(pieces.len(), 2);
        let pieces = split(BulkFormat::Json, br#"{"items":[]}"#, 4).expect("splits");
        assert!(pieces.is_empty());
    }

    #[test]
    fn an_oversized_item_is_skipped_and_reported_by_index() {
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_ITEM_BYTES));
        let body = format!("{{\"items\":[{{\"a\":1}},{big},{{\"b\":2}}]}}");
        let pieces = split(BulkFormat::Json, body.as_bytes(), 64 * 1024).expect("splits");
        assert_eq!(pieces[1], Piece::TooLarge { index: 1 });
        assert_eq!(items(&pieces)[2], (2, "{\"b\":2}".to_owned()));
        let lines = format!("{{\"a\":1}}\n{big}\n{{\"b\":2}}\n");
        let pieces = split(BulkFormat::Ndjson, lines.as_bytes(), 64 * 1024).expect("splits");
        assert_eq!(pieces[1], Piece::TooLarge { index: 1 });
        assert_eq!(pieces.len(), 3);
    }

    #[test]
    fn broken_framing_is_an_error_with_its_offset() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "empty"),
            (b"\"text\"", "an object with"),
            (br#"{"items":{"a":1}}"#, "must be arrays"),
            (br#"{"other":[1]}"#, "no \"items\""),
            (
                br#"{"items":[{"a":1} {"b":2}]}"#,
                "where , or ] was expected",
            ),
            (br#"{"items":[{"a":1}"#, "ends before"),
        ];
        for (body, expected) in cases {
            let error = split(BulkFormat::Json, body, 3).expect_err("refused");
            assert!(
                error.to_string().contains(expected),
                "{:?}: {error}",
                String::from_utf8_lossy(body)
            );
        }
        let error = split(BulkFormat::Json, br#"[1] x"#, 1).expect_err("trailing data");
        assert_eq!(error.offset, 4);
    }
}
