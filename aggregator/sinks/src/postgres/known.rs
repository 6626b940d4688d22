//! Which aggregate keys this process has already written, so that a batch's other rows — nearly all
//! of `rank_daily`'s and `crawl_hourly`'s, whose keys carry the day or the hour — can go in as a plain
//! `INSERT` instead of `INSERT … ON CONFLICT DO UPDATE`. `ON CONFLICT` inserts each new row
//! speculatively and confirms it (an extra WAL record per row); a plain insert of the same rows costs
//! about 30 % less (docs/BENCHMARKS.md, sessions 18 and 20).
//!
//! The answer only ever chooses between two correct statements:
//! - A key it calls known (written before, or a false positive) goes through `ON CONFLICT`, which is
//!   right whether the row exists or not.
//! - A key it calls new may still exist: written by another process (a rebalance moved the partition,
//!   a mixed producer fleet hashes a key to two partitions), before a restart, or forgotten (see
//!   below). Then the plain insert fails with a unique violation, the sink rolls back to a savepoint
//!   and merges the whole table's rows with `ON CONFLICT` as before (`postgres::upsert`). That costs
//!   the failed statement, so after a fall-back a table goes by `ON CONFLICT` alone for a while
//!   ([`KnownKeys::fell_back`]), doubling up to 64 flushes, while the filter learns the keys.
//!
//! The keys are kept as fingerprints in two generations of quotient filters (`qfilter`, ~1.2 bytes
//! a key, no false negatives, one or two cache lines per lookup): new keys go into the current one, and
//! when it is full the older one is cleared and takes its place, so memory stays fixed
//! ([`KnownKeys::with_memory`]) and the most recently written keys are remembered. A forgotten key that
//! comes back is only a fall-back, never a wrong row.
//!
//! Why quotient filters and not a Bloom filter (`fastbloom`): a Bloom filter reads or writes about
//! seven scattered bits per key at a 1 % false-positive rate, a cache miss each in a table of many
//! megabytes — ~0.6 µs per key, most of what the plain insert saves.

use std::hash::{BuildHasher, Hash};

use qfilter::{Filter, StableBuildHasher};

/// The aggregate tables the sink writes, as the filters tell their keys apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Table {
    ClickDaily = 0,
    RankDaily = 1,
    CrawlHourly = 2,
}

impl Table {
    /// The table's name in PostgreSQL (and in the metrics' `table` label).
    pub(super) fn name(self) -> &'static str {
        match self {
            Table::ClickDaily => "click_daily",
            Table::RankDaily => "rank_daily",
            Table::CrawlHourly => "crawl_hourly",
        }
    }
}

/// Where [`KnownKeys::seen`] finds a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    Current,
    Previous,
    Never,
}

/// Rate at which a key never written is called known (and merged by `ON CONFLICT`, as before).
const FALSE_POSITIVE_RATE: f64 = 0.01;

/// Flushes a table goes by `ON CONFLICT` alone after its `n`th fall-back in a row: 2^n, at most this.
const MAX_PAUSE_FLUSHES: u32 = 64;

/// Fingerprints of written aggregate keys, and each table's pause after a fall-back.
#[derive(Debug)]
pub(super) struct KnownKeys {
    current: Filter,
    previous: Filter,
    /// Per table: fall-backs in a row, and flushes left before plain inserts are tried again.
    fallbacks: [u32; 3],
    paused: [u32; 3],
    /// Fall-backs since start, all tables.
    total_fallbacks: u64,
}

impl KnownKeys {
    /// Two generations that together take at most `bytes` (each at least 64 keys).
    pub(super) fn with_memory(bytes: usize) -> Self {
        let generation = |capacity: u64| {
            Filter::new(capacity, FALSE_POSITIVE_RATE).expect("a capacity of 64 or more keys fits")
        };
        // qfilter sizes a filter in powers of two (~1.2 bytes a key at this rate): start from a byte a
        // key, which never fits, and halve until both generations do.
        let mut capacity = (bytes as u64 / 2).max(64);
        while capacity > 64 && generation(capacity).memory_usage() * 2 > bytes {
            capacity /= 2;
        }
        KnownKeys {
            current: generation(capacity),
            previous: generation(capacity),
            fallbacks: [0; 3],
            paused: [0; 3],
            total_fallbacks: 0,
        }
    }

    /// Plain inserts that met an existing key since start (all tables).
    pub(super) fn fallbacks(&self) -> u64 {
        self.total_fallbacks
    }

    /// `key` of `table` as the filters hold it: computed once per row, for [`KnownKeys::seen`] and
    /// then [`KnownKeys::remember`]. A fixed hash (qfilter's), so both generations agree.
    pub(super) fn fingerprint(table: Table, key: &impl Hash) -> u64 {
        StableBuildHasher.hash_one((table, key))
    }

    /// Where a key's fingerprint is: written recently, written earlier, or (as far as this process
    /// knows) never. A key never written can be called written (a false positive), never the reverse.
    pub(super) fn seen(&self, fingerprint: u64) -> Seen {
        if self.current.contains_fingerprint(fingerprint) {
            Seen::Current
        } else if self.previous.contains_fingerprint(fingerprint) {
            Seen::Previous
        } else {
            Seen::Never
        }
    }

