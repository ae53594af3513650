//! The spool: an append-only, fsync'd log of the events the publisher
//! emitted, in segments on disk, read by each sink from its own cursor.
//!
//! Every event goes through it: the writer appends a batch and fsyncs it
//! before any sink sees it, so an event accepted from the master is on disk
//! before it is published, and a publisher restart resumes each sink from
//! its persisted cursor. A segment is deleted once every sink has published
//! past it and the state checkpoint covers it. The spool is bounded: when
//! its segments reach `max_bytes`, the writer stops taking events (the
//! master stream is not read; the snapshot diff recovers what the master
//! said meanwhile).
//!
//! Layout in the spool directory:
//! - `seg-<first seq, 20 digits>.log`: records `[len u32][crc32 u32][seq u64][json]`
//!   (little endian; `len` counts the JSON bytes; the CRC covers seq and json);
//! - `cursors.json`: the last sequence number each sink published;
//! - `state.json`: the core's state and the sequence number it covers.
//!
//! A torn record at the end of the last segment (a crash mid-write) is cut
//! off on open.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::core::Published;
use crate::event::CloudEvent;

const HEADER: usize = 16;
/// Largest record accepted when reading (a corrupt length beyond it ends
/// the segment).
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// A spool failure.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An I/O error on a spool file.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A record or state file that cannot be decoded.
    #[error("spool {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One spooled event with its sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Its sequence number (from 1, gapless).
    pub seq: u64,
    /// The event.
    pub event: CloudEvent,
}

#[derive(Clone, Debug)]
struct Segment {
    first: u64,
    last: u64,
    path: PathBuf,
    bytes: u64,
}

/// The state checkpoint: the core's state as of `seq`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last sequence number the state includes.
    pub seq: u64,
    /// The state.
    pub published: Published,
}

/// The spool's writer side.
pub struct Spool {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    next_seq: u64,
    segment_bytes: u64,
}

/// What [`Spool::open`] found.
pub struct Opened {
    /// The spool.
    pub spool: Spool,
    /// The checkpoint (default when none).
    pub checkpoint: Checkpoint,
    /// The records after the checkpoint, to replay into the core.
    pub replay: Vec<Record>,
    /// Each sink's persisted cursor.
    pub cursors: BTreeMap<String, u64>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.log"))
}

/// CRC-32 (IEEE) of `data`, continuing from `crc`.
pub fn crc32(mut crc: u32, data: &[u8]) -> u32 {
    crc = !crc;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Encodes one record.
pub fn encode_record(seq: u64, event: &CloudEvent) -> Vec<u8> {
    let json = serde_json::to_vec(event).unwrap_or_default();
    let seq_bytes = seq.to_le_bytes();
    let crc = crc32(crc32(0, &seq_bytes), &json);
    let mut out = Vec::with_capacity(HEADER + json.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq_bytes);
    out.extend_from_slice(&json);
    out
}

/// Reads the next record; `Ok(None)` at a clean end, `Err` with a reason
/// at a torn or corrupt one.
fn read_record<R: Read>(r: &mut R) -> Result<Option<(Record, u64)>, String> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("a torn record header".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&header[8..16]);
    if len > MAX_RECORD {
        return Err(format!("a record of {len} bytes"));
    }
    let mut json = vec![0u8; len];
    r.read_exact(&mut json)
        .map_err(|_| "a torn record".to_string())?;
    if crc32(crc32(0, &seq_bytes), &json) != crc {
        return Err("a record with a bad checksum".into());
    }
    let event: CloudEvent =
        serde_json::from_slice(&json).map_err(|e| format!("an undecodable record: {e}"))?;
    Ok(Some((
        Record {
            seq: u64::from_le_bytes(seq_bytes),
            event,
        },
        (HEADER + len) as u64,
    )))
}

fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T, SpoolError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SpoolError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes `value` to `path` atomically: a temporary file, fsync, rename,
/// fsync of the directory.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(|e| SpoolError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl Spool {
    /// Opens (or creates) the spool in `dir`: finds the segments, cuts a
    /// torn tail, and returns the records after the checkpoint.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Opened, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let checkpoint: Checkpoint = read_json(&dir.join("state.json"))?;
        let cursors: BTreeMap<String, u64> = read_json(&dir.join("cursors.json"))?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name
                .strip_prefix("seg-")
                .and_then(|r| r.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(n);
            }
        }
        firsts.sort_unstable();
        let mut segments: Vec<Segment> = Vec::new();
        let mut replay = Vec::new();
        let mut expected: Option<u64> = None;
        let mut cut_rest = false;
        for first in firsts {
            let path = segment_path(dir, first);
            if cut_rest || expected.is_some_and(|e| e != first) {
                // After a corrupt segment, or a gap: unusable.
                tracing::error!(path = %path.display(), "removing a spool segment after a gap or corruption");
                let _ = fs::remove_file(&path);
                cut_rest = true;
                continue;
            }
            let f = File::open(&path).map_err(io(&path))?;
            let mut r = BufReader::new(f);
            let mut good: u64 = 0;
            let mut last = first.saturating_sub(1);
            loop {
                match read_record(&mut r) {
                    Ok(Some((rec, size))) => {
                        if rec.seq != last + 1 {
                            tracing::error!(path = %path.display(), seq = rec.seq, "a spool record out of sequence; cutting the segment there");
                            cut_rest = true;
                            break;
                        }
                        last = rec.seq;
                        good += size;
                        if rec.seq > checkpoint.seq {
                            replay.push(rec);
                        }
                    }
                    Ok(None) => break,
                    Err(reason) => {
                        tracing::warn!(path = %path.display(), reason, "cutting a torn spool tail");
                        cut_rest = true;
                        break;
                    }
                }
            }
            let len = fs::metadata(&path).map_err(io(&path))?.len();
            if len != good {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(good).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
            expected = Some(last + 1);
            segments.push(Segment {
                first,
                last,
                path,
                bytes: good,
            });
        }
        let next_seq = expected
            .unwrap_or(0)
            .max(checkpoint.seq + 1)
            .max(cursors.values().copied().max().unwrap_or(0) + 1)
            .max(1);
        let (file, segments) = match segments.last() {
            Some(s) if s.last + 1 == next_seq => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&s.path)
                    .map_err(io(&s.path))?;
                (f, segments)
            }
            _ => {
                let path = segment_path(dir, next_seq);
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(&path))?;
                let mut segments = segments;
                segments.push(Segment {
                    first: next_seq,
                    last: next_seq - 1,
                    path,
                    bytes: 0,
                });
                (f, segments)
            }
        };
        Ok(Opened {
            spool: Spool {
                dir: dir.to_path_buf(),
                segments,
                file,
                next_seq,
                segment_bytes: segment_bytes.max(4096),
            },
            checkpoint,
            replay,
            cursors,
        })
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number of the last record (0 when none ever).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The sequence number of the oldest record on disk (`last_seq() + 1`
    /// when there is none).
    pub fn first_seq(&self) -> u64 {
        self.segments
            .first()
            .map(|s| s.first)
            .unwrap_or(self.next_seq)
    }

    /// The bytes of all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Appends `events` and fsyncs them; returns the last sequence number.
    pub fn append(&mut self, events: &[CloudEvent]) -> Result<u64, SpoolError> {
        if events.is_empty() {
            return Ok(self.last_seq());
        }
        let needs_roll = self
            .segments
            .last()
            .is_some_and(|s| s.bytes >= self.segment_bytes);
        if needs_roll {
            self.roll()?;
        }
        let mut buf = Vec::new();
        let mut seq = self.next_seq;
        for e in events {
            buf.extend_from_slice(&encode_record(seq, e));
            seq += 1;
        }
        let path = self
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let before = self.segments.last().map(|s| s.bytes).unwrap_or(0);
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Leave no partial batch behind: cut back to where it started.
            let _ = self.file.set_len(before);
            let _ = self.file.seek(SeekFrom::End(0));
            return Err(io(&path)(e));
        }
        if let Some(s) = self.segments.last_mut() {
            s.bytes += buf.len() as u64;
            s.last = seq - 1;
        }
        self.next_seq = seq;
        Ok(seq - 1)
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        let path = segment_path(&self.dir, self.next_seq);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.segments.push(Segment {
            first: self.next_seq,
            last: self.next_seq - 1,
            path,
            bytes: 0,
        });
        Ok(())
    }

    /// Deletes the segments whose records are all at or below `upto`; the
    /// segment being written is replaced by a fresh one first when it is
    /// covered too (so a full spool always frees once its sinks catch up).
    pub fn gc(&mut self, upto: u64) {
        let active_covered = self
            .segments
            .last()
            .is_some_and(|s| s.bytes > 0 && s.last <= upto);
        if active_covered {
            if let Err(e) = self.roll() {
                tracing::warn!(error = %e, "cannot start a new spool segment");
            }
        }
        let keep_from = self
            .segments
            .iter()
            .position(|s| s.last > upto)
            .unwrap_or(self.segments.len())
            .min(self.segments.len().saturating_sub(1));
        for s in self.segments.drain(..keep_from) {
            if let Err(e) = fs::remove_file(&s.path) {
                tracing::warn!(path = %s.path.display(), error = %e, "cannot delete a spool segment");
            }
        }
    }

    /// Writes the sinks' cursors.
    pub fn write_cursors(&self, cursors: &BTreeMap<String, u64>) -> Result<(), SpoolError> {
        write_json_atomic(&self.dir.join("cursors.json"), cursors)
    }

    /// Writes the state checkpoint.
    pub fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), SpoolError> {
        write_json_atomic(&self.dir.join("state.json"), checkpoint)
    }
}

