//! The write-ahead journal: accepted requests appended to files in `<data-dir>/journal/`,
//! made durable with one `fdatasync` per group commit before their 202.
//!
//! The DataPool itself (sled) is flushed in the background by a checkpoint; journal
//! files whose every record is applied and flushed are then deleted. On start, records
//! after the last applied one are replayed. A record reads
//! `[u32 length][u32 crc32 of seq+payload][u64 seq][payload: JSON of Accepted]`, little
//! endian; a torn record at the end of the newest file (a crash mid-write, before its
//! 202) is cut off.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use super::{Accepted, StoreError};

/// Size past which the journal moves on to a new file, so applied files can be deleted.
const ROTATE_AFTER_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes before a record's payload.
const HEADER_LEN: usize = 16;
/// Largest record accepted on replay; anything claiming more is a torn header.
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// The open journal; owned by the group committer.
pub struct Wal {
    dir: PathBuf,
    file: File,
    len: u64,
    next_seq: u64,
    /// Earlier files: their first sequence and path, oldest first.
    older: Vec<(u64, PathBuf)>,
    /// First sequence of the current file.
    current_first: u64,
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

impl Wal {
    /// Opens the journal in `dir`, deleting files that hold nothing after `applied`, and
    /// returns the records after `applied`, in order, for the applier to replay.
    pub fn open(dir: &Path, applied: u64) -> Result<(Wal, Vec<(u64, Accepted)>), StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
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
        let mut pending = Vec::new();
        let mut last_seq = applied;
        let count = files.len();
        for (index, (_, path)) in files.iter().enumerate() {
            let newest = index + 1 == count;
            for (seq, accepted) in read_records(path, newest)? {
                last_seq = last_seq.max(seq);
                if seq > applied {
                    pending.push((seq, accepted));
                }
            }
        }
        let next_seq = last_seq + 1;
        let mut wal = match files.pop() {
            Some((first, path)) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io(&path))?;
                let len = file.metadata().map_err(io(&path))?.len();
                Wal {
                    dir: dir.to_owned(),
                    file,
                    len,
                    next_seq,
                    older: files,
                    current_first: first,
                }
            }
            None => Wal::create(dir, next_seq, Vec::new())?,
        };
        wal.release(applied)?;
        Ok((wal, pending))
    }

    fn create(dir: &Path, first: u64, older: Vec<(u64, PathBuf)>) -> Result<Wal, StoreError> {
        let path = dir.join(file_name(first));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(Wal {
            dir: dir.to_owned(),
            file,
            len: 0,
            next_seq: first,
            older,
            current_first: first,
        })
    }

    /// Appends `batch` and makes it durable (`fdatasync`); returns each record's
    /// sequence. Blocking: call it off the async runtime.
    pub fn append(&mut self, batch: &[Accepted]) -> Result<Vec<u64>, StoreError> {
        let mut buffer = Vec::new();
        let mut seqs = Vec::with_capacity(batch.len());
        for accepted in batch {
            let payload =
                serde_json::to_vec(accepted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let seq = self.next_seq;
            self.next_seq += 1;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&seq.to_le_bytes());
            crc.update(&payload);
            let len = u32::try_from(payload.len())
                .map_err(|_| StoreError::Corrupt("a record over 4 GiB".into()))?;
            buffer.extend_from_slice(&len.to_le_bytes());
            buffer.extend_from_slice(&crc.finalize().to_le_bytes());
            buffer.extend_from_slice(&seq.to_le_bytes());
            buffer.extend_from_slice(&payload);
            seqs.push(seq);
        }
        let path = self.dir.join(file_name(self.current_first));
        let written = self
            .file
            .write_all(&buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Cut back what may be half written: the next records must follow the last
            // good one, or replay would stop short of them.
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::error!(file = %path.display(), error = %cut, "cannot cut a failed journal write back");
            }
            self.next_seq -= seqs.len() as u64;
            return Err(io(&path)(error));
        }
        self.len += buffer.len() as u64;
        if self.len >= ROTATE_AFTER_BYTES {
            let older = std::mem::take(&mut self.older);
            let mut next = Wal::create(&self.dir, self.next_seq, older)?;
            next.older.push((self.current_first, path));
            *self = next;
        }
        Ok(seqs)
    }

    /// Deletes older files whose every record is at or before `durable`: applied to the
    /// pool and flushed.
    pub fn release(&mut self, durable: u64) -> Result<(), StoreError> {
        let mut firsts: Vec<u64> = self.older.iter().map(|(first, _)| *first).collect();
        firsts.push(self.current_first);
        let mut keep = Vec::new();
        for (index, (_, path)) in self.older.drain(..).enumerate() {
            let last = firsts[index + 1].saturating_sub(1);
            if last <= durable {
                fs::remove_file(&path).map_err(io(&path))?;
            } else {
                keep.push((firsts[index], path));
            }
        }
        self.older = keep;
        Ok(())
    }
}

/// Reads a journal file's records. A torn or corrupt record ends the newest file (it was
/// being written when the process stopped, so it was never acknowledged) and the file
/// is cut there; in an older file it is corruption.
fn read_records(path: &Path, newest: bool) -> Result<Vec<(u64, Accepted)>, StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
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
    Ok(records)
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
        let path = dir.path().join(file_name(1));
        drop(wal);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&[9, 0, 0, 0, 1, 2]).expect("torn write");
        drop(file);

        let (mut wal, pending) = Wal::open(dir.path(), 1).expect("reopen");
        let seqs: Vec<u64> = pending.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![2, 3]);
        assert_eq!(pending[0].1.write.deletes, vec!["2".to_owned()]);
        assert_eq!(
            wal.append(&[accepted(4)]).expect("append after the cut"),
            vec![4]
        );
        let (_, pending) = Wal::open(dir.path(), 3).expect("reopen");
        assert_eq!(pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn applied_files_are_deleted_once_durable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&[accepted(1)]).expect("append");
        let older = wal.current_first;
        let mut next = Wal::create(dir.path(), wal.next_seq, Vec::new()).expect("rotate");
        next.older.push((older, dir.path().join(file_name(older))));
        next.append(&[accepted(2)]).expect("append");
        next.release(0).expect("nothing durable yet");
        assert!(dir.path().join(file_name(1)).exists());
        next.release(1).expect("release");
        assert!(!dir.path().join(file_name(1)).exists());
        assert!(
            dir.path().join(file_name(2)).exists(),
            "the current file stays"
        );
    }
}
