//! An append-mostly log kept in fixed-size chunks, for the riders' fix, passage and matcher logs.
//! A `Vec` doubles its buffer and copies it, and the logs of a field that reports at one pace
//! all double in the same tick (5,000 riders at 1 Hz: a 1.5 s tick at 2,048 fixes); here an
//! append never moves what is stored, and each log's chunks start at its own offset (`skew`), so
//! the riders' fresh chunks and their first-touch page faults are spread over many ticks. Owns
//! storage, indexing, appending, inserting and truncating; searching is the caller's, by index.

use std::ops::{Index, IndexMut};

/// Runs of neighbouring logs that open their chunks together (see [`ChunkedLog::new`]). Measured
/// with 5,000 riders at 1 Hz (`race_tick_profile`, bench/TICK.md): one run (every rider's chunks
/// in the same tick) gave a 7–40 ms tick at every chunk boundary; runs of about 20 riders (one
/// per item of the chunk) cost 0.2–0.3 ms on the median tick, with riders' chunks scattered in
/// memory; 64 runs kept one run's median with the slowest tick at 2–7 ms.
pub const PHASE_GROUPS: usize = 64;

/// A sequence stored as sealed chunks and one open chunk, where appends go. The first chunk holds
/// `CHUNK - skew` items, every later one `CHUNK`.
///
/// `repr(C)` keeps the open chunk first: an append reads only it, as it would a `Vec`'s header.
#[derive(Debug)]
#[repr(C)]
pub struct ChunkedLog<T, const CHUNK: usize> {
    /// The newest items, at most its capacity (a full open chunk is sealed by the next append).
    /// Its capacity is 0 until the first append, and then exactly that of its chunk number,
    /// so it never regrows.
    open: Vec<T>,
    /// Sealed chunks, oldest first, each exactly as long as its capacity: never moved again by an
    /// append.
    full: Vec<Box<[T]>>,
    /// How much shorter the first chunk is than `CHUNK` (below `CHUNK`): logs that grow at the
    /// same pace but with different skews open their chunks in different ticks.
    skew: usize,
}

impl<T, const CHUNK: usize> ChunkedLog<T, CHUNK> {
    /// An empty log (allocates nothing) for member `member` of a group of `members` logs that
    /// grow at the same pace. The members form [`PHASE_GROUPS`] runs of neighbours; each run
    /// opens its chunks `CHUNK / PHASE_GROUPS` items after the run before it, so the group's
    /// chunk openings (an allocation, and a page fault at the first write) are spread over every
    /// `CHUNK` items, and a run's chunks, allocated together, lie together in memory. `shift`
    /// items more move the whole group's openings, away from those of another log kind.
    pub const fn new(member: usize, members: usize, shift: usize) -> Self {
        const { assert!(CHUNK > 0) };
        let skew = if member < members {
            // `member < members` keeps the run below PHASE_GROUPS and the skew below CHUNK; the
            // u128 products cannot overflow.
            let run = member as u128 * PHASE_GROUPS as u128 / members as u128;
            (run * CHUNK as u128 / PHASE_GROUPS as u128) as usize
        } else {
            0
        };
        let skew = (skew + shift % CHUNK) % CHUNK;
        ChunkedLog {
            open: Vec::new(),
            full: Vec::new(),
            skew,
        }
    }

    /// Number of items.
    #[inline]
    pub fn len(&self) -> usize {
        self.sealed() + self.open.len()
    }

    /// Items in the sealed chunks: where the open chunk starts.
    #[inline]
    fn sealed(&self) -> usize {
        self.start(self.full.len())
    }

    /// Capacity of chunk number `k`.
    #[inline]
    fn capacity(&self, k: usize) -> usize {
        if k == 0 { CHUNK - self.skew } else { CHUNK }
    }

    /// Index of the first item of chunk number `k`.
    #[inline]
    fn start(&self, k: usize) -> usize {
        if k == 0 { 0 } else { k * CHUNK - self.skew }
    }

    /// The chunk that item `i` lies in (the open chunk is number `full.len()`), and its place
    /// there.
    #[inline]
    fn locate(&self, i: usize) -> (usize, usize) {
        let k = (i + self.skew) / CHUNK;
        (k, i - self.start(k))
    }

    /// The last item.
    #[inline]
    pub fn last(&self) -> Option<&T> {
        self.open
            .last()
            .or_else(|| self.full.last().and_then(|c| c.last()))
    }