/// A sink's reader: records from a sequence number on, across segments.
pub struct Reader {
    dir: PathBuf,
    next_seq: u64,
    file: Option<BufReader<File>>,
}

impl Reader {
    /// A reader whose first record will be `next_seq`.
    pub fn new(dir: &Path, next_seq: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            next_seq: next_seq.max(1),
            file: None,
        }
    }

    /// The sequence number of the next record it returns.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn open_at(&mut self) -> Result<(), SpoolError> {
        // The segment holding next_seq: the greatest first <= next_seq.
        let mut best: Option<u64> = None;
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("seg-"))
                .and_then(|r| r.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                if n <= self.next_seq && best.is_none_or(|b| n > b) {
                    best = Some(n);
                }
            }
        }
        let Some(first) = best else {
            return Err(SpoolError::Corrupt {
                path: self.dir.clone(),
                reason: format!("no segment holds record {}", self.next_seq),
            });
        };
        let path = segment_path(&self.dir, first);
        let mut r = BufReader::new(File::open(&path).map_err(io(&path))?);
        // Skip to next_seq.
        let mut seq = first;
        while seq < self.next_seq {
            match read_record(&mut r) {
                Ok(Some((rec, _))) => seq = rec.seq + 1,
                Ok(None) | Err(_) => {
                    return Err(SpoolError::Corrupt {
                        path,
                        reason: format!("record {} is missing", self.next_seq),
                    })
                }
            }
        }
        self.file = Some(r);
        Ok(())
    }

    /// Up to `max` records from the next one up to `upto` (records up to
    /// `upto` are known to be fully written).
    pub fn read(&mut self, upto: u64, max: usize) -> Result<Vec<Record>, SpoolError> {
        let mut out = Vec::new();
        while self.next_seq <= upto && out.len() < max {
            if self.file.is_none() {
                self.open_at()?;
            }
            let Some(r) = self.file.as_mut() else { break };
            match read_record(r) {
                Ok(Some((rec, _))) if rec.seq == self.next_seq => {
                    self.next_seq += 1;
                    out.push(rec);
                }
                Ok(Some((rec, _))) => {
                    return Err(SpoolError::Corrupt {
                        path: self.dir.clone(),
                        reason: format!("record {} where {} was expected", rec.seq, self.next_seq),
                    })
                }
                // The end of a segment: the next one starts at next_seq.
                Ok(None) => {
                    let path = segment_path(&self.dir, self.next_seq);
                    if !path.exists() {
                        return Err(SpoolError::Corrupt {
                            path,
                            reason: format!("record {} is missing", self.next_seq),
                        });
                    }
                    self.file = None;
                }
                Err(reason) => {
                    return Err(SpoolError::Corrupt {
                        path: self.dir.clone(),
                        reason,
                    })
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, Kind};

    fn ev(i: u64) -> CloudEvent {
        CloudEvent {
            id: format!("id{i}"),
            kind: Kind::Task,
            change: Change::Updated,
            source: "/corral".into(),
            time: "t".into(),
            subject: format!("tasks/f/t{i}"),
            role: "r".into(),
            framework_id: "f".into(),
            object_id: format!("t{i}"),
            state: Some("TASK_RUNNING".into()),
            fingerprint: String::new(),
            data: serde_json::json!({"i": i}),
        }
    }

    #[test]
    fn crc_matches_the_ieee_check_value() {
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn appends_reads_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 4096).unwrap().spool;
        for i in 1..=100 {
            assert_eq!(s.append(&[ev(i)]).unwrap(), i);
        }
        assert!(s.segments.len() > 1, "rolled");
        let mut r = Reader::new(dir.path(), 1);
        let mut got = Vec::new();
        loop {
            let batch = r.read(100, 7).unwrap();
            if batch.is_empty() {
                break;
            }
            got.extend(batch);
        }
        assert_eq!(got.len(), 100);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1 && r.event == ev(i as u64 + 1)));
        // A reader in the middle.
        let mut r = Reader::new(dir.path(), 57);
        assert_eq!(
            r.read(60, 10)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>(),
            [57, 58, 59, 60]
        );
        // Checkpoint and cursors; reopen replays after the checkpoint.
        s.write_checkpoint(&Checkpoint {
            seq: 90,
            published: Published::default(),
        })
        .unwrap();
        s.write_cursors(&BTreeMap::from([("kafka".to_string(), 95)]))
            .unwrap();
        drop(s);
        let o = Spool::open(dir.path(), 4096).unwrap();
        assert_eq!(
            o.replay.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (91..=100).collect::<Vec<_>>()
        );
        assert_eq!(o.cursors["kafka"], 95);
        let mut s = o.spool;
        assert_eq!(s.append(&[ev(101)]).unwrap(), 101);
        // GC keeps what is not yet covered, and the active segment.
        let before = s.bytes();
        s.gc(90);
        assert!(s.bytes() < before);
        let mut r = Reader::new(dir.path(), 91);
        assert_eq!(r.read(101, 100).unwrap().len(), 11);
        s.gc(u64::MAX);
        assert_eq!(s.segments.len(), 1);
        assert_eq!(s.bytes(), 0, "the covered active segment was replaced");
        assert_eq!(s.append(&[ev(102)]).unwrap(), 102);
        let mut r = Reader::new(dir.path(), 102);
        assert_eq!(r.read(102, 10).unwrap().len(), 1);
        drop(s);
        let o = Spool::open(dir.path(), 4096).unwrap();
        assert_eq!(o.spool.last_seq(), 102);
    }

    #[test]
    fn a_torn_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap().spool;
        s.append(&[ev(1), ev(2), ev(3)]).unwrap();
        let path = s.segments[0].path.clone();
        drop(s);
        let len = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 5).unwrap();
        let o = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(o.replay.len(), 2);
        let mut s = o.spool;
        assert_eq!(s.append(&[ev(3)]).unwrap(), 3);
        let mut r = Reader::new(dir.path(), 1);
        assert_eq!(r.read(3, 10).unwrap().len(), 3);
        // Garbage in the middle of a record: the checksum catches it.
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        drop(s);
        assert_eq!(Spool::open(dir.path(), 1 << 20).unwrap().replay.len(), 2);
    }

    #[test]
    fn an_empty_spool_continues_after_its_cursors() {
        let dir = tempfile::tempdir().unwrap();
        write_json_atomic(
            &dir.path().join("cursors.json"),
            &BTreeMap::from([("kafka".to_string(), 41u64)]),
        )
        .unwrap();
        let mut s = Spool::open(dir.path(), 4096).unwrap().spool;
        assert_eq!(s.append(&[ev(1)]).unwrap(), 42);
    }
}
