//! The witness log's journal: where an append becomes durable, in one write and one flush, before its
//! records reach the redb tables.
//!
//! A redb commit of the log's tables writes a few pages per table it touches, the table tree, the freed
//! list and the header, then flushes: 0.3-0.4 ms where the disk's own flush takes 0.12 ms
//! (docs/BENCHMARKS.md), and every command waits for two. The journal is one file of fixed size,
//! zero-filled when it is made, so on a file system that writes in place (ext4, XFS) a write into it
//! allocates nothing and changes no metadata, and its flush is the disk's alone. [`super::store`] writes
//! each batch into it as one frame and later folds the frames into the tables in one transaction (its
//! contract says when).
//!
//! The file is two segments of equal size. Frames go into the active one; when the store hands a
//! segment's records to its folding thread, the other segment becomes active, so appends go on while
//! the fold commits. A segment is written again only once its records are in the tables.
//!
//! A frame, little-endian, starts on a 4 KiB boundary and is padded with zeros to the next one, so that
//! a write never touches a block of a frame already acknowledged (a torn write on flash without power-
//! loss protection can damage the whole block it was writing):
//!
//! ```text
//! "IFJ1" | payload length u32 | CRC-32C u32 of everything after it | records u32
//!        | index of its first record u64 | leaf hash of the record before it [32] | payload
//! ```
//!
//! The payload is the batch as postcard ([`Body`]): the appends, and the checkpoint note signed with
//! them. Every frame is written together with 8 zero bytes after it, the end mark, which the next frame
//! overwrites. A segment written again starts at its first byte: older frames stay beyond the end mark,
//! and the store tells them from new ones by their indices and their link to the log.
//!
//! Reading a segment back ([`read`]) takes frames from its start until the end mark or a frame that does
//! not check (a crash in its write: it was never acknowledged). Whether an intact frame lies further on
//! ([`Segment::intact_after`]) tells a torn last write from a frame lost in the middle.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crc::{CRC_32_ISCSI, Crc};
use if_protocol::IfError;
use if_protocol::witness::Hash;
use serde::{Deserialize, Serialize};

use super::schema::Append;
use super::schema::{corrupt, unavailable};

/// The journal's size.
pub const JOURNAL_BYTES: u64 = 4 << 20;
/// One segment's size: a fold's worth of frames and a large batch fit in it.
pub const SEGMENT_BYTES: u64 = JOURNAL_BYTES / 2;
/// The first bytes of every frame.
const MAGIC: [u8; 4] = *b"IFJ1";
/// The header's length: magic, length, CRC, records, first index, the link.
const HEADER: usize = 56;
/// The zero bytes written after every frame.
const END: usize = 8;
/// Where frames start: file-system blocks.
const ALIGN: usize = 4096;
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// A batch as the journal holds it (the payload of a frame), borrowed for writing.
#[derive(Debug, Serialize)]
struct BodyRef<'a> {
    appends: &'a [&'a Append],
    checkpoint: Option<&'a str>,
}

/// A batch as the journal holds it (the payload of a frame).
#[derive(Debug, Deserialize)]
pub struct Body {
    /// The records, as the writer received them.
    pub appends: Vec<Append>,
    /// The checkpoint note signed after them, if one was due.
    pub checkpoint: Option<String>,
}

/// One frame read back from the file.
#[derive(Debug)]
pub struct Frame {
    /// Where it starts in the file.
    pub offset: usize,
    /// The index of its first record.
    pub first: u64,
    /// How many records it holds.
    pub records: u32,
    /// The leaf hash of the record before its first.
    pub prev: Hash,
    /// Its payload, not yet decoded.
    payload: Vec<u8>,
}

impl Frame {
    /// The index after its last record.
    pub fn end(&self) -> u64 {
        self.first.saturating_add(u64::from(self.records))
    }

    /// Decodes the payload; a payload that does not hold `records` appends is corrupt.
    pub fn body(&self) -> Result<Body, IfError> {
        let body: Body = match postcard::take_from_bytes(&self.payload) {
            Ok((body, [])) => body,
            _ => return Err(corrupt(format_args!("journal frame at byte {} does not decode", self.offset))),
        };
        if body.appends.len() != self.records as usize {
            return Err(corrupt(format_args!("journal frame at byte {} holds a different count", self.offset)));
        }
        Ok(body)
    }
}

