//! The backup file: a magic line and a format version, then frames, each
//! `tag (1 byte) | length (4 bytes, big-endian) | payload | CRC-32 of the three`, and
//! last an end frame carrying the counts and a SHA-256 of every byte before it. A
//! flipped byte fails its frame's CRC; a cut file lacks the end frame; a frame moved or
//! dropped fails the digest. Frames in order: one header, the data dir's files, then
//! each tree followed by its entries, then the end.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BackupError;
use crate::store::MAX_RECORD_BYTES;

/// The first bytes of every backup file.
const MAGIC: &[u8; 16] = b"datapool-backup\n";
/// The layout written here; a reader refuses any other.
pub const FORMAT_VERSION: u32 = 1;
/// Largest frame payload read back: an entry holds at most one stored value, and no
/// stored value comes near twice the largest journal record. Bounds what a corrupt
/// length field can make a reader allocate.
const MAX_FRAME_BYTES: usize = 2 * MAX_RECORD_BYTES;
/// Bytes of a frame's tag and length.
const FRAME_HEAD: usize = 5;

const TAG_HEADER: u8 = 1;
const TAG_FILE: u8 = 2;
const TAG_TREE: u8 = 3;
const TAG_ENTRY: u8 = 4;
const TAG_END: u8 = 5;

/// What a backup says about itself, first in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// The datapool version that wrote it.
    pub datapool_version: String,
    /// When the snapshot was taken.
    pub created_at: jiff::Timestamp,
    /// The store's schema version (a restoring datapool must understand it).
    pub schema_version: u32,
}

/// What a backup holds, in its end frame; a reader checks it against what it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Files of the data dir.
    pub files: u64,
    /// Trees of the store.
    pub trees: u64,
    /// Entries over all trees.
    pub entries: u64,
}

/// One unit of a backup, as read.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// The header.
    Header(Header),
    /// A file of the data dir: its path relative to the data dir, and its contents.
    File(String, Vec<u8>),
    /// A tree starts; its entries follow.
    Tree(Vec<u8>),
    /// An entry of the current tree: key, value.
    Entry(Vec<u8>, Vec<u8>),
}

/// Writes a backup to `out`, hashing as it goes.
pub struct Writer<W: Write> {
    out: W,
    digest: Sha256,
    counts: Counts,
    /// Bytes written so far.
    written: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a backup: the magic, the format version and the header.
    pub fn new(out: W, header: &Header) -> Result<Self, BackupError> {
        let mut writer = Writer {
            out,
            digest: Sha256::new(),
            counts: Counts::default(),
            written: 0,
        };
        writer.raw(MAGIC)?;
        writer.raw(&FORMAT_VERSION.to_be_bytes())?;
        writer.frame(TAG_HEADER, &[&serde_json::to_vec(header)?])?;
        Ok(writer)
    }

    /// A file of the data dir, by its path relative to it.
    pub fn file(&mut self, path: &str, contents: &[u8]) -> Result<(), BackupError> {
        let name = u16::try_from(path.len())
            .map_err(|_| BackupError::Invalid(format!("the path {path:?} is too long")))?;
        self.counts.files += 1;
        self.frame(TAG_FILE, &[&name.to_be_bytes(), path.as_bytes(), contents])
    }

    /// A tree starts.
    pub fn tree(&mut self, name: &[u8]) -> Result<(), BackupError> {
        self.counts.trees += 1;
        self.frame(TAG_TREE, &[name])
    }

