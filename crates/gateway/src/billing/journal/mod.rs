//! The settlement journal: what a `kill -9` must not lose.
//!
//! Settlements reach the database through the batching writer
//! ([`super::settlement`]), which commits a few milliseconds after a request
//! ends. A process killed in between would lose those charges, and holds
//! placed in the database would stay until `hold_ttl_secs`. So every metered
//! request writes two lines to an append-only file on local disk:
//!
//! * `start`, when its hold is placed: the request as it would be recorded if
//!   it never finished (status 0, cost 0, "interrupted");
//! * `settle`, when its exact cost is known, before the client receives the
//!   last bytes of its answer.
//!
//! Segments are memory-mapped files: a line is copied into the mapping, and
//! from that moment it survives the process dying (the page belongs to the
//! kernel's page cache, which writes it out), with no system call per line.
//! `journal_fsync = true` also survives the machine losing power, at one
//! `msync` per line. A line cut short by a crash is followed by zeros and
//! is skipped at replay: its request had not gone past journaling.
//!
//! At start, before serving, [`Journal::open`] replays what an earlier
//! process left: each journaled settlement is written (settling is keyed by
//! request id, so one already committed changes nothing), and each request
//! that started but never settled is recorded as interrupted, charged
//! nothing, its hold released. That is the documented rule for requests in
//! flight at a crash: the client did not get a complete answer, so nothing is
//! charged.
//!
//! The file is cut into segments. The journal knows where the last line of
//! each request not yet committed is; when a segment is full, the next one
//! starts with those lines and the older segment is cleared, to be reused
//! as the one after (a fresh file per segment would cost a page fault per
//! 4 KiB written). So the journal takes two segments plus what is in
//! flight, however long a stream runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use memmap2::MmapMut;
use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;
use store::{Settlement, Store};

mod line;

/// The size of a segment (a sparse file: untouched pages take no disk).
/// Both segments stay mapped and their pages resident, so this is resident
/// memory: 1 MiB holds ~1,700 requests' lines, and a rotation (copy the
/// open lines, clear the used part) costs a few µs per 1,700 requests.
const SEGMENT_BYTES: usize = 1024 * 1024;
/// What the usage record of a request in flight at a crash says.
const INTERRUPTED: &str =
    "interrupted: the gateway stopped before the request finished; not charged";
/// Settlements replayed per transaction at start.
const REPLAY_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "journal {0} is in use by another Tollgate process (each instance needs its own journal_dir)"
    )]
    Locked(PathBuf),
    #[error("replaying the journal: {0}")]
    Store(#[from] store::StoreError),
}

#[derive(Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
enum Record {
    Start {
        s: Settlement,
    },
    Settle {
        s: Settlement,
    },
    /// The request was refused before any hold: nothing to replay.
    Cancel {
        id: String,
    },
}

/// [`Record`] as written: borrowed, so journaling copies nothing. Encoded
/// by [`line`], into the bytes serde would write (kept as serde's
/// `Serialize` for its tests).
#[cfg_attr(test, derive(Serialize), serde(tag = "k", rename_all = "lowercase"))]
enum RecordRef<'a> {
    Start { s: &'a Settlement },
    Settle { s: &'a Settlement },
    Cancel { id: &'a str },
}

struct Active {
    map: MmapMut,
    segment: u64,
    /// Bytes used in `map`.
    size: usize,
    /// Where in `map` the last line of each open request is.
    open: OpenLines,
    /// The segment before `map`, cleared and still mapped: the next
    /// rotation reuses it, so the journal's pages are faulted in and
    /// allocated once, not once per segment.
    spare: Option<(MmapMut, u64)>,
}

/// The requests journaled and not yet committed to the database, each at a
/// slot of its own: no hashing or allocation per line, and a rotation finds
/// every line it must carry over.
#[derive(Default)]
struct OpenLines {
    slots: Vec<Slot>,
    free: Vec<u32>,
    count: usize,
    /// Total length of their lines.
    bytes: usize,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    /// The request's last line in the active segment; `None` when free.
    line: Option<Range<usize>>,
}

/// A request's place in the journal, from its first line until its
/// settlement is committed. Stale handles (a slot freed and reused since)
/// are ignored, never mistaken for the new occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    index: u32,
    generation: u32,
}

impl OpenLines {
    fn occupy(&mut self, line: Range<usize>) -> Option<Entry> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).ok()?;
                self.slots.push(Slot::default());
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        self.count += 1;
        self.bytes += line.len();
        slot.line = Some(line);
        Some(Entry {
            index,
            generation: slot.generation,
        })
    }

    fn slot(&mut self, entry: Entry) -> Option<&mut Slot> {
        self.slots
            .get_mut(entry.index as usize)
            .filter(|slot| slot.generation == entry.generation && slot.line.is_some())
    }

    /// Points `entry` at its new last line; `None` if it is not open.
    fn replace(&mut self, entry: Entry, line: Range<usize>) -> Option<Entry> {
        let new_len = line.len();
        let slot = self.slot(entry)?;
        let old = slot.line.replace(line).map_or(0, |l| l.len());
        self.bytes = self.bytes - old + new_len;
        Some(entry)
    }

    fn release(&mut self, entry: Entry) {
        let Some(slot) = self.slot(entry) else { return };
        let old = slot.line.take().map_or(0, |l| l.len());
        slot.generation = slot.generation.wrapping_add(1);
        self.count -= 1;
        self.bytes -= old;
        self.free.push(entry.index);
    }
}