/// Encodes a frame of `appends` whose first record is `first`, linked to `prev`, with the end mark.
pub fn encode(first: u64, prev: &Hash, appends: &[&Append], checkpoint: Option<&str>) -> Result<Vec<u8>, IfError> {
    let records = u32::try_from(appends.len()).map_err(|_| unavailable("journal", "too many records in one batch"))?;
    let out = vec![0u8; HEADER];
    let mut out =
        postcard::to_extend(&BodyRef { appends, checkpoint }, out).map_err(|e| unavailable("journal encoding", e))?;
    let len = u32::try_from(out.len() - HEADER).map_err(|_| unavailable("journal", "batch too large"))?;
    out[0..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out[12..16].copy_from_slice(&records.to_le_bytes());
    out[16..24].copy_from_slice(&first.to_le_bytes());
    out[24..56].copy_from_slice(prev);
    let crc = CRC32C.checksum(&out[12..]);
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out.resize(out.len().next_multiple_of(ALIGN) + END, 0);
    Ok(out)
}

/// The frame at `offset` of `buf`, if an intact one starts there.
fn frame_at(buf: &[u8], offset: usize) -> Option<Frame> {
    let header = buf.get(offset..offset.checked_add(HEADER)?)?;
    if header[0..4] != MAGIC {
        return None;
    }
    let word = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let len = usize::try_from(word(4)).ok()?;
    let checked = buf.get(offset + 12..offset.checked_add(HEADER)?.checked_add(len)?)?;
    if CRC32C.checksum(checked) != word(8) {
        return None;
    }
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&header[24..56]);
    Some(Frame { offset, first: first_of(header), records: word(12), prev, payload: checked[HEADER - 12..].to_vec() })
}

/// The index of the first record in a frame's `header`.
fn first_of(header: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&header[16..24]);
    u64::from_le_bytes(first)
}

/// The length `frame` takes in the file, end mark excluded.
fn span(frame: &Frame) -> usize {
    (HEADER + frame.payload.len()).next_multiple_of(ALIGN)
}

/// One segment of the file as read back.
#[derive(Debug)]
pub struct Segment<'a> {
    bytes: &'a [u8],
    /// Its intact frames one after another from its start (offsets in the file).
    pub frames: Vec<Frame>,
    /// Where they stop, from the segment's start.
    stop: usize,
}

impl Segment<'_> {
    /// The first index of an intact frame beyond the point where reading stopped that holds records from
    /// `at_least` on: a frame of the current run after a broken one.
    pub fn intact_after(&self, at_least: u64) -> Option<u64> {
        let buf = self.bytes;
        let mut offset = self.stop.next_multiple_of(ALIGN);
        while offset.checked_add(HEADER)? <= buf.len() {
            let header = &buf[offset..offset + HEADER];
            if header[0..4] == MAGIC {
                let first = first_of(header);
                // Older frames hold lower indices, and a segment holds fewer records than bytes: only a
                // candidate of this run is worth its CRC.
                if (at_least..at_least.saturating_add(SEGMENT_BYTES)).contains(&first)
                    && let Some(frame) = frame_at(buf, offset)
                {
                    return Some(frame.first);
                }
            }
            offset += ALIGN;
        }
        None
    }
}

/// Both segments of the journal's `contents` (a file of another size is cut into segments all the same).
pub fn read(contents: &[u8]) -> [Segment<'_>; 2] {
    let segment = |i: u64| {
        let at = (i * SEGMENT_BYTES).min(contents.len() as u64) as usize;
        let end = ((i + 1) * SEGMENT_BYTES).min(contents.len() as u64) as usize;
        let bytes = &contents[at..end];
        let mut frames = Vec::new();
        let mut stop = 0;
        while let Some(mut frame) = frame_at(bytes, stop) {
            stop += span(&frame);
            frame.offset += at;
            frames.push(frame);
        }
        Segment { bytes, frames, stop }
    };
    [segment(0), segment(1)]
}

