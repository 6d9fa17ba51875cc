//! The write-ahead journal: accepted requests appended to files in `<data-dir>/journal/`,
//! made durable with one `fdatasync` per group commit before their 202.
//!
//! The DataPool itself (sled) is flushed in the background by a checkpoint; journal
//! files whose every record is applied and synced are then deleted ([`release`]), off
//! the commit path. A record reads
//! `[u32 length + flags][u32 crc32 of seq+payload][u64 seq][payload: JSON of Accepted]`,
//! little endian; sequences run on without a gap from file to file, and a file is named
//! after its first. The flags frame each commit's write: its first record is marked
//! [`FIRST_OF_WRITE`], its last [`LAST_OF_WRITE`].
//!
//! On start ([`Wal::open`]) every file is checked record by record, holding one record
//! at a time. Only the newest file's last write can be damaged by a crash, since each
//! write is synced before the next begins, and it was never acknowledged: a power cut
//! may keep any of its blocks and lose others, so a bad record followed only by more of
//! the same write (no record that starts a later write, nothing after a finished one)
//! is a torn tail, and is cut off. A bad record with a later write after it, or a
//! sequence that does not follow on from the applied mark, is corruption, and the start
//! stops naming the file and byte offset. The records after the applied mark are then
//! read again, in bounded groups, as the applier replays them ([`Replay`]).
//!
//! Files are extended with zeros ahead of the records ([`PREALLOCATE_BYTES`] at a time),
//! so a commit overwrites blocks the file already has: its `fdatasync` writes the data
//! alone, without the file-size update that an append makes it write as well. A zero
//! header ends a file's records.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Accepted, IdempotencyRecord, StoreError};

/// Size past which the journal moves on to a new file, so applied files can be deleted.
const ROTATE_AFTER_BYTES: u64 = 64 * 1024 * 1024;
/// How far a file is extended with zeros when its records reach its end: the commit
/// that extends it writes this much more (about a millisecond here), once per this many
/// bytes of records.
const PREALLOCATE_BYTES: u64 = 1024 * 1024;
/// Bytes before a record's payload.
const HEADER_LEN: usize = 16;
/// Length-word flag of the first record of a commit's write.
const FIRST_OF_WRITE: u32 = 1 << 31;
/// Length-word flag of the last record of a commit's write.
const LAST_OF_WRITE: u32 = 1 << 30;
/// The length-word bits that hold the payload's length (far above [`MAX_RECORD_BYTES`]).
const LENGTH_BITS: u32 = LAST_OF_WRITE - 1;
/// Largest record payload the journal writes, and so the largest it reads back: one
/// limit for both, so that every record written can be replayed. Far above what a
/// write is cut to ([`MAX_WRITE_BYTES`]); a push whose items flatten past it is refused
/// on its own.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of items that writers which cut their data into records (a poll, a bulk
/// import) put in one: an eighth of [`MAX_RECORD_BYTES`], leaving room for what a
/// record adds around its items, so that no such record is ever refused.
pub const MAX_WRITE_BYTES: usize = MAX_RECORD_BYTES / 8;
/// Record bytes handed to the applier in one group when replaying on start: what a
/// replay holds in memory at once, whatever the backlog (a record over it is a group
/// of its own).
const REPLAY_GROUP_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes read at a time when looking past a bad record for more data.
const SCAN_CHUNK_BYTES: u64 = 1024 * 1024;
/// Zeros written at a time when a file is extended.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The open journal; owned by the group committer.
pub struct Wal {
    dir: PathBuf,
    /// The current file, named after its first sequence.
    path: PathBuf,
    file: File,
    /// Where the current file's records end.
    len: u64,
    /// How much of the current file its last `fdatasync` covers.
    synced: u64,
    /// The current file's size: zeros from `len` on.
    allocated: u64,
    next_seq: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, problem: String) -> StoreError {
    StoreError::CorruptJournal {
        path: path.to_owned(),
        offset,
        problem,
    }
}

fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// The journal files in `dir`, by first sequence, oldest first.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let first = name.strip_suffix(".wal")?.parse::<u64>().ok()?;
            Some((first, entry.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Deletes the journal files in `dir` whose every record is at or before `durable`
/// (applied to the pool, and the pool synced); the newest file, which the committer
/// writes, always stays. Returns how many it deleted. Blocking.
pub fn release(dir: &Path, durable: u64) -> Result<usize, StoreError> {
    let files = files(dir)?;
    let mut deleted = 0;
    // A file's last record is the one before its successor's first.
    for pair in files.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if next_first.saturating_sub(1) > durable {
            break;
        }
        fs::remove_file(path).map_err(io(path))?;
        deleted += 1;
    }
    Ok(deleted)
}

/// The size at which the current file is left for a new one. Tests make it tiny
/// (`FAILPOINTS=wal::rotate_after_bytes=return(1)`: a file per commit).
fn rotate_after_bytes() -> u64 {
    fail::fail_point!("wal::rotate_after_bytes", |bytes| {
        bytes
            .and_then(|b| b.parse().ok())
            .unwrap_or(ROTATE_AFTER_BYTES)
    });
    ROTATE_AFTER_BYTES
}

impl Wal {
    /// Opens the journal in `dir` and checks it against the applied mark `applied`;
    /// returns it with the records after `applied`, to replay. Deletes nothing but a
    /// torn tail: the applied mark may not be synced yet ([`release`] waits for that).
    pub fn open(dir: &Path, applied: u64) -> Result<(Wal, Replay), StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let files = files(dir)?;
        let mut scan = Scan::new(applied);
        for (index, (first, path)) in files.iter().enumerate() {
            scan.file(path, *first, index + 1 == files.len())?;
        }
        let next_seq = scan.next_seq();
        let wal = match files.last() {
            Some((first, path)) if scan.newest_end > 0 || *first == next_seq => {
                Wal::reopen(dir, path, scan.newest_end, next_seq)?
            }
            Some((first, path)) if *first > next_seq => {
                return Err(corrupt(path, 0, missing(next_seq, *first)));
            }
            // An empty newest file named before the next sequence holds nothing: a
            // fresh one takes its place.
            Some((_, path)) => {
                fs::remove_file(path).map_err(io(path))?;
                Wal::create(dir, next_seq)?
            }
            None => Wal::create(dir, next_seq)?,
        };
        Ok((wal, scan.replay))
    }

    /// The newest file, to go on writing at `len`.
    fn reopen(dir: &Path, path: &Path, len: u64, next_seq: u64) -> Result<Wal, StoreError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let allocated = file.metadata().map_err(io(path))?.len();
        Ok(Wal {
            dir: dir.to_owned(),
            path: path.to_owned(),
            file,
            len,
            synced: len,
            allocated,
            next_seq,
        })
    }

    /// A new, empty file starting at sequence `first` (a leftover of that name, from a
    /// rotation that failed before anything was written to it, is emptied).
    fn create(dir: &Path, first: u64) -> Result<Wal, StoreError> {
        let path = dir.join(file_name(first));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(Wal {
            dir: dir.to_owned(),
            path,
            file,
            len: 0,
            synced: 0,
            allocated: 0,
            next_seq: first,
        })
    }

    /// The sequence of the last record written (0 for none yet): every record up to it
    /// was acknowledged, in this run or an earlier one.
    pub fn last_seq(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// Appends `batch` and makes it durable (`fdatasync`); returns each record's
    /// sequence. A record over [`MAX_RECORD_BYTES`] fails the batch before anything is
    /// written. Blocking: call it off the async runtime.
    pub fn append(&mut self, batch: &[Accepted]) -> Result<Vec<u64>, StoreError> {
        // A crash that loses what the page cache held: the file goes back to what its
        // last `fdatasync` covered.
        fail::fail_point!("wal::power_loss", |_| {
            let _ = self.file.set_len(self.synced);
            std::process::abort()
        });
        let mut buffer = Vec::new();
        let mut seqs = Vec::with_capacity(batch.len());
        for (index, (seq, accepted)) in (self.next_seq..).zip(batch).enumerate() {
            let mut flags = 0;
            if index == 0 {
                flags |= FIRST_OF_WRITE;
            }
            if index + 1 == batch.len() {
                flags |= LAST_OF_WRITE;
            }
            encode_record(&mut buffer, seq, accepted, flags)?;
            seqs.push(seq);
        }
        if self.len >= rotate_after_bytes() {
            *self = Wal::create(&self.dir, self.next_seq)?;
        }
        let end = self.len + buffer.len() as u64;
        let written = self
            .extend_to(end)
            .and_then(|()| self.file.write_all_at(&buffer, self.len))
            .and_then(|()| self.sync(end));
        if let Err(error) = written {
            // Cut back what may be half written: the next records must follow the last
            // good one, or the next start would find them behind a bad record.
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::error!(file = %self.path.display(), error = %cut, "cannot cut a failed journal write back");
            }
            self.allocated = self.len;
            return Err(io(&self.path)(error));
        }
        self.len = end;
        self.next_seq += seqs.len() as u64;
        Ok(seqs)
    }

    /// `fdatasync`s the current file, whose records now end at `end`, and notes how much
    /// of it is durable.
    fn sync(&mut self, end: u64) -> std::io::Result<()> {
        fail::fail_point!("wal::before_sync", |_| std::process::abort());
        // The synced length moves only with a successful `fdatasync`: the crash tests'
        // power-loss fail point cuts the file back to it, so a missing sync loses writes
        // there as it would in a power cut.
        self.synced = self.file.sync_data().map(|()| end)?;
        Ok(())
    }

    /// Makes the file at least `end` bytes long, extending it with zeros
    /// [`PREALLOCATE_BYTES`] beyond that; the next `fdatasync` makes them durable.
    fn extend_to(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.allocated {
            return Ok(());
        }
        let target = end + PREALLOCATE_BYTES;
        while self.allocated < target {
            let n = (target - self.allocated).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], self.allocated)?;
            self.allocated += n as u64;
        }
        Ok(())
    }
}