    /// An entry of the current tree.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        let key_len = u32::try_from(key.len())
            .map_err(|_| BackupError::Invalid("a key over 4 GiB".into()))?;
        self.counts.entries += 1;
        self.frame(TAG_ENTRY, &[&key_len.to_be_bytes(), key, value])
    }

    /// Ends the backup with the counts and the digest; returns the output, flushed,
    /// with the counts and the size written.
    pub fn finish(mut self) -> Result<(W, Counts, u64), BackupError> {
        let digest = self.digest.clone().finalize();
        let counts = serde_json::to_vec(&self.counts)?;
        self.frame(TAG_END, &[digest.as_slice(), &counts])?;
        self.out.flush()?;
        Ok((self.out, self.counts, self.written))
    }

    fn frame(&mut self, tag: u8, parts: &[&[u8]]) -> Result<(), BackupError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MAX_FRAME_BYTES {
            return Err(BackupError::Invalid(format!(
                "a value of {len} bytes is over the backup's {MAX_FRAME_BYTES}-byte limit"
            )));
        }
        let len = u32::try_from(len).map_err(|_| BackupError::Invalid("frame too large".into()))?;
        let mut crc = crc32fast::Hasher::new();
        let mut head = [0u8; FRAME_HEAD];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_be_bytes());
        crc.update(&head);
        self.raw(&head)?;
        for part in parts {
            crc.update(part);
            self.raw(part)?;
        }
        self.raw(&crc.finalize().to_be_bytes())
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.out.write_all(bytes)?;
        self.digest.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Reads a backup frame by frame, checking each frame's CRC as it comes and, at the
/// end, the counts and the digest. A frame is only trustworthy once
/// [`Reader::next_frame`] has returned `None` without error: a caller that acts on
/// frames should read the whole file once first ([`verify`]).
pub struct Reader<R: Read> {
    input: R,
    digest: Sha256,
    counts: Counts,
    /// Bytes read so far, for error messages.
    offset: u64,
    ended: bool,
}

impl<R: Read> Reader<R> {
    /// Checks the magic and the format version; returns the reader and the header.
    pub fn new(input: R) -> Result<(Self, Header), BackupError> {
        let mut reader = Reader {
            input,
            digest: Sha256::new(),
            counts: Counts::default(),
            offset: 0,
            ended: false,
        };
        let mut magic = [0u8; MAGIC.len()];
        reader.raw(&mut magic)?;
        if &magic != MAGIC {
            return Err(BackupError::Invalid("this is not a datapool backup".into()));
        }
        let mut version = [0u8; 4];
        reader.raw(&mut version)?;
        let version = u32::from_be_bytes(version);
        if version != FORMAT_VERSION {
            return Err(BackupError::Invalid(format!(
                "backup format version {version}; this datapool reads version {FORMAT_VERSION}"
            )));
        }
        match reader.next_frame()? {
            Some(Frame::Header(header)) => Ok((reader, header)),
            _ => Err(reader.corrupt("the header is missing")),
        }
    }

    /// The next frame; `None` after the end frame, once the counts, the digest and the
    /// end of the file check out.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, BackupError> {
        if self.ended {
            return Ok(None);
        }
        let at = self.offset;
        let digest_before = self.digest.clone().finalize();
        let mut head = [0u8; FRAME_HEAD];
        self.raw(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(self.corrupt_at(at, "a frame length is out of range"));
        }
        let mut payload = vec![0u8; len];
        self.raw(&mut payload)?;
        let mut crc = [0u8; 4];
        self.raw(&mut crc)?;
        let mut expected = crc32fast::Hasher::new();
        expected.update(&head);
        expected.update(&payload);
        if expected.finalize() != u32::from_be_bytes(crc) {
            return Err(self.corrupt_at(at, "a frame fails its checksum"));
        }
        let frame = match head[0] {
            TAG_HEADER => Frame::Header(
                serde_json::from_slice(&payload)
                    .map_err(|e| self.corrupt_at(at, &format!("the header: {e}")))?,
            ),
            TAG_FILE => {
                let (name, contents) = split_len::<2>(&payload)
                    .ok_or_else(|| self.corrupt_at(at, "a file frame is malformed"))?;
                let name = String::from_utf8(name.to_vec())
                    .map_err(|_| self.corrupt_at(at, "a file name is not UTF-8"))?;
                self.counts.files += 1;
                Frame::File(name, contents.to_vec())
            }
            TAG_TREE => {
                self.counts.trees += 1;
                Frame::Tree(payload)
            }
            TAG_ENTRY => {
                let (key, value) = split_len::<4>(&payload)
                    .ok_or_else(|| self.corrupt_at(at, "an entry frame is malformed"))?;
                self.counts.entries += 1;
                Frame::Entry(key.to_vec(), value.to_vec())
            }
            TAG_END => {
                self.end(at, &payload, digest_before.as_slice())?;
                return Ok(None);
            }
            tag => return Err(self.corrupt_at(at, &format!("unknown frame type {tag}"))),
        };
        Ok(Some(frame))
    }

    /// Checks the end frame and that nothing follows it.
    fn end(&mut self, at: u64, payload: &[u8], digest: &[u8]) -> Result<(), BackupError> {
        let (stored, counts) = payload
            .split_at_checked(32)
            .ok_or_else(|| self.corrupt_at(at, "the end frame is malformed"))?;
        if stored != digest {
            return Err(
                self.corrupt_at(at, "the file's SHA-256 does not match the one it ends with")
            );
        }
        let counts: Counts = serde_json::from_slice(counts)
            .map_err(|e| self.corrupt_at(at, &format!("the end frame: {e}")))?;
        if counts != self.counts {
            return Err(self.corrupt_at(at, "the counts do not match what the file holds"));
        }
        let mut more = [0u8; 1];
        if self.input.read(&mut more)? != 0 {
            return Err(self.corrupt_at(self.offset, "data follows the end of the backup"));
        }
        self.ended = true;
        Ok(())
    }

    /// What the file held, once it was read to its end.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn raw(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        match self.input.read_exact(buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(BackupError::Truncated {
                    offset: self.offset,
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.digest.update(&*buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn corrupt(&self, problem: &str) -> BackupError {
        self.corrupt_at(self.offset, problem)
    }

    fn corrupt_at(&self, offset: u64, problem: &str) -> BackupError {
        BackupError::Corrupt {
            offset,
            problem: problem.to_owned(),
        }
    }
}

