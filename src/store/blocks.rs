//! The event block codec. Events are stored in blocks of consecutive positions, one block per
//! redb value, compressed together with zstd: telemetry events repeat their keys and most of
//! their values, so a block compresses several times better than events one by one.
//!
//! Uncompressed layout: `count: u32`, then per event `seq: u64`, `len: u32`, `len` bytes of
//! JSON (all integers little-endian). Events are in ascending position order.

use std::cell::RefCell;

use crate::error::StoreError;
use crate::model::Event;

/// Most events in one block.
pub const BLOCK_EVENTS: usize = 256;
/// Uncompressed bytes at which a block is closed early.
pub const BLOCK_BYTES: usize = 128 * 1024;
/// Level 1: on 500k realistic spans it left the store file the same size as level 3 (blocks of
/// similar JSON compress well either way) and cost a few percent less ingest CPU.
const ZSTD_LEVEL: i32 = 1;

/// Builds one block from already encoded events.
#[derive(Default)]
pub struct BlockBuilder {
    raw: Vec<u8>,
    count: u32,
    first_seq: Option<u64>,
}

impl BlockBuilder {
    /// Adds an event already in its stored form (a block being rewritten).
    pub fn push(&mut self, seq: u64, json: &[u8]) {
        let Ok(()) = self.append(seq, |raw| {
            raw.extend_from_slice(json);
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// Encodes `event` straight into the block: no buffer per event, which the store writer
    /// would allocate, grow and copy for every event it stores.
    pub fn push_event(&mut self, seq: u64, event: &Event) -> Result<(), StoreError> {
        self.append(seq, |raw| crate::store::encode_event_into(event, raw))
    }

    /// Appends `seq`, a length, and what `write` appends, with the length patched in after. On
    /// an error the block is left as it was.
    fn append<E>(
        &mut self,
        seq: u64,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.raw.is_empty() {
            self.raw.extend_from_slice(&0u32.to_le_bytes());
        }
        let start = self.raw.len();
        self.raw.extend_from_slice(&seq.to_le_bytes());
        let len_at = self.raw.len();
        self.raw.extend_from_slice(&0u32.to_le_bytes());
        if let Err(err) = write(&mut self.raw) {
            self.raw.truncate(start);
            return Err(err);
        }
        let len = (self.raw.len() - len_at - 4) as u32;
        self.raw[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        self.first_seq.get_or_insert(seq);
        self.count += 1;
        Ok(())
    }

    pub fn is_full(&self) -> bool {
        self.count as usize >= BLOCK_EVENTS || self.raw.len() >= BLOCK_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The block's key (its first position) and compressed bytes; the builder is left empty.
    pub fn finish(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(first) = self.first_seq.take() else {
            return Ok(None);
        };
        self.raw[..4].copy_from_slice(&self.count.to_le_bytes());
        let compressed = compress(&self.raw)?;
        self.raw.clear();
        self.count = 0;
        Ok(Some((first, compressed)))
    }
}

// One zstd context per thread, reused: a fresh context per block allocated (and the kernel
// zeroed) about a megabyte each time, which cost more than compressing.
thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Largest uncompressed block `decompress` sizes from the frame header (a block closes at
/// [`BLOCK_BYTES`] plus at most one event).
const MAX_RAW_BLOCK: u64 = 64 * 1024 * 1024;

fn zstd_error(e: std::io::Error) -> StoreError {
    StoreError::Codec(format!("zstd: {e}"))
}

fn compress(raw: &[u8]) -> Result<Vec<u8>, StoreError> {
    COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let compressor = match &mut *slot {
            Some(c) => c,
            empty => empty.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(zstd_error)?),
        };
        compressor.compress(raw).map_err(zstd_error)
    })
}

fn decompress(compressed: &[u8]) -> Result<Vec<u8>, StoreError> {
    let size = zstd::zstd_safe::get_frame_content_size(compressed)
        .ok()
        .flatten();
    let Some(size) = size.filter(|&n| n <= MAX_RAW_BLOCK) else {
        return zstd::stream::decode_all(compressed).map_err(zstd_error);
    };
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let decompressor = match &mut *slot {
            Some(d) => d,
            empty => empty.insert(zstd::bulk::Decompressor::new().map_err(zstd_error)?),
        };
        decompressor
            .decompress(compressed, size as usize)
            .map_err(zstd_error)
    })
}

/// A decompressed block: its events' positions and JSON, without decoding the events.
pub struct Block {
    raw: Vec<u8>,
    entries: Vec<(u64, std::ops::Range<usize>)>,
}

impl Block {
    pub fn decode(compressed: &[u8]) -> Result<Block, StoreError> {
        let corrupt = || StoreError::Codec("corrupt event block".into());
        let raw = decompress(compressed)?;
        let read_u32 = |at: usize| {
            raw.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let count = read_u32(0).ok_or_else(corrupt)? as usize;
        let mut entries = Vec::with_capacity(count);
        let mut at = 4;
        for _ in 0..count {
            let seq_bytes: [u8; 8] = raw
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(corrupt)?;
            let len = read_u32(at + 8).ok_or_else(corrupt)? as usize;
            let start = at + 12;
            if start + len > raw.len() {
                return Err(corrupt());
            }
            entries.push((u64::from_le_bytes(seq_bytes), start..start + len));
            at = start + len;
        }
        Ok(Block { raw, entries })
    }

    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|(seq, _)| *seq)
    }

    pub fn json(&self, seq: u64) -> Option<&[u8]> {
        let i = self.entries.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        Some(&self.raw[self.entries[i].1.clone()])
    }

    pub fn entries(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.entries
            .iter()
            .map(|(seq, range)| (*seq, &self.raw[range.clone()]))
    }

    pub fn event(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.json(seq).map(super::decode_event).transpose()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut builder = BlockBuilder::default();
        assert!(builder.finish().unwrap().is_none());
        builder.push(7, br#"{"a":1}"#);
        builder.push(9, br#"{"b":2}"#);
        let (first, bytes) = builder.finish().unwrap().unwrap();
        assert_eq!(first, 7);
        assert!(builder.is_empty());
        let block = Block::decode(&bytes).unwrap();
        assert_eq!(block.seqs().collect::<Vec<_>>(), vec![7, 9]);
        assert_eq!(block.json(9), Some(&br#"{"b":2}"#[..]));
        assert_eq!(block.json(8), None);
        assert!(Block::decode(b"garbage").is_err());
    }

    #[test]
    fn events_are_encoded_in_place() {
        let mut builder = BlockBuilder::default();
        let first = Event::new("app", "started");
        let second = Event::new("app", "stopped");
        builder.push_event(3, &first).unwrap();
        builder.push_event(4, &second).unwrap();
        let (key, bytes) = builder.finish().unwrap().unwrap();
        assert_eq!(key, 3);
        let block = Block::decode(&bytes).unwrap();
        assert_eq!(block.event(3).unwrap(), Some(first));
        assert_eq!(block.event(4).unwrap(), Some(second));
    }
}
