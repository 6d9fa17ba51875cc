//! The write-ahead journal: accepted requests appended to files in `<data-dir>/journal/`,
//! made durable with one `fdatasync` per group commit before their 202.
//!
//! The DataPool itself (sled) is flushed in the background by a checkpoint; journal
//! files whose every record is applied and flushed are then deleted ([`release`]), off
//! the commit path. On start, records after the last applied one are replayed. A record
//! reads `[u32 length][u32 crc32 of seq+payload][u64 seq][payload: JSON of Accepted]`,
//! little endian; a torn record at the end of the newest file (a crash mid-write, before
//! its 202) is cut off.
//!
//! Files are extended with zeros ahead of the records ([`PREALLOCATE_BYTES`] at a time),
//! so a commit overwrites blocks the file already has: its `fdatasync` writes the data
//! alone, without the file-size update that an append makes it write as well. A zero
//! header ends a file's records.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Accepted, StoreError};

/// Size past which the journal moves on to a new file, so applied files can be deleted.
const ROTATE_AFTER_BYTES: u64 = 64 * 1024 * 1024;
/// How far a file is extended with zeros when its records reach its end: the commit
/// that extends it writes this much more (about a millisecond here), once per this many
/// bytes of records.
const PREALLOCATE_BYTES: u64 = 1024 * 1024;
/// Bytes before a record's payload.
const HEADER_LEN: usize = 16;
/// Largest record accepted on replay; anything claiming more is a torn header.
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;
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
/// (applied to the pool and flushed); the newest file, which the committer writes,
/// always stays. Returns how many it deleted. Blocking.
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

impl Wal {
    /// Opens the journal in `dir`, deleting files that hold nothing after `applied`, and
    /// returns the records after `applied`, in order, for the applier to replay.
    pub fn open(dir: &Path, applied: u64) -> Result<(Wal, Vec<(u64, Accepted)>), StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        release(dir, applied)?;
        let files = files(dir)?;
        let mut pending = Vec::new();
        let mut last_seq = applied;
        let mut newest_end = 0;
        for (index, (_, path)) in files.iter().enumerate() {
            let newest = index + 1 == files.len();
            let (records, end) = read_records(path, newest)?;
            newest_end = end;
            for (seq, accepted) in records {
                last_seq = last_seq.max(seq);
                if seq > applied {
                    pending.push((seq, accepted));
                }
            }
        }
        let next_seq = last_seq + 1;
        let wal = match files.last() {
            Some((_, path)) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io(path))?;
                let allocated = file.metadata().map_err(io(path))?.len();
                Wal {
                    dir: dir.to_owned(),
                    path: path.clone(),
                    file,
                    len: newest_end,
                    allocated,
                    next_seq,
                }
            }
            None => Wal::create(dir, next_seq)?,
        };
        Ok((wal, pending))
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
            allocated: 0,
            next_seq: first,
        })
    }

    /// Appends `batch` and makes it durable (`fdatasync`); returns each record's
    /// sequence. Blocking: call it off the async runtime.
    pub fn append(&mut self, batch: &[Accepted]) -> Result<Vec<u64>, StoreError> {
        if self.len >= ROTATE_AFTER_BYTES {
            *self = Wal::create(&self.dir, self.next_seq)?;
        }
        let mut buffer = Vec::new();
        let mut seqs = Vec::with_capacity(batch.len());
        for (seq, accepted) in (self.next_seq..).zip(batch) {
            encode_record(&mut buffer, seq, accepted)?;
            seqs.push(seq);
        }
        let end = self.len + buffer.len() as u64;
        let written = self
            .extend_to(end)
            .and_then(|()| self.file.write_all_at(&buffer, self.len))
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Cut back what may be half written: the next records must follow the last
            // good one, or replay would stop short of them.
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

/// Appends one record to `buffer`.
fn encode_record(buffer: &mut Vec<u8>, seq: u64, accepted: &Accepted) -> Result<(), StoreError> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; HEADER_LEN]);
    serde_json::to_writer(&mut *buffer, accepted)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let payload = &buffer[start + HEADER_LEN..];
    let len = u32::try_from(payload.len())
        .map_err(|_| StoreError::Corrupt("a record over 4 GiB".into()))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    let crc = crc.finalize();
    buffer[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buffer[start + 8..start + HEADER_LEN].copy_from_slice(&seq.to_le_bytes());
    Ok(())
}

/// Reads a journal file's records and where they end: at the file's end or at zeros
/// (room made ahead). A torn or corrupt record ends the newest file (it was being
/// written when the process stopped, so it was never acknowledged) and the file is cut
/// there; in an older file it is corruption.
fn read_records(path: &Path, newest: bool) -> Result<(Vec<(u64, Accepted)>, u64), StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].iter().all(|b| *b == 0) {
            break;
        }
        match parse_record(&bytes[at..]) {
            Some((seq, accepted, used)) => {
                records.push((seq, accepted));
                at += used;
            }
            None if newest => {
                tracing::warn!(file = %path.display(), offset = at, "cutting a torn record off the end of the journal");
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io(path))?;
                file.set_len(at as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(io(path))?;
                break;
            }
            None => {
                return Err(StoreError::Corrupt(format!(
                    "{} has a corrupt record at byte {at}",
                    path.display()
                )));
            }
        }
    }
    Ok((records, at as u64))
}

fn parse_record(bytes: &[u8]) -> Option<(u64, Accepted, usize)> {
    let header = bytes.get(..HEADER_LEN)?;
    let len = usize::try_from(u32::from_le_bytes(header[0..4].try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq_bytes: [u8; 8] = header[8..16].try_into().ok()?;
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + len)?;
    let mut check = crc32fast::Hasher::new();
    check.update(&seq_bytes);
    check.update(payload);
    if check.finalize() != crc {
        return None;
    }
    let accepted = serde_json::from_slice(payload).ok()?;
    Some((u64::from_le_bytes(seq_bytes), accepted, HEADER_LEN + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(n: usize) -> Accepted {
        Accepted::for_test("s", "c_1", Vec::new(), vec![n.to_string()])
    }

    fn seqs(records: &[(u64, Accepted)]) -> Vec<u64> {
        records.iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn records_replay_after_the_applied_mark_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, pending) = Wal::open(dir.path(), 0).expect("open");
        assert!(pending.is_empty());
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
        assert_eq!(seqs(&pending), vec![2, 3]);
        assert_eq!(pending[0].1.write.deletes, vec!["2".to_owned()]);
        assert_eq!(
            wal.append(&[accepted(4)]).expect("append after the cut"),
            vec![4]
        );
        let (_, pending) = Wal::open(dir.path(), 3).expect("reopen");
        assert_eq!(seqs(&pending), vec![4]);
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
            assert_eq!(seqs(&pending), (1..=round + 1).collect::<Vec<u64>>());
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
        assert_eq!(seqs(&pending), vec![2]);
    }
}