/// The journal file, open for writing.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    /// The file's length.
    len: u64,
    /// Frames may be written: what the file held is in the tables ([`Journal::ready`]).
    ready: bool,
    /// The segment frames go into (0 or 1).
    active: u64,
    /// Where the next frame goes, from the active segment's start.
    tail: u64,
    /// A write failed at this offset of the file: its bytes must be overwritten by an end mark before
    /// anything else is written.
    torn: Option<u64>,
}

impl Journal {
    /// The journal of the log at `log`: its whole file name with `.journal` after it, so that no log's
    /// journal is another file's name.
    pub fn path_of(log: &Path) -> PathBuf {
        let mut name = log.as_os_str().to_os_string();
        name.push(".journal");
        PathBuf::from(name)
    }

    /// Opens the journal at `path` (made empty when there is none) and returns it with its contents. It
    /// takes no frame until [`Journal::ready`]: what it holds must be folded first.
    pub fn open(path: &Path) -> Result<(Journal, Vec<u8>), IfError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| unavailable(&format!("journal {}", path.display()), e))?;
        let len = file.metadata().map_err(|e| unavailable("journal", e))?.len();
        if len > 4 * JOURNAL_BYTES {
            return Err(corrupt(format_args!("journal {} is {len} bytes, not a journal", path.display())));
        }
        let mut contents = vec![0u8; len as usize];
        file.read_exact_at(&mut contents, 0).map_err(|e| unavailable("journal read", e))?;
        Ok((Journal { file, path: path.to_path_buf(), len, ready: false, active: 0, tail: 0, torn: None }, contents))
    }

    /// Once what the file held is in the tables: a file of another size than `JOURNAL_BYTES` (a new one)
    /// is made anew, zero-filled and flushed with its directory entry; frames go into the first segment.
    pub fn ready(&mut self) -> Result<(), IfError> {
        (self.active, self.tail) = (0, 0);
        if self.len != JOURNAL_BYTES {
            self.restart()?;
        }
        self.ready = true;
        Ok(())
    }

    /// Writes the zeros rather than setting the length: blocks a write must first allocate would make its
    /// flush a file-system commit as well. Blocks the file has are written over, not given back first.
    fn restart(&mut self) -> Result<(), IfError> {
        let fail = |e: std::io::Error| unavailable(&format!("journal {}", self.path.display()), e);
        let zeros = vec![0u8; 1 << 20];
        for at in (0..JOURNAL_BYTES).step_by(zeros.len()) {
            self.file.write_all_at(&zeros, at).map_err(fail)?;
        }
        self.file.set_len(JOURNAL_BYTES).map_err(fail)?;
        self.file.sync_all().map_err(fail)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
        }
        self.len = JOURNAL_BYTES;
        Ok(())
    }

    /// Bytes of frames in the active segment.
    pub fn used(&self) -> u64 {
        self.tail
    }

    /// Whether an encoded frame of `len` bytes (end mark included) fits in the active segment.
    pub fn fits(&self, len: usize) -> bool {
        self.ready && self.tail.saturating_add(len as u64) <= SEGMENT_BYTES
    }

    fn at(&self) -> u64 {
        self.active * SEGMENT_BYTES + self.tail
    }

    /// Writes an encoded frame after the others and flushes it: durable when this returns `Ok`. On error
    /// its bytes are overwritten by an end mark, now or before the next write, which fails until they
    /// are: nothing of it is read back, unless the process ends before it could be voided (see
    /// [`super::store`]).
    pub fn write(&mut self, frame: &[u8]) -> Result<(), IfError> {
        self.mend()?;
        if !self.fits(frame.len()) {
            return Err(unavailable("journal", "the frame does not fit"));
        }
        let written = self.file.write_all_at(frame, self.at()).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.tail += (frame.len() - END) as u64;
                Ok(())
            }
            Err(e) => {
                self.torn = Some(self.at());
                // Mended now if it can be; otherwise before the next write, which fails until it is.
                let _ = self.mend();
                Err(unavailable("journal write", e))
            }
        }
    }

    /// Overwrites what a failed write may have left with an end mark, durably, wherever the next frame
    /// goes meanwhile. Until it succeeds every write fails.
    fn mend(&mut self) -> Result<(), IfError> {
        if let Some(at) = self.torn {
            self.file
                .write_all_at(&[0u8; END], at)
                .and_then(|()| self.file.sync_data())
                .map_err(|e| unavailable("journal repair", e))?;
            self.torn = None;
        }
        Ok(())
    }

    /// Once the active segment's records are in the tables: the next frame goes to its start. Nothing is
    /// written; the store reads frames that were folded as below the log's head.
    pub fn reset(&mut self) {
        self.tail = 0;
    }

    /// The other segment becomes active, from its start; its records must be in the tables.
    pub fn switch(&mut self) {
        (self.active, self.tail) = (1 - self.active, 0);
    }
}