/// Reads a whole backup, checking every frame and the end; its header and counts.
pub fn verify(input: impl Read) -> Result<(Header, Counts), BackupError> {
    let (mut reader, header) = Reader::new(input)?;
    while reader.next_frame()?.is_some() {}
    Ok((header, reader.counts()))
}

/// Splits `payload` into a part whose length is its first `N` bytes (big-endian) and
/// the rest.
fn split_len<const N: usize>(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = payload.split_at_checked(N)?;
    let mut bytes = [0u8; 8];
    bytes[8 - N..].copy_from_slice(len);
    let len = usize::try_from(u64::from_be_bytes(bytes)).ok()?;
    rest.split_at_checked(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let header = Header {
            datapool_version: "test".into(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            schema_version: 1,
        };
        let mut writer = Writer::new(Vec::new(), &header).expect("header");
        writer.file("tls/cert.pem", b"PEM").expect("file");
        writer.tree(b"items").expect("tree");
        writer.entry(b"s\0a", b"{\"x\":1}").expect("entry");
        writer.entry(b"s\0b", b"").expect("entry");
        writer.finish().expect("finish").0
    }

    #[test]
    fn what_is_written_reads_back_frame_by_frame() {
        let bytes = sample();
        let (mut reader, header) = Reader::new(bytes.as_slice()).expect("reader");
        assert_eq!(header.datapool_version, "test");
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().expect("frame") {
            frames.push(frame);
        }
        assert_eq!(
            frames,
            [
                Frame::File("tls/cert.pem".into(), b"PEM".to_vec()),
                Frame::Tree(b"items".to_vec()),
                Frame::Entry(b"s\0a".to_vec(), b"{\"x\":1}".to_vec()),
                Frame::Entry(b"s\0b".to_vec(), Vec::new()),
            ]
        );
        assert_eq!(
            reader.counts(),
            Counts {
                files: 1,
                trees: 1,
                entries: 2
            }
        );
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_refused() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(
                verify(&bytes[..cut]).is_err(),
                "cut at {cut} of {}",
                bytes.len()
            );
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x20;
            assert!(verify(flipped.as_slice()).is_err(), "byte {at} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(verify(longer.as_slice()).is_err(), "trailing data");
        assert!(verify(bytes.as_slice()).is_ok());
    }

    #[test]
    fn a_cut_file_says_so() {
        let bytes = sample();
        let error = verify(&bytes[..bytes.len() - 10]).expect_err("cut");
        assert!(matches!(error, BackupError::Truncated { .. }), "{error}");
    }
}