    /// Appends an item. Costs a `Vec::push`, plus one allocation of a chunk every `CHUNK`
    /// appends; nothing stored is copied.
    #[inline]
    pub fn push(&mut self, value: T) {
        if self.open.len() == self.open.capacity() {
            self.make_room();
        }
        self.open.push(value);
    }

    /// Seals a full open chunk, or gives an unallocated one its capacity.
    #[cold]
    fn make_room(&mut self) {
        let k = self.full.len();
        if self.open.len() == self.capacity(k) {
            let sealed = std::mem::replace(&mut self.open, Vec::with_capacity(CHUNK));
            // `with_capacity` allocates exactly what it is asked for, so this keeps the buffer
            // (no copy).
            self.full.push(sealed.into_boxed_slice());
        } else {
            // Never allocated (the log is empty): `with_capacity` allocates exactly, which the
            // check in `push` relies on.
            self.open = Vec::with_capacity(self.capacity(k));
        }
    }

    /// The chunk numbered `k` (the open chunk is number `full.len()`).
    fn chunk_mut(&mut self, k: usize) -> &mut [T] {
        match self.full.get_mut(k) {
            Some(chunk) => chunk,
            None => &mut self.open,
        }
    }

    /// Keeps the first `len` items (as `Vec::truncate`).
    pub fn truncate(&mut self, len: usize) {
        let sealed = self.sealed();
        if len >= sealed {
            self.open.truncate(len - sealed);
            return;
        }
        // The chunk that `len` falls in becomes the open chunk; the ones after it go.
        let (k, keep) = self.locate(len);
        self.full.truncate(k + 1);
        if let Some(chunk) = self.full.pop() {
            // A full boxed slice turns back into a `Vec` of its capacity, with no copy.
            let mut open = chunk.into_vec();
            open.truncate(keep);
            self.open = open;
        }
    }

    /// Every item, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.full
            .iter()
            .flat_map(|chunk| chunk.iter())
            .chain(self.open.iter())
    }
}

impl<T: Copy, const CHUNK: usize> ChunkedLog<T, CHUNK> {
    /// Inserts an item at `at`, shifting the later ones up by one (as `Vec::insert`; a late fix
    /// lands near the end, so few chunks are touched). Panics if `at > len`.
    pub fn insert(&mut self, at: usize, value: T) {
        assert!(at <= self.len(), "insert at {at} beyond {}", self.len());
        self.push(value);
        // Rotate `at..len` right by one, chunk by chunk from the last: each chunk's part turns
        // right, then its first item (the one rotated in from its end) trades places with the
        // previous chunk's last item, which carries the new item one chunk towards `at`.
        let (first, at_in_first) = self.locate(at);
        let (last, _) = self.locate(self.len() - 1);
        for k in (first..=last).rev() {
            let from = if k == first { at_in_first } else { 0 };
            let chunk = self.chunk_mut(k);
            chunk[from..].rotate_right(1);
            if k > first {
                let carried = chunk[0];
                let previous = self.chunk_mut(k - 1);
                let end = previous.len() - 1;
                let item = std::mem::replace(&mut previous[end], carried);
                self.chunk_mut(k)[0] = item;
            }
        }
    }
}

impl<T: Clone, const CHUNK: usize> Clone for ChunkedLog<T, CHUNK> {
    /// A copy whose open chunk has the full capacity (a derived clone would size it to its
    /// length, and the copy's next append would reallocate it).
    fn clone(&self) -> Self {
        let open = if self.open.capacity() == 0 {
            Vec::new()
        } else {
            let mut open = Vec::with_capacity(self.capacity(self.full.len()));
            open.extend_from_slice(&self.open);
            open
        };
        ChunkedLog {
            open,
            full: self.full.clone(),
            skew: self.skew,
        }
    }
}

impl<T, const CHUNK: usize> Index<usize> for ChunkedLog<T, CHUNK> {
    type Output = T;

    /// The item at `i`; panics beyond the end, as a slice does.
    #[inline]
    fn index(&self, i: usize) -> &T {
        let sealed = self.sealed();
        if i < sealed {
            let (k, at) = self.locate(i);
            &self.full[k][at]
        } else {
            &self.open[i - sealed]
        }
    }
}

impl<T, const CHUNK: usize> IndexMut<usize> for ChunkedLog<T, CHUNK> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        let sealed = self.sealed();
        if i < sealed {
            let (k, at) = self.locate(i);
            &mut self.full[k][at]
        } else {
            &mut self.open[i - sealed]
        }
    }
}