#[cfg(test)]
mod tests {
    use if_protocol::ErrorCode;

    use super::*;
    use crate::witness::record::{Entry, Kind};

    fn append(i: u64) -> Append {
        Append::record(Kind::Executed, Entry { wall_ms: i, why: "x".repeat(i as usize % 40), ..Entry::default() })
    }

    fn frame(first: u64, n: u64) -> Vec<u8> {
        let items: Vec<Append> = (first..first + n).map(append).collect();
        let refs: Vec<&Append> = items.iter().collect();
        encode(first, &[first as u8; 32], &refs, (n == 2).then_some("note")).expect("encode")
    }

    /// Frames laid one after another in the first segment as the journal writes them (each end mark
    /// overwritten by the next).
    fn laid(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut buf = vec![0u8; JOURNAL_BYTES as usize];
        let mut at = 0;
        for f in frames {
            buf[at..at + f.len()].copy_from_slice(f);
            at += f.len() - END;
        }
        buf
    }

    fn firsts(segment: &Segment<'_>) -> Vec<u64> {
        segment.frames.iter().map(|f| f.first).collect()
    }

    #[test]
    fn frames_read_back_in_order_each_on_its_own_blocks_until_the_end_mark() {
        let buf = laid(&[frame(0, 3), frame(3, 2), frame(5, 1)]);
        let [first, second] = read(&buf);
        assert_eq!(first.frames.iter().map(|f| (f.first, f.records)).collect::<Vec<_>>(), [(0, 3), (3, 2), (5, 1)]);
        assert!(second.frames.is_empty());
        assert_eq!(first.frames[1].prev, [3u8; 32]);
        let body = first.frames[1].body().expect("body");
        assert_eq!(body.appends.len(), 2);
        assert_eq!(body.appends[0].entry.wall_ms, 3);
        assert_eq!(body.checkpoint.as_deref(), Some("note"));
        assert!(first.frames.iter().all(|f| f.offset % ALIGN == 0), "no write touches an acknowledged block");
        assert_eq!((first.frames[1].offset, first.stop % ALIGN), (ALIGN, 0));
        assert!(buf[first.stop..first.stop + END].iter().all(|b| *b == 0), "stopped at the end mark");
        assert_eq!(first.intact_after(0), None);
    }

    #[test]
    fn the_second_segment_is_read_from_its_own_start() {
        let mut buf = laid(&[frame(0, 3)]);
        let later = frame(3, 2);
        let base = SEGMENT_BYTES as usize;
        buf[base..base + later.len()].copy_from_slice(&later);
        let [first, second] = read(&buf);
        assert_eq!((firsts(&first), firsts(&second)), (vec![0], vec![3]));
        assert_eq!(second.frames[0].offset, base, "offsets are in the file");
        assert_eq!(second.frames[0].body().expect("body").appends.len(), 2);
    }

    #[test]
    fn a_torn_frame_ends_its_segment_and_nothing_after_it_is_read() {
        let mut buf = laid(&[frame(0, 3), frame(3, 2), frame(5, 1)]);
        let at = read(&buf)[0].frames[1].offset;
        // The second frame's write was cut short: a byte of its payload never reached the disk.
        buf[at + HEADER + 3] ^= 0xff;
        let [segment, _] = read(&buf);
        assert_eq!(firsts(&segment), [0]);
        assert_eq!(segment.stop, at);
        // The frame after it is intact and of this run: a frame was lost in the middle.
        assert_eq!(segment.intact_after(3), Some(5));
        // Frames of an earlier run (lower indices) are not.
        assert_eq!(segment.intact_after(6), None);
    }