/// Appends one record with the write-framing `flags` to `buffer`, or refuses it if its
/// payload is over [`MAX_RECORD_BYTES`] (leaving `buffer` as it was).
fn encode_record(
    buffer: &mut Vec<u8>,
    seq: u64,
    accepted: &Accepted,
    flags: u32,
) -> Result<(), StoreError> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; HEADER_LEN]);
    serde_json::to_writer(&mut *buffer, accepted)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let payload = &buffer[start + HEADER_LEN..];
    let len = match u32::try_from(payload.len()) {
        Ok(len) if payload.len() <= MAX_RECORD_BYTES => len,
        _ => {
            let bytes = payload.len();
            buffer.truncate(start);
            return Err(StoreError::RecordTooLarge {
                bytes,
                max: MAX_RECORD_BYTES,
            });
        }
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    let crc = crc.finalize();
    buffer[start..start + 4].copy_from_slice(&(len | flags).to_le_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buffer[start + 8..start + HEADER_LEN].copy_from_slice(&seq.to_le_bytes());
    Ok(())
}

/// One record read back: its sequence, what it holds, where the next one starts, and
/// its write-framing flags.
struct Record {
    seq: u64,
    accepted: Accepted,
    next: u64,
    flags: u32,
}

/// The record at byte `at` of `file`, whose records end by `end`; `None` when there is
/// no whole, intact record there.
fn read_record(file: &File, at: u64, end: u64) -> std::io::Result<Option<Record>> {
    let Some((len, flags)) = claimed_len(file, at, end)? else {
        return Ok(None);
    };
    let next = at + HEADER_LEN as u64 + len as u64;
    if next > end {
        return Ok(None);
    }
    let mut bytes = vec![0; HEADER_LEN + len];
    file.read_exact_at(&mut bytes, at)?;
    let (header, payload) = bytes.split_at(HEADER_LEN);
    let mut check = crc32fast::Hasher::new();
    check.update(&header[8..16]);
    check.update(payload);
    if check.finalize().to_le_bytes() != header[4..8] {
        return Ok(None);
    }
    let mut seq = [0; 8];
    seq.copy_from_slice(&header[8..16]);
    Ok(serde_json::from_slice(payload).ok().map(|accepted| Record {
        seq: u64::from_le_bytes(seq),
        accepted,
        next,
        flags,
    }))
}

/// The payload length and flags the header at `at` claims, if a whole header is there
/// and the length is within [`MAX_RECORD_BYTES`].
fn claimed_len(file: &File, at: u64, end: u64) -> std::io::Result<Option<(usize, u32)>> {
    if end.saturating_sub(at) < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut word = [0; 4];
    file.read_exact_at(&mut word, at)?;
    let word = u32::from_le_bytes(word);
    let len = (word & LENGTH_BITS) as usize;
    Ok((len <= MAX_RECORD_BYTES).then_some((len, word & !LENGTH_BITS)))
}

/// What follows the point where a file's records stop.
enum Tail {
    /// Zeros only: the room made ahead of the records.
    Clean,
    /// A bad record followed by nothing but more of its own write: a write the crash
    /// interrupted before its `fdatasync`, so before its 202.
    Torn,
    /// A bad record in a write that a later one followed (so it was synced), described
    /// for the operator.
    Corrupt(String),
}

/// Tells what follows the point `at` where `file` (`size` bytes) stops holding intact
/// records; `next_seq` is the sequence a record there would have had.
fn tail(file: &File, at: u64, size: u64, next_seq: u64) -> std::io::Result<Tail> {
    let mut first_data = None;
    let mut chunk_at = at;
    while chunk_at < size {
        // Each chunk overlaps the next by a sequence's width, so none is missed.
        let len = (size - chunk_at).min(SCAN_CHUNK_BYTES + 8) as usize;
        let mut chunk = vec![0; len];
        file.read_exact_at(&mut chunk, chunk_at)?;
        if first_data.is_none() {
            first_data = chunk
                .iter()
                .position(|b| *b != 0)
                .map(|i| chunk_at + i as u64);
        }
        for later in later_records(file, &chunk, chunk_at, at, size, next_seq)? {
            if let Some(problem) = later_write(file, &later, size)? {
                return Ok(Tail::Corrupt(problem));
            }
        }
        chunk_at += SCAN_CHUNK_BYTES;
    }
    if first_data.is_none() {
        return Ok(Tail::Clean);
    }
    // A bad record whose header says it ended its write: data past its end is a later
    // write's.
    if let Some((len, flags)) = claimed_len(file, at, size)? {
        let bad_end = at + HEADER_LEN as u64 + len as u64;
        if flags & LAST_OF_WRITE != 0 && bad_end < size && !zeros_from(file, bad_end, size)? {
            return Ok(Tail::Corrupt(format!(
                "the record there fails its check and ended its write, and data follows it from byte {bad_end}"
            )));
        }
    }
    Ok(Tail::Torn)
}

/// Why the intact record `later`, found after a bad one, shows that a later write
/// followed the bad record's (which was therefore synced): it starts a write, or it
/// ends one and data follows it.
fn later_write(file: &File, later: &Found, size: u64) -> std::io::Result<Option<String>> {
    let at = later.at;
    if later.flags & FIRST_OF_WRITE != 0 {
        return Ok(Some(format!(
            "the record there fails its check, and an intact record of a later write follows at byte {at}"
        )));
    }
    if later.flags & LAST_OF_WRITE != 0 && !zeros_from(file, later.next, size)? {
        return Ok(Some(format!(
            "the record there fails its check, and its write, which ends at byte {}, was followed by another",
            later.next
        )));
    }
    Ok(None)
}

/// Whether `file` holds only zeros from `from` to `size`.
fn zeros_from(file: &File, from: u64, size: u64) -> std::io::Result<bool> {
    let mut at = from;
    while at < size {
        let len = (size - at).min(SCAN_CHUNK_BYTES) as usize;
        let mut chunk = vec![0; len];
        file.read_exact_at(&mut chunk, at)?;
        if chunk.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += len as u64;
    }
    Ok(true)
}

/// An intact record found past a bad one.
struct Found {
    at: u64,
    next: u64,
    flags: u32,
}

/// The intact records after `bad` whose sequence field lies in `chunk` (read at
/// `chunk_at`) and could follow the bad record's `next_seq`: at most one record fits
/// in each header's width of the file, which bounds the sequences worth checking.
fn later_records(
    file: &File,
    chunk: &[u8],
    chunk_at: u64,
    bad: u64,
    size: u64,
    next_seq: u64,
) -> std::io::Result<Vec<Found>> {
    let most = (size - bad) / HEADER_LEN as u64 + 1;
    let plausible = next_seq..next_seq.saturating_add(most);
    let mut found = Vec::new();
    for (i, window) in chunk.windows(8).enumerate() {
        let mut seq = [0; 8];
        seq.copy_from_slice(window);
        if !plausible.contains(&u64::from_le_bytes(seq)) {
            continue;
        }
        let Some(start) = (chunk_at + i as u64).checked_sub(8) else {
            continue;
        };
        if start <= bad {
            continue;
        }
        if let Some(record) = read_record(file, start, size)? {
            found.push(Found {
                at: start,
                next: record.next,
                flags: record.flags,
            });
        }
    }
    Ok(found)
}

/// Says that the records from `expected` up to `found` (the next one there) are missing.
fn missing(expected: u64, found: u64) -> String {
    format!(
        "journal records {expected} to {} are missing (the journal goes on at {found})",
        found - 1
    )
}

/// The check [`Wal::open`] makes, a file at a time.
struct Scan {
    applied: u64,
    /// The last record's sequence so far.
    last: Option<u64>,
    /// Where the newest file's records end.
    newest_end: u64,
    replay: Replay,
}

impl Scan {
    fn new(applied: u64) -> Scan {
        Scan {
            applied,
            last: None,
            newest_end: 0,
            replay: Replay::default(),
        }
    }

    /// The sequence the next new record gets: after the last one in the journal, and
    /// after the applied mark (the journal may end before it, its files lost).
    fn next_seq(&self) -> u64 {
        self.last.unwrap_or(0).max(self.applied).saturating_add(1)
    }

    /// Checks that record `seq`, at byte `at` of the file named after `first`, follows
    /// the one before: sequences only grow, a file starts with the one it is named
    /// after, and none after the applied mark is missing (the pool has those before it).
    fn follows(&self, path: &Path, at: u64, first: u64, seq: u64) -> Result<(), StoreError> {
        if let Some(last) = self.last.filter(|last| seq <= *last) {
            let problem = format!("journal record {seq} comes after record {last}");
            return Err(corrupt(path, at, problem));
        }
        if at == 0 && seq != first {
            let problem = format!("the file is named after record {first} but starts with {seq}");
            return Err(corrupt(path, at, problem));
        }
        let due = self.next_seq();
        if seq > due {
            return Err(corrupt(path, at, missing(due, seq)));
        }
        Ok(())
    }

    /// Checks the file at `path`, named after sequence `first`, noting its records
    /// after the applied mark; cuts a torn tail off the newest.
    fn file(&mut self, path: &Path, first: u64, newest: bool) -> Result<(), StoreError> {
        let file = File::open(path).map_err(io(path))?;
        let size = file.metadata().map_err(io(path))?.len();
        let mut at = 0;
        let mut pending_from = None;
        while let Some(record) = read_record(&file, at, size).map_err(io(path))? {
            self.follows(path, at, first, record.seq)?;
            if record.seq > self.applied {
                pending_from.get_or_insert(at);
                self.replay.note(&record);
            }
            self.last = Some(record.seq);
            at = record.next;
        }
        let next_seq = self.last.map_or(first, |last| last.saturating_add(1));
        match tail(&file, at, size, next_seq).map_err(io(path))? {
            Tail::Clean => {}
            Tail::Torn if newest => cut(path, at)?,
            Tail::Torn => {
                let problem = "the record there is cut short in a file that is not the newest";
                return Err(corrupt(path, at, problem.into()));
            }
            Tail::Corrupt(problem) => return Err(corrupt(path, at, problem)),
        }
        if let Some(from) = pending_from {
            self.replay.spans.push_back(Span {
                path: path.to_owned(),
                file,
                at: from,
                end: at,
            });
        }
        self.newest_end = at;
        Ok(())
    }
}

/// Cuts the newest file's torn last record off at `at`.
fn cut(path: &Path, at: u64) -> Result<(), StoreError> {
    tracing::warn!(file = %path.display(), offset = at, "cutting a torn record off the end of the journal");
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(at).and_then(|()| file.sync_all()))
        .map_err(io(path))
}