thread_local! {
    /// Each thread encodes its lines here, outside the journal's lock.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An encoding buffer larger than this is not kept for the next line.
const KEEP_LINE_BUFFER: usize = 64 * 1024;

pub struct Journal {
    dir: PathBuf,
    fsync: bool,
    active: Mutex<Active>,
    /// Held for the process's life: two processes never share a journal.
    _lock: File,
}

/// What a replay at start did (journaled requests the database already had
/// are left as they were and not counted).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Settlements the earlier process had not committed: written now.
    pub settled: usize,
    /// Requests in flight when the earlier process died, recorded as
    /// interrupted and released at no charge.
    pub interrupted: usize,
    /// Every request replayed, as (user, key, request id): whatever holds
    /// they still have elsewhere (Redis) can go.
    pub requests: Vec<(i64, String, String)>,
}

/// Writes a batch of replayed requests, counting those the store had not.
async fn apply(
    store: &Store,
    batch: &mut Vec<(bool, Settlement)>,
    result: &mut Replay,
) -> Result<(), JournalError> {
    let settlements: Vec<Settlement> = batch.iter().map(|(_, s)| s.clone()).collect();
    let outcomes = store.settle_many(&settlements).await?;
    for ((settled, _), outcome) in batch.iter().zip(outcomes) {
        if outcome == store::SettleOutcome::Charged {
            if *settled {
                result.settled += 1;
            } else {
                result.interrupted += 1;
            }
        }
    }
    batch.clear();
    Ok(())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("settlements-{segment:016}.jsonl"))
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("settlements-")
            .and_then(|rest| rest.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    // SAFETY: flock on a descriptor we own; the lock goes with the process.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        return Err(JournalError::Locked(dir.to_path_buf()));
    }
    Ok(file)
}

/// Creates segment `segment` of `len` zero bytes and maps it.
fn map_segment(dir: &Path, segment: u64, len: usize) -> Result<MmapMut, JournalError> {
    let path = segment_path(dir, segment);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    file.set_len(len as u64).map_err(io_error(&path))?;
    // SAFETY: the file is ours (the journal folder is locked against other
    // processes) and nothing truncates it while it is mapped.
    unsafe { MmapMut::map_mut(&file) }.map_err(io_error(&path))
}