    /// Remembers a key that is now in its table (written by a transaction that may still roll back:
    /// then it is a false positive, which only costs the plain insert). A key already in the current
    /// generation ([`Seen::Current`]) need not be remembered again.
    pub(super) fn remember(&mut self, fingerprint: u64) {
        if self.current.insert_fingerprint(false, fingerprint).is_err() {
            // Full: the older generation is forgotten and takes the new keys.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
            // Cannot fail: the generation is empty.
            let _ = self.current.insert_fingerprint(false, fingerprint);
        }
    }

    /// Whether `table`'s next batch may try a plain insert of its new rows; counts down a pause.
    pub(super) fn may_insert(&mut self, table: Table) -> bool {
        let paused = &mut self.paused[table as usize];
        if *paused > 0 {
            *paused -= 1;
            return false;
        }
        true
    }

    /// A plain insert of `table`'s new rows went through.
    pub(super) fn inserted(&mut self, table: Table) {
        self.fallbacks[table as usize] = 0;
    }

    /// A plain insert of `table`'s rows met an existing key: pause plain inserts for 2^n flushes
    /// (the `n`th fall-back in a row), at most [`MAX_PAUSE_FLUSHES`].
    pub(super) fn fell_back(&mut self, table: Table) {
        self.total_fallbacks += 1;
        let n = &mut self.fallbacks[table as usize];
        *n = n.saturating_add(1);
        self.paused[table as usize] = 1u32
            .checked_shl(*n)
            .unwrap_or(u32::MAX)
            .min(MAX_PAUSE_FLUSHES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl KnownKeys {
        /// Bytes the two generations hold (fixed at construction).
        fn memory_usage(&self) -> usize {
            self.current.memory_usage() + self.previous.memory_usage()
        }

        /// Keys one generation holds before it is full.
        fn generation_capacity(&self) -> u64 {
            self.current.capacity()
        }

        fn contains(&self, table: Table, key: &impl Hash) -> bool {
            self.seen(KnownKeys::fingerprint(table, key)) != Seen::Never
        }

        fn insert(&mut self, table: Table, key: &impl Hash) {
            self.remember(KnownKeys::fingerprint(table, key));
        }
    }

    #[test]
    fn written_keys_are_known_per_table_and_others_mostly_not() {
        let mut known = KnownKeys::with_memory(1 << 20);
        for i in 0..10_000u32 {
            known.insert(Table::RankDaily, &("tenant", i));
        }
        for i in 0..10_000u32 {
            assert!(known.contains(Table::RankDaily, &("tenant", i)), "{i}");
        }
        // The same keys of another table, and other keys of this one: false positives only, near the
        // configured rate (1 %): at most 3 % of 10,000 here.
        let other_table = (0..10_000u32)
            .filter(|i| known.contains(Table::CrawlHourly, &("tenant", *i)))
            .count();
        let other_keys = (10_000..20_000u32)
            .filter(|i| known.contains(Table::RankDaily, &("tenant", *i)))
            .count();
        assert!(other_table < 300, "{other_table}");
        assert!(other_keys < 300, "{other_keys}");
    }

    #[test]
    fn memory_stays_within_the_share_and_the_oldest_generation_is_forgotten() {
        let bytes = 64 * 1024;
        let mut known = KnownKeys::with_memory(bytes);
        assert!(known.memory_usage() <= bytes, "{}", known.memory_usage());
        let capacity = known.generation_capacity();
        assert!(capacity >= 64);
        // A share at least half used: a filter twice the size would not have fitted.
        assert!(known.memory_usage() * 2 > bytes, "{}", known.memory_usage());
        let used = known.memory_usage();
        // Three generations' worth of keys. A generation is full after `capacity` keys it did not
        // already seem to hold, so the last `capacity` keys are always remembered and the first
        // generation's keys (cleared at the second rotation) are not.
        let total = 3 * capacity;
        for i in 0..total {
            known.insert(Table::ClickDaily, &i);
        }
        assert_eq!(known.memory_usage(), used, "memory does not grow");
        for i in total - capacity..total {
            assert!(known.contains(Table::ClickDaily, &i), "{i} of {total}");
        }
        let remembered = (0..capacity / 2)
            .filter(|i| known.contains(Table::ClickDaily, i))
            .count() as u64;
        assert!(
            remembered < capacity / 20,
            "{remembered} of {}",
            capacity / 2
        );
    }

    #[test]
    fn fall_backs_pause_a_table_for_doubling_flush_counts() {
        let mut known = KnownKeys::with_memory(1 << 16);
        let pause = |known: &mut KnownKeys, table| {
            let mut flushes = 0;
            while !known.may_insert(table) {
                flushes += 1;
            }
            flushes
        };
        assert_eq!(pause(&mut known, Table::RankDaily), 0);
        let mut pauses = Vec::new();
        for _ in 0..8 {
            known.fell_back(Table::RankDaily);
            pauses.push(pause(&mut known, Table::RankDaily));
        }
        assert_eq!(pauses, [2, 4, 8, 16, 32, 64, 64, 64]);
        // Another table is not paused; a success starts the doubling again.
        assert_eq!(pause(&mut known, Table::CrawlHourly), 0);
        known.inserted(Table::RankDaily);
        known.fell_back(Table::RankDaily);
        assert_eq!(pause(&mut known, Table::RankDaily), 2);
    }
}