/// The first index in `lo..hi` at which `holds` is false, where it holds for a prefix of the
/// range (`slice::partition_point` over indices, so that it searches any indexable log).
#[inline]
pub fn first_false(mut lo: usize, mut hi: usize, holds: impl Fn(usize) -> bool) -> usize {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::{ChunkedLog, first_false};
    use proptest::prelude::*;

    /// What a test does to both the log and a `Vec` model of it.
    #[derive(Debug, Clone)]
    enum Step {
        Push(u32),
        Insert(usize, u32),
        Truncate(usize),
        Clone,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => any::<u32>().prop_map(Step::Push),
            2 => (0usize..64, any::<u32>()).prop_map(|(at, v)| Step::Insert(at, v)),
            1 => (0usize..64).prop_map(Step::Truncate),
            1 => Just(Step::Clone),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_vec(member in 0usize..8, steps in proptest::collection::vec(step(), 0..200)) {
            let mut log: ChunkedLog<u32, 4> = ChunkedLog::new(member, 8, member / 3);
            let mut model: Vec<u32> = Vec::new();
            for s in steps {
                match s {
                    Step::Push(v) => { log.push(v); model.push(v); }
                    Step::Insert(at, v) => {
                        let at = at.min(model.len());
                        log.insert(at, v);
                        model.insert(at, v);
                    }
                    Step::Truncate(n) => {
                        let n = model.len().saturating_sub(n);
                        log.truncate(n);
                        model.truncate(n);
                    }
                    Step::Clone => log = log.clone(),
                }
                prop_assert_eq!(log.len(), model.len());
                prop_assert_eq!(log.last(), model.last());
                prop_assert_eq!(log.iter().copied().collect::<Vec<_>>(), model.clone());
                for (i, v) in model.iter().enumerate() {
                    prop_assert_eq!(&log[i], v);
                }
            }
        }

        #[test]
        fn first_false_agrees_with_partition_point(
            mut v in proptest::collection::vec(0i64..1000, 0..300),
            x in -5i64..1005,
        ) {
            v.sort_unstable();
            prop_assert_eq!(first_false(0, v.len(), |i| v[i] < x), v.partition_point(|&e| e < x));
            prop_assert_eq!(first_false(0, v.len(), |i| v[i] <= x), v.partition_point(|&e| e <= x));
        }
    }

    #[test]
    fn appending_never_moves_a_stored_item() {
        let mut log: ChunkedLog<u64, 8> = ChunkedLog::new(3, 8, 0);
        log.push(0);
        let first: *const u64 = &log[0];
        for v in 1..1000 {
            log.push(v);
        }
        assert!(std::ptr::eq(first, &log[0]));
        assert_eq!(log[999], 999);
    }

    #[test]
    fn a_clone_appends_without_regrowing_its_open_chunk() {
        let mut log: ChunkedLog<u64, 8> = ChunkedLog::new(0, 1, 0);
        for v in 0..11 {
            log.push(v);
        }
        let mut copy = log.clone();
        let before: *const u64 = &copy[8];
        copy.push(11);
        assert!(std::ptr::eq(before, &copy[8]));
    }

    #[test]
    fn a_group_opens_its_chunks_spread_over_the_chunk_length() {
        // The length at which each member of a group of 16 opens its second chunk (its first
        // allocation after the first): neighbours in pairs, the pairs at all 8 lengths.
        let opened_at = |member: usize, shift: usize| {
            let mut log: ChunkedLog<u32, 8> = ChunkedLog::new(member, 16, shift);
            (1..=20usize).find(|_| {
                log.push(0);
                log.full.len() == 1
            })
        };
        // 16 members in 64 runs: member m is in run 4m, so its first chunk holds 8 - m / 2.
        let lengths: Vec<_> = (0..16).map(|m| opened_at(m, 0)).collect();
        let expected: Vec<_> = (0..16).map(|m| Some(9 - m / 2)).collect();
        assert_eq!(lengths, expected);
        // A shift of 1 opens every member's chunk one item earlier (the last pair wraps round).
        let shifted: Vec<_> = (0..16).map(|m| opened_at(m, 1)).collect();
        let expected: Vec<_> = (0..16).map(|m| Some(9 - (m / 2 + 1) % 8)).collect();
        assert_eq!(shifted, expected);
    }
}