impl Journal {
    /// Opens (creating) the journal in `dir`, replays what an earlier process
    /// left into `store`, and starts a fresh segment.
    pub async fn open(
        dir: &Path,
        fsync: bool,
        store: &Store,
    ) -> Result<(Journal, Replay), JournalError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock = lock_dir(dir)?;
        let old = segments(dir)?;
        let replay = replay(dir, &old, store).await?;
        for segment in &old {
            let path = segment_path(dir, *segment);
            fs::remove_file(&path).map_err(io_error(&path))?;
        }
        let segment = old.last().map_or(0, |last| last + 1);
        let map = map_segment(dir, segment, SEGMENT_BYTES)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            fsync,
            active: Mutex::new(Active {
                map,
                segment,
                size: 0,
                open: OpenLines::default(),
                spare: None,
            }),
            _lock: lock,
        };
        Ok((journal, replay))
    }

    /// Journals a request whose hold is about to be placed: what it would
    /// be recorded as if it never finished. `None` if it could not be
    /// written (logged; only crash safety is lost for this request).
    pub fn start(&self, interrupted: &Settlement) -> Option<Entry> {
        self.append(None, &RecordRef::Start { s: interrupted })
    }

    /// Journals a request's final settlement; the entry returned stays open
    /// until [`Journal::committed`].
    pub fn settle(&self, entry: Option<Entry>, settlement: &Settlement) -> Option<Entry> {
        self.append(entry, &RecordRef::Settle { s: settlement })
    }

    /// Journals that a started request was refused before any hold (its
    /// balance could not cover it): replay forgets it.
    pub fn cancel(&self, entry: Entry, request_id: &str) {
        self.append(Some(entry), &RecordRef::Cancel { id: request_id });
        self.committed([entry]);
    }

    /// Writes one line as `entry`'s latest (a new entry if `None` or no
    /// longer open).
    fn append(&self, entry: Option<Entry>, record: &RecordRef<'_>) -> Option<Entry> {
        LINE.with_borrow_mut(|line| {
            line.clear();
            if let Err(e) = line::encode(record, line) {
                tracing::error!(error = %e, "journal: could not encode a record");
                return None;
            }
            line.push(b'\n');
            let written = self.write_line(entry, line);
            if line.capacity() > KEEP_LINE_BUFFER {
                *line = Vec::new();
            }
            written
        })
    }

    fn write_line(&self, entry: Option<Entry>, line: &[u8]) -> Option<Entry> {
        let mut active = self.lock();
        if active.size + line.len() > active.map.len() {
            if let Err(e) = self.rotate(&mut active, line.len()) {
                tracing::error!(error = %e, "journal: could not start a new segment; this request is not crash-safe");
                return None;
            }
        }
        let at = active.size;
        let range = at..at + line.len();
        active.map[range.clone()].copy_from_slice(line);
        if self.fsync {
            if let Err(e) = active.map.flush_range(at, line.len()) {
                tracing::error!(error = %e, "journal: msync failed");
            }
        }
        active.size = range.end;
        match entry.and_then(|e| active.open.replace(e, range.clone())) {
            Some(entry) => Some(entry),
            None => active.open.occupy(range),
        }
    }

    /// Starts the next segment with the lines still open; the one before
    /// holds nothing else of use and is cleared to be the next spare. A
    /// segment is at least twice what is open, so rewriting stays a small
    /// share of the writing.
    fn rotate(&self, active: &mut Active, next_line: usize) -> Result<(), JournalError> {
        let next = active.segment + 1;
        let len = SEGMENT_BYTES.max(2 * (active.open.bytes + next_line));
        let mut map = self.next_segment(active.spare.take(), next, len)?;
        // The open lines are copied, and made durable when asked, before any
        // state changes: a failure leaves the active segment as it was.
        let mut at = 0;
        for line in active
            .open
            .slots
            .iter()
            .filter_map(|slot| slot.line.as_ref())
        {
            map[at..at + line.len()].copy_from_slice(&active.map[line.clone()]);
            at += line.len();
        }
        if self.fsync {
            let path = segment_path(&self.dir, next);
            if let Err(e) = map.flush() {
                drop(map);
                let _ = fs::remove_file(&path);
                return Err(JournalError::Io { path, source: e });
            }
        }
        let mut moved = 0;
        for line in active
            .open
            .slots
            .iter_mut()
            .filter_map(|slot| slot.line.as_mut())
        {
            let len = line.len();
            *line = moved..moved + len;
            moved += len;
        }
        let finished_segment = active.segment;
        let mut finished = std::mem::replace(&mut active.map, map);
        let used = active.size;
        active.segment = next;
        active.size = at;
        // Cleared for reuse, its first byte first: from that moment replay
        // reads nothing of it, even if the process dies mid-clear.
        if used > 0 {
            finished[0] = 0;
            finished[1..used].fill(0);
        }
        let cleared = !self.fsync || finished.flush().is_ok();
        if cleared {
            active.spare = Some((finished, finished_segment));
        } else {
            // Not known to be cleared on disk: never renamed to a later number.
            drop(finished);
            let path = segment_path(&self.dir, finished_segment);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(error = %e, path = %path.display(), "journal: could not delete a finished segment");
            }
        }
        Ok(())
    }

    /// Segment `next`, of `len` bytes at least: the cleared spare renamed
    /// when it is large enough, else a new file.
    fn next_segment(
        &self,
        spare: Option<(MmapMut, u64)>,
        next: u64,
        len: usize,
    ) -> Result<MmapMut, JournalError> {
        if let Some((map, segment)) = spare {
            let path = segment_path(&self.dir, segment);
            if map.len() >= len {
                match fs::rename(&path, segment_path(&self.dir, next)) {
                    Ok(()) => return Ok(map),
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "journal: could not reuse a segment")
                    }
                }
            }
            drop(map);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(error = %e, path = %path.display(), "journal: could not delete a finished segment");
            }
        }
        map_segment(&self.dir, next, len)
    }

    /// These requests' settlements are committed to the database: their
    /// lines are no longer needed.
    pub fn committed(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut active = self.lock();
        for entry in entries {
            active.open.release(entry);
        }
    }

    /// Requests whose lines are kept until they are committed.
    pub fn open_requests(&self) -> usize {
        self.lock().open.count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        match self.active.lock() {
            Ok(a) => a,
            // A panic while holding the lock leaves at worst a partial line,
            // which replay skips.
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Reads every segment and writes to the store what it must hold.
async fn replay(dir: &Path, old: &[u64], store: &Store) -> Result<Replay, JournalError> {
    // Request id → its last record; insertion order kept for a stable replay.
    let mut order: Vec<String> = Vec::new();
    let mut last: HashMap<String, (bool, Settlement)> = HashMap::new();
    for segment in old {
        let path = segment_path(dir, *segment);
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        // What was written ends at the first zero byte (segments are
        // created zero-filled).
        let used = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        for line in bytes[..used].split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            // A line cut short by a crash (or a power loss without fsync)
            // is the only one that can fail to parse: it never completed.
            let Ok(record) = serde_json::from_slice::<Record>(line) else {
                tracing::warn!(path = %path.display(), "journal: skipping an incomplete line");
                continue;
            };
            let (settled, s) = match record {
                Record::Start { s } => (
                    false,
                    Settlement {
                        status: 0,
                        error: Some(INTERRUPTED.into()),
                        ..s
                    },
                ),
                Record::Settle { s } => (true, s),
                Record::Cancel { id } => {
                    last.remove(&id);
                    continue;
                }
            };
            match last.get_mut(&s.request_id) {
                Some(entry) => {
                    // A settlement is final; a stray start never undoes it.
                    if settled || !entry.0 {
                        *entry = (settled, s);
                    }
                }
                None => {
                    order.push(s.request_id.clone());
                    last.insert(s.request_id.clone(), (settled, s));
                }
            }
        }
    }
    let mut result = Replay::default();
    let mut batch: Vec<(bool, Settlement)> = Vec::with_capacity(REPLAY_BATCH);
    for id in order {
        if let Some(entry) = last.remove(&id) {
            let s = &entry.1;
            result
                .requests
                .push((s.user_id, s.key_id.clone(), s.request_id.clone()));
            batch.push(entry);
        }
        if batch.len() == REPLAY_BATCH {
            apply(store, &mut batch, &mut result).await?;
        }
    }
    apply(store, &mut batch, &mut result).await?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_freed_and_reused_ignores_its_old_handle() {
        let mut open = OpenLines::default();
        let first = open.occupy(0..10).unwrap();
        open.release(first);
        let second = open.occupy(10..25).unwrap();
        assert_eq!(first.index, second.index, "the slot is reused");
        // The stale handle neither moves nor frees the new occupant.
        assert_eq!(open.replace(first, 30..31), None);
        open.release(first);
        assert_eq!((open.count, open.bytes), (1, 15));
        assert_eq!(open.replace(second, 30..70), Some(second));
        assert_eq!(open.bytes, 40);
        open.release(second);
        assert_eq!((open.count, open.bytes), (0, 0));
    }
}