/// A stretch of a journal file holding records to replay.
struct Span {
    path: PathBuf,
    /// Held open, so that the file can be read to the end even once it is released.
    file: File,
    /// Where the next record to replay starts.
    at: u64,
    /// Where the file's records end.
    end: u64,
}

/// The records after the applied mark, read back from the journal files in groups of
/// about [`REPLAY_GROUP_BYTES`] as the applier asks for them.
#[derive(Default)]
pub struct Replay {
    spans: VecDeque<Span>,
    /// Records to replay.
    records: u64,
    /// Their idempotency keys and first answers.
    keys: Vec<(Vec<u8>, IdempotencyRecord)>,
}

impl Replay {
    fn note(&mut self, record: &Record) {
        self.records += 1;
        if let Some(key) = &record.accepted.idempotency {
            self.keys.push(key.clone());
        }
    }

    /// How many records there are to replay.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The idempotency keys of the records to replay, so that a repeat is recognised
    /// before they are applied; taken once.
    pub fn take_keys(&mut self) -> Vec<(Vec<u8>, IdempotencyRecord)> {
        std::mem::take(&mut self.keys)
    }

    /// The next records in journal order, about [`REPLAY_GROUP_BYTES`] of them
    /// (at least one); `None` once all were read. Blocking.
    pub fn next_group(&mut self) -> Result<Option<Vec<(u64, Accepted)>>, StoreError> {
        let mut group = Vec::new();
        let mut bytes = 0;
        while bytes < REPLAY_GROUP_BYTES {
            let Some(span) = self.spans.front_mut() else {
                break;
            };
            if span.at >= span.end {
                self.spans.pop_front();
                continue;
            }
            let record = read_record(&span.file, span.at, span.end)
                .map_err(io(&span.path))?
                .ok_or_else(|| {
                    let problem = "a record checked on start can no longer be read".into();
                    corrupt(&span.path, span.at, problem)
                })?;
            bytes += record.next - span.at;
            span.at = record.next;
            group.push((record.seq, record.accepted));
        }
        Ok((!group.is_empty()).then_some(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(n: usize) -> Accepted {
        Accepted::for_test("s", "c_1", Vec::new(), vec![n.to_string()])
    }

    /// Every record a replay hands out, group by group.
    fn replayed(mut replay: Replay) -> Vec<(u64, Accepted)> {
        let mut records = Vec::new();
        while let Some(group) = replay.next_group().expect("read") {
            records.extend(group);
        }
        records
    }

    fn seqs(replay: Replay) -> Vec<u64> {
        replayed(replay).into_iter().map(|(seq, _)| seq).collect()
    }

    /// Overwrites bytes of the journal file named after `first` at `at`.
    fn overwrite(dir: &Path, first: u64, at: u64, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(dir.join(file_name(first)))
            .expect("open");
        file.write_all_at(bytes, at).expect("overwrite");
    }

    /// The offset a refused open names, and its message.
    fn corruption(dir: &Path, applied: u64) -> (u64, String) {
        match Wal::open(dir, applied) {
            Err(error @ StoreError::CorruptJournal { offset, .. }) => (offset, error.to_string()),
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("a corrupt journal was opened"),
        }
    }

    #[test]
    fn records_replay_after_the_applied_mark_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, pending) = Wal::open(dir.path(), 0).expect("open");
        assert_eq!(pending.records(), 0);
        assert_eq!(
            wal.append(&[accepted(1), accepted(2)]).expect("append"),
            vec![1, 2]
        );
        assert_eq!(wal.append(&[accepted(3)]).expect("append"), vec![3]);
        let end = wal.len;
        drop(wal);
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join(file_name(1)))
            .expect("open");
        file.write_all_at(&[9, 0, 0, 0, 1, 2], end)
            .expect("torn write");
        drop(file);

        let (mut wal, pending) = Wal::open(dir.path(), 1).expect("reopen");
        let pending = replayed(pending);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].0, 2);
        assert_eq!(pending[0].1.write.deletes, vec!["2".to_owned()]);
        assert_eq!(
            wal.append(&[accepted(4)]).expect("append after the cut"),
            vec![4]
        );
        let (_, pending) = Wal::open(dir.path(), 3).expect("reopen");
        assert_eq!(seqs(pending), vec![4]);
    }

    #[test]
    fn commits_overwrite_zeros_made_ahead_and_replay_stops_at_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(file_name(1));
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1)]).expect("append");
        let size = fs::metadata(&path).expect("stat").len();
        assert!(size > wal.len, "the file is extended ahead of its records");
        drop(wal);
        for round in 0..3 {
            let (mut wal, pending) = Wal::open(dir.path(), 0).expect("reopen");
            assert_eq!(seqs(pending), (1..=round + 1).collect::<Vec<u64>>());
            wal.append(&[accepted(round as usize + 2)]).expect("append");
        }
        assert_eq!(
            fs::metadata(&path).expect("stat").len(),
            size,
            "small commits write into the room made ahead"
        );
    }

    #[test]
    fn applied_files_are_deleted_once_durable_but_never_the_newest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1)]).expect("append");
        let mut next = Wal::create(dir.path(), wal.next_seq).expect("rotate");
        next.append(&[accepted(2)]).expect("append");
        assert_eq!(release(dir.path(), 0).expect("nothing durable yet"), 0);
        assert!(dir.path().join(file_name(1)).exists());
        assert_eq!(release(dir.path(), 1).expect("release"), 1);
        assert!(!dir.path().join(file_name(1)).exists());
        assert_eq!(release(dir.path(), 9).expect("release"), 0);
        assert!(
            dir.path().join(file_name(2)).exists(),
            "the current file stays"
        );
        let (_, pending) = Wal::open(dir.path(), 1).expect("reopen");
        assert_eq!(seqs(pending), vec![2]);
    }

    #[test]
    fn opening_deletes_no_file_before_the_pool_is_synced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1)]).expect("append");
        let mut next = Wal::create(dir.path(), wal.next_seq).expect("rotate");
        next.append(&[accepted(2)]).expect("append");
        let (_, pending) = Wal::open(dir.path(), 2).expect("reopen");
        assert_eq!(pending.records(), 0);
        assert!(
            dir.path().join(file_name(1)).exists(),
            "an applied file stays until a synced checkpoint releases it"
        );
    }

    #[test]
    fn a_record_over_the_limit_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        let huge = Accepted::for_test("s", "c_1", Vec::new(), vec!["x".repeat(MAX_RECORD_BYTES)]);
        match wal.append(&[accepted(1), huge]) {
            Err(StoreError::RecordTooLarge { bytes, max }) => {
                assert!(bytes > max && max == MAX_RECORD_BYTES, "{bytes} over {max}")
            }
            other => panic!("not refused: {:?}", other.map_err(|e| e.to_string())),
        }
        assert_eq!(wal.len, 0, "nothing of the batch was written");
        assert_eq!(wal.append(&[accepted(2)]).expect("append"), vec![1]);
        drop(wal);
        let (_, pending) = Wal::open(dir.path(), 0).expect("reopen");
        let pending = replayed(pending);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1.write.deletes, vec!["2".to_owned()]);
    }

    #[test]
    fn a_bad_record_before_intact_ones_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1)]).expect("append");
        let second = wal.len;
        wal.append(&[accepted(2)]).expect("append");
        wal.append(&[accepted(3)]).expect("append");
        drop(wal);
        // A flipped byte in the second record's payload.
        overwrite(dir.path(), 1, second + HEADER_LEN as u64 + 2, b"#");
        let (offset, message) = corruption(dir.path(), 0);
        assert_eq!(offset, second);
        assert!(message.contains(&file_name(1)), "{message}");
        assert!(message.contains(&format!("byte {second}")), "{message}");
    }

    #[test]
    fn a_bad_last_record_with_data_after_it_is_corruption() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1)]).expect("append");
        let last = wal.len;
        wal.append(&[accepted(2)]).expect("append");
        let end = wal.len;
        drop(wal);
        overwrite(dir.path(), 1, last + HEADER_LEN as u64 + 2, b"#");
        overwrite(dir.path(), 1, end + 100, b"not zeros");
        assert_eq!(corruption(dir.path(), 0).0, last);
    }

    #[test]
    fn a_write_torn_by_a_power_cut_is_cut_whichever_of_its_blocks_survived() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1)]).expect("append");
        let torn = wal.len;
        wal.append(&[accepted(2), accepted(3), accepted(4)])
            .expect("append");
        drop(wal);
        // The block holding record 2 was lost; records 3 and 4 of the same write reached
        // the disk. That write was never synced, so never acknowledged.
        overwrite(dir.path(), 1, torn, &[0; HEADER_LEN + 4]);
        let (mut wal, pending) = Wal::open(dir.path(), 0).expect("a torn write is cut");
        assert_eq!(seqs(pending), vec![1]);
        assert_eq!(wal.len, torn);
        assert_eq!(wal.append(&[accepted(5)]).expect("append"), vec![2]);
        drop(wal);
        let (_, pending) = Wal::open(dir.path(), 0).expect("reopen");
        assert_eq!(seqs(pending), vec![1, 2]);
    }

    #[test]
    fn a_bad_record_in_a_write_that_another_followed_is_corruption() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1), accepted(2)]).expect("append");
        let end = wal.len;
        wal.append(&[accepted(3), accepted(4)]).expect("append");
        let third = end;
        drop(wal);
        // Record 2 ended a write that was synced before records 3 and 4 were written.
        let second = {
            let file = File::open(dir.path().join(file_name(1))).expect("open");
            read_record(&file, 0, end)
                .expect("read")
                .expect("record 1")
                .next
        };
        overwrite(dir.path(), 1, second + HEADER_LEN as u64 + 2, b"#");
        let (offset, message) = corruption(dir.path(), 0);
        assert_eq!(offset, second);
        assert!(message.contains(&format!("byte {third}")), "{message}");
        // Record 3 torn as well: record 4 still ends a write with nothing after it, but
        // record 2's own header says its write ended before data that follows.
        overwrite(dir.path(), 1, third, &[0; HEADER_LEN]);
        let (offset, message) = corruption(dir.path(), 0);
        assert_eq!(offset, second, "{message}");
        assert!(message.contains("ended its write"), "{message}");
    }

    #[test]
    fn replayed_records_must_follow_the_applied_mark_without_a_gap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut wal = Wal::create(dir.path(), 3).expect("create");
        wal.append(&[accepted(3), accepted(4)]).expect("append");
        drop(wal);
        let (offset, message) = corruption(dir.path(), 1);
        assert_eq!(offset, 0);
        assert!(message.contains("records 2 to 2 are missing"), "{message}");
        let (_, pending) = Wal::open(dir.path(), 2).expect("no gap after record 2");
        assert_eq!(seqs(pending), vec![3, 4]);
    }

    #[test]
    fn a_gap_between_files_is_corruption() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1)]).expect("append");
        let mut later = Wal::create(dir.path(), 3).expect("create");
        later.append(&[accepted(3)]).expect("append");
        drop((wal, later));
        let (offset, message) = corruption(dir.path(), 0);
        assert_eq!(offset, 0);
        assert!(message.contains(&file_name(3)), "{message}");
    }

    #[test]
    fn a_replay_comes_in_bounded_groups_in_journal_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        let record_bytes = 1024 * 1024;
        let count = 3 * REPLAY_GROUP_BYTES / record_bytes;
        for n in 0..count {
            let big = Accepted::for_test(
                "s",
                "c_1",
                Vec::new(),
                vec![format!("{n}{}", "x".repeat(record_bytes as usize))],
            );
            wal.append(&[big]).expect("append");
        }
        drop(wal);
        let (_, mut replay) = Wal::open(dir.path(), 0).expect("reopen");
        assert_eq!(replay.records(), count);
        let mut seqs = Vec::new();
        let mut groups = 0;
        while let Some(group) = replay.next_group().expect("read") {
            assert!(
                group.len() as u64 <= REPLAY_GROUP_BYTES / record_bytes + 1,
                "a group of {} records",
                group.len()
            );
            groups += 1;
            seqs.extend(group.into_iter().map(|(seq, _)| seq));
        }
        assert!(groups >= 3, "{groups} groups");
        assert_eq!(seqs, (1..=count).collect::<Vec<u64>>());
    }
}
