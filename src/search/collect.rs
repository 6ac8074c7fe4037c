//! Collectors for search results: the newest-first page after a cursor (with exact totals), the
//! oldest matches of a bounded set (a trace), and the list of matching positions. All read only
//! the `timestamp` and `seq` fast fields.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{EnableScoring, Query};
use tantivy::{
    DocId, DocSet, Score, Searcher, SegmentOrdinal, SegmentReader, COLLECT_BLOCK_BUFFER_LEN,
};

use super::schema::{SEQ, TIMESTAMP};

/// Sort key of a hit: newest first means descending `(timestamp, seq)`.
pub type HitKey = (i64, u64);

/// Collects the `limit` greatest `(timestamp, seq)` keys strictly below `after` (the cursor),
/// and counts all matches (`total`) and the matches below the cursor (`remaining`).
pub struct TopByTime {
    pub limit: usize,
    pub after: Option<HitKey>,
}

pub struct TopFruit {
    pub total: u64,
    /// Matches after the cursor (all matches without one).
    pub remaining: u64,
    /// Descending.
    pub hits: Vec<HitKey>,
}

pub struct TopSegment {
    timestamps: Column<i64>,
    seqs: Column<u64>,
    limit: usize,
    after: Option<HitKey>,
    total: u64,
    remaining: u64,
    /// Min-heap of the best keys so far.
    heap: BinaryHeap<Reverse<HitKey>>,
}

impl Collector for TopByTime {
    type Fruit = TopFruit;
    type Child = TopSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<TopSegment> {
        Ok(TopSegment {
            timestamps: segment.fast_fields().i64(TIMESTAMP)?,
            seqs: segment.fast_fields().u64(SEQ)?,
            limit: self.limit,
            after: self.after,
            total: 0,
            remaining: 0,
            heap: BinaryHeap::with_capacity(self.limit.min(1024) + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<TopFruit>) -> tantivy::Result<TopFruit> {
        let mut total = 0;
        let mut remaining = 0;
        let mut hits = Vec::new();
        for fruit in fruits {
            total += fruit.total;
            remaining += fruit.remaining;
            hits.extend(fruit.hits);
        }
        hits.sort_unstable_by(|a, b| b.cmp(a));
        hits.truncate(self.limit);
        Ok(TopFruit {
            total,
            remaining,
            hits,
        })
    }
}

impl SegmentCollector for TopSegment {
    type Fruit = TopFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.total += 1;
        let Some(ts) = self.timestamps.first(doc) else {
            return;
        };
        let mut seq = None;
        if let Some((after_ts, after_seq)) = self.after {
            if ts > after_ts {
                return;
            }
            if ts == after_ts {
                let s = self.seqs.first(doc).unwrap_or(0);
                if s >= after_seq {
                    return;
                }
                seq = Some(s);
            }
        }
        self.remaining += 1;
        if self.limit == 0 {
            return;
        }
        if self.heap.len() >= self.limit {
            if let Some(Reverse((min_ts, _))) = self.heap.peek() {
                if ts < *min_ts {
                    return;
                }
            }
        }
        let seq = match seq {
            Some(s) => s,
            None => self.seqs.first(doc).unwrap_or(0),
        };
        let key = (ts, seq);
        if self.heap.len() < self.limit {
            self.heap.push(Reverse(key));
        } else if let Some(mut min) = self.heap.peek_mut() {
            if key > min.0 {
                *min = Reverse(key);
            }
        }
    }

    fn harvest(self) -> TopFruit {
        let mut hits: Vec<HitKey> = self.heap.into_iter().map(|Reverse(k)| k).collect();
        hits.sort_unstable_by(|a, b| b.cmp(a));
        TopFruit {
            total: self.total,
            remaining: self.remaining,
            hits,
        }
    }
}

/// Collects the `limit` smallest `(timestamp, seq)` keys, ascending, and counts all matches.
pub struct OldestByTime {
    pub limit: usize,
}

pub struct OldestFruit {
    pub total: u64,
    /// Ascending.
    pub hits: Vec<HitKey>,
}

pub struct OldestSegment {
    timestamps: Column<i64>,
    seqs: Column<u64>,
    limit: usize,
    total: u64,
    /// Max-heap of the smallest keys so far.
    heap: BinaryHeap<HitKey>,
}

impl Collector for OldestByTime {
    type Fruit = OldestFruit;
    type Child = OldestSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<OldestSegment> {
        Ok(OldestSegment {
            timestamps: segment.fast_fields().i64(TIMESTAMP)?,
            seqs: segment.fast_fields().u64(SEQ)?,
            limit: self.limit,
            total: 0,
            heap: BinaryHeap::with_capacity(self.limit.min(1024) + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<OldestFruit>) -> tantivy::Result<OldestFruit> {
        let mut total = 0;
        let mut hits = Vec::new();
        for fruit in fruits {
            total += fruit.total;
            hits.extend(fruit.hits);
        }
        hits.sort_unstable();
        hits.truncate(self.limit);
        Ok(OldestFruit { total, hits })
    }
}

impl SegmentCollector for OldestSegment {
    type Fruit = OldestFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.total += 1;
        let (Some(ts), Some(seq)) = (self.timestamps.first(doc), self.seqs.first(doc)) else {
            return;
        };
        let key = (ts, seq);
        if self.heap.len() < self.limit {
            self.heap.push(key);
        } else if let Some(mut max) = self.heap.peek_mut() {
            if key < *max {
                *max = key;
            }
        }
    }

    fn harvest(self) -> OldestFruit {
        OldestFruit {
            total: self.total,
            hits: self.heap.into_sorted_vec(),
        }
    }
}

/// Collects the `seq` of every match.
pub struct Positions;

pub struct PositionsSegment {
    seqs: Column<u64>,
    out: Vec<u64>,
}

impl Collector for Positions {
    type Fruit = Vec<u64>;
    type Child = PositionsSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<PositionsSegment> {
        Ok(PositionsSegment {
            seqs: segment.fast_fields().u64(SEQ)?,
            out: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut all: Vec<u64> = fruits.into_iter().flatten().collect();
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }
}

impl SegmentCollector for PositionsSegment {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(seq) = self.seqs.first(doc) {
            self.out.push(seq);
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.out
    }
}

/// Matches of `query`, counted until `cap`: `cap` means "at least that many". Stops as soon as
/// the cap is reached, so a broad query costs a few thousand matches, not millions.
pub fn count_up_to(searcher: &Searcher, query: &dyn Query, cap: u64) -> tantivy::Result<u64> {
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let mut counted = 0u64;
    for reader in searcher.segment_readers() {
        if cap == u64::MAX {
            counted += u64::from(weight.count(reader)?);
            continue;
        }
        let mut docs = weight.scorer(reader, 1.0)?;
        let alive = reader.alive_bitset();
        let mut buffer = [0; COLLECT_BLOCK_BUFFER_LEN];
        loop {
            let filled = docs.fill_buffer(&mut buffer);
            let matched = &buffer[..filled];
            counted += match alive {
                Some(alive) => matched.iter().filter(|&&d| alive.is_alive(d)).count(),
                None => filled,
            } as u64;
            if counted >= cap {
                return Ok(cap);
            }
            if filled < buffer.len() {
                break;
            }
        }
    }
    Ok(counted)
}