    #[test]
    fn older_frames_after_the_end_mark_are_not_read() {
        let mut buf = laid(&[frame(0, 3), frame(3, 2), frame(5, 1)]);
        // The segment written again: a new short frame at its start, with its end mark.
        let new = frame(6, 1);
        buf[..new.len()].copy_from_slice(&new);
        let [segment, _] = read(&buf);
        assert_eq!(firsts(&segment), [6]);
        assert_eq!(segment.intact_after(7), None, "the older frames are below the log's head");
    }

    #[test]
    fn hostile_bytes_never_panic_and_never_read_as_a_frame() {
        let good = frame(0, 3);
        let checked = HEADER + u32::from_le_bytes([good[4], good[5], good[6], good[7]]) as usize;
        for cut in 0..good.len() {
            let [segment, _] = read(&good[..cut]);
            assert_eq!(segment.frames.len(), usize::from(cut >= checked), "a frame cut at {cut} is read only whole");
        }
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read(&bad)[0].frames.is_empty(), "a length past the file");
        // An intact frame (its CRC made over the change) whose count is not what its payload holds.
        let mut count = good.clone();
        count[12..16].copy_from_slice(&7u32.to_le_bytes());
        let crc = CRC32C.checksum(&count[12..checked]);
        count[8..12].copy_from_slice(&crc.to_le_bytes());
        let [segment, _] = read(&count);
        assert_eq!(segment.frames.len(), 1);
        assert_eq!(segment.frames[0].body().expect_err("count").code(), ErrorCode::InvalidProof);
        assert!(read(&[0xffu8; 300])[0].frames.is_empty());
        assert_eq!(read(&[0u8; 3])[0].intact_after(0), None);
    }

    #[test]
    fn a_journal_is_named_after_the_whole_file_name_of_its_log() {
        let of = |log: &str| Journal::path_of(Path::new(log));
        assert_eq!(of("data/witness.redb"), Path::new("data/witness.redb.journal"));
        assert_ne!(of("w.redb"), of("w.db"), "two logs never share a journal");
        assert_ne!(of("witness.journal"), Path::new("witness.journal"), "nor is a journal its own log");
    }

    #[test]
    fn frames_go_into_the_active_segment_and_start_again_after_a_reset_or_a_switch() {
        let dir = tempfile::tempdir().expect("dir");
        let path = Journal::path_of(&dir.path().join("witness.redb"));
        let (mut journal, contents) = Journal::open(&path).expect("open");
        assert!(contents.is_empty(), "a new journal");
        assert!(!journal.fits(8), "no frame before it is ready");
        journal.ready().expect("ready");
        assert_eq!(std::fs::metadata(&path).expect("file").len(), JOURNAL_BYTES);
        journal.write(&frame(0, 3)).expect("write");
        journal.write(&frame(3, 2)).expect("write");
        let used = journal.used();
        journal.switch();
        journal.write(&frame(5, 1)).expect("write");
        let (mut journal, contents) = Journal::open(&path).expect("reopen");
        let [first, second] = read(&contents);
        assert_eq!((firsts(&first), firsts(&second)), (vec![0, 3], vec![5]));
        assert_eq!(first.stop as u64, used);
        journal.ready().expect("ready");
        journal.write(&frame(6, 1)).expect("write");
        journal.reset();
        journal.write(&frame(7, 1)).expect("write");
        let (_, contents) = Journal::open(&path).expect("reopen");
        assert_eq!(firsts(&read(&contents)[0]), [7]);
        assert!(!journal.fits(SEGMENT_BYTES as usize + 8));
        let e = journal.write(&vec![0u8; SEGMENT_BYTES as usize + 8]).expect_err("too large");
        assert_eq!(e.code(), ErrorCode::WitnessUnavailable);
    }
}
