//! The idempotency window: which `(tenant_id, event_id)` keys one partition has already accepted.
//! Producers are at-least-once, so a retried event can arrive again at a later offset; this window
//! drops such a re-delivery before it touches an aggregate.
//!
//! Time here is the Kafka record timestamp (the producer's send time, or the broker's append time when
//! the topic uses `LogAppendTime`) — part of the log, so a replay of the partition makes exactly the same
//! decisions. Per partition we keep a watermark (the newest record timestamp seen); a key accepted while
//! the watermark was `w` is remembered until the watermark passes `w + window`.
//!
//! One producer's clock must not expire the window for the others, so a record's *dedup time* is its
//! timestamp capped at the ingest clock plus a tolerance: `min(record ts, now + tolerance)`, tolerance =
//! min(60 s, window / 10) ([`DedupWindow::set_clock`]). A record stamped a year ahead moves the watermark
//! no further than a sane record read at the same moment could; a record stamped behind never moves it.
//! Records within the tolerance of the clock — all of them when producers' clocks are sane — decide by
//! their record timestamp alone, the same on every replay (the clock only moves forward); only a record
//! stamped beyond it depends on when it is read (docs/guarantees.md, "Producer clocks"). Keys are 128-bit xxh3
//! hashes (no false duplicates in practice: ~10⁻²³ collision odds at 10⁸ live keys). The window's
//! contents are persisted with each flush, in the same PostgreSQL transaction as the offsets, and
//! reloaded on assignment — so the window survives restarts and rebalances and always matches the
//! stored offset exactly.
//!
//! **Memory.** The window holds `dedup_window_secs` of keys: tens of millions at 100k events/s. Each key
//! lives once, in one hash table, beside its expiry (24 bytes a slot). An expired key is forgotten at
//! once — a lookup treats it as absent — and its slot is reclaimed by a sweep of the table once a
//! quarter of the slots have expired (one sequential pass, paid for by the keys it frees). How many
//! keys expire when is kept as run lengths of equal expiries, so no second copy of the keys is needed.

use std::collections::VecDeque;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

/// A 128-bit hash of `(tenant_id, event_id)`.
pub type EventKey = u128;

/// Bytes per persisted entry: 16 (key) + 8 (expiry, ms).
pub const ENTRY_BYTES: usize = 24;

/// The most a record's dedup time may lead the ingest clock: min(this, window / 10).
pub const MAX_CLOCK_LEAD_MS: i64 = 60_000;

/// Hashes an event's idempotency key. `0xFF` never occurs in UTF-8, so it separates the parts
/// unambiguously.
///
/// Keys are persisted (`sluice_dedup`), so this function must never change its output. Short keys (all
/// real ones) are hashed in one shot from a stack buffer — the streaming hasher's set-up cost was most
/// of a key's time — and long ones by streaming the same bytes, which gives the same hash.
pub fn event_key(tenant_id: &str, event_id: &str) -> EventKey {
    const STACK: usize = 256;
    let (t, e) = (tenant_id.as_bytes(), event_id.as_bytes());
    let len = t.len() + 1 + e.len();
    if len <= STACK {
        let mut buf = [0u8; STACK];
        buf[..t.len()].copy_from_slice(t);
        buf[t.len()] = 0xFF;
        buf[t.len() + 1..len].copy_from_slice(e);
        return xxhash_rust::xxh3::xxh3_128(&buf[..len]);
    }
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(t);
    h.update(&[0xFF]);
    h.update(e);
    h.digest128()
}

/// A table slot: a key (as two words: a `u128` would align the slot to 32 bytes) and its expiry.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: [u64; 2],
    expiry: i64,
}

fn split(key: EventKey) -> [u64; 2] {
    [key as u64, (key >> 64) as u64]
}

/// The slot's bucket hash: the key is already a uniform hash, so its low word serves as is.
fn slot_hash(slot: &Slot) -> u64 {
    slot.key[0]
}

/// Sweep the table once at least this share (1/N) of its slots hold expired keys.
const SWEEP_AT_ONE_IN: usize = 4;
/// ... and at least this many: small windows are not worth a pass.
const SWEEP_MIN_EXPIRED: usize = 1024;

/// One partition's window.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window_ms: i64,
    watermark_ms: i64,
    /// No record moves the watermark past this (ingest clock + tolerance); `i64::MAX` until a clock is set.
    horizon_ms: i64,
    /// Every key in the table with its expiry (watermark at acceptance + window). A key is remembered
    /// while its expiry is not behind the watermark; expired slots wait for the next sweep.
    keys: HashTable<Slot>,
    /// `(expiry, how many slots got it)`, in non-decreasing expiry order (the watermark only moves
    /// forward): tells how many slots have expired without a look at the table.
    runs: VecDeque<(i64, u64)>,
    /// Slots whose expiry is behind the watermark (their runs have been counted off).
    expired: usize,
}

impl DedupWindow {
    /// An empty window starting at `watermark_ms`.
    pub fn new(window_ms: i64, watermark_ms: i64) -> Self {
        DedupWindow {
            window_ms,
            watermark_ms,
            horizon_ms: i64::MAX,
            keys: HashTable::new(),
            runs: VecDeque::new(),
            expired: 0,
        }
    }

    /// Rebuilds a window from persisted entries (in the order they were accepted).
    pub fn restore(
        window_ms: i64,
        watermark_ms: i64,
        entries: impl IntoIterator<Item = (EventKey, i64)>,
    ) -> Self {
        let mut w = DedupWindow::new(window_ms, watermark_ms);
        let mut expiries = Vec::new();
        for (key, expiry) in entries {
            if expiry < watermark_ms {
                continue;
            }
            let key = split(key);
            if let Entry::Vacant(slot) = w.keys.entry(key[0], |s| s.key == key, slot_hash) {
                slot.insert(Slot { key, expiry });
                expiries.push(expiry);
            }
        }
        // Entries come in acceptance order (`ORDER BY end_offset`), so this sort only checks that they
        // are sorted (linear on sorted input); hand-made input out of order is counted right too.
        expiries.sort_unstable();
        for expiry in expiries {
            w.count_in(expiry);
        }
        w
    }

    /// The tolerance a record's timestamp may lead the ingest clock by: min(60 s, window / 10).
    pub fn clock_tolerance_ms(&self) -> i64 {
        (self.window_ms / 10).min(MAX_CLOCK_LEAD_MS)
    }

    /// Sets the ingest clock (Unix ms) for the records observed next: their dedup time is capped at
    /// `now_ms + tolerance`. Called with the wall clock once per poll-loop turn.
    pub fn set_clock(&mut self, now_ms: i64) {
        self.horizon_ms = now_ms.saturating_add(self.clock_tolerance_ms());
    }

    pub fn watermark_ms(&self) -> i64 {
        self.watermark_ms
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.keys.len() - self.expired
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the window holds: the table's allocation (slots and control bytes) and the expiry runs.
    pub fn heap_bytes(&self) -> usize {
        self.keys.allocation_size() + self.runs.capacity() * size_of::<(i64, u64)>()
    }

    /// Counts a slot in under its expiry. Expiries come in non-decreasing order: the watermark only
    /// moves forward, and `restore` sorts its entries' expiries.
    fn count_in(&mut self, expiry: i64) {
        match self.runs.back_mut() {
            Some((last, n)) if *last == expiry => *n += 1,
            last => {
                debug_assert!(last.is_none_or(|(last, _)| *last < expiry));
                self.runs.push_back((expiry, 1));
            }
        }
    }

    /// Counts off the runs the watermark has passed, and sweeps the table once enough of it has expired.
    fn expire(&mut self) {
        while let Some(&(expiry, n)) = self.runs.front() {
            if expiry >= self.watermark_ms {
                break;
            }
            self.runs.pop_front();
            self.expired += n as usize;
        }
        if self.expired >= SWEEP_MIN_EXPIRED && self.expired * SWEEP_AT_ONE_IN >= self.keys.len() {
            let watermark = self.watermark_ms;
            self.keys.retain(|s| s.expiry >= watermark);
            self.expired = 0;
            // The runs left all lie at or after the watermark: exactly the slots the sweep kept (a slot
            // re-accepted after expiring was counted again under its new expiry).
        }
    }

    /// Sees one accepted-by-validation record. Returns `Some(expiry)` when the key is new (the caller
    /// persists `(key, expiry)`), `None` when it is a re-delivery inside the window. The record's dedup
    /// time is `min(record_ts_ms, clock + tolerance)`; it moves the watermark only forward.
    pub fn observe(&mut self, key: EventKey, record_ts_ms: i64) -> Option<i64> {
        let dedup_ts = record_ts_ms.min(self.horizon_ms);
        if dedup_ts > self.watermark_ms {
            self.watermark_ms = dedup_ts;
            self.expire();
        }
        let expiry = self.watermark_ms + self.window_ms;
        // One probe finds the key or the slot for it.
        let key = split(key);
        match self.keys.entry(key[0], |s| s.key == key, slot_hash) {
            Entry::Occupied(mut slot) => {
                let slot = slot.get_mut();
                if slot.expiry >= self.watermark_ms {
                    return None;
                }
                // Expired, not yet swept: the key is new again. Its old run was counted off when the
                // watermark passed it, so it leaves the expired count here.
                slot.expiry = expiry;
                self.expired -= 1;
            }
            Entry::Vacant(slot) => {
                slot.insert(Slot { key, expiry });
            }
        }
        self.count_in(expiry);
        Some(expiry)
    }
}

/// Packs entries as 24-byte little-endian records for the `sluice_dedup.ids` column.
pub fn encode_entries(entries: &[(EventKey, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for (key, expiry) in entries {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&expiry.to_le_bytes());
    }
    out
}

/// Unpacks what [`encode_entries`] wrote (a trailing partial record is ignored).
pub fn decode_entries(bytes: &[u8]) -> impl Iterator<Item = (EventKey, i64)> + '_ {
    bytes.chunks_exact(ENTRY_BYTES).map(|c| {
        let mut key = [0u8; 16];
        key.copy_from_slice(&c[..16]);
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&c[16..]);
        (u128::from_le_bytes(key), i64::from_le_bytes(expiry))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_and_streaming_keys_agree() {
        // The stored format: xxh3-128 of tenant ‖ 0xFF ‖ event id, as a streaming hasher computes it.
        fn streamed(t: &str, e: &str) -> EventKey {
            let mut h = xxhash_rust::xxh3::Xxh3Default::new();
            h.update(t.as_bytes());
            h.update(&[0xFF]);
            h.update(e.as_bytes());
            h.digest128()
        }
        let long_id = "x".repeat(300);
        for (t, e) in [
            ("t", "e"),
            ("tenant-00042", "load-20261124103004-g1-123456"),
            ("", ""),
            ("t", long_id.as_str()),
            ("t", &long_id[..254]),
            ("t", &long_id[..255]),
        ] {
            assert_eq!(event_key(t, e), streamed(t, e), "{t:?} / {} bytes", e.len());
        }
    }

    #[test]
    fn a_slot_keeps_the_whole_key_and_its_expiry_in_24_bytes() {
        assert_eq!(size_of::<Slot>(), 24);
        for key in [
            0u128,
            1,
            u128::MAX,
            1 << 64,
            (1 << 64) - 1,
            event_key("t", "e"),
        ] {
            let [lo, hi] = split(key);
            assert_eq!(u128::from(lo) | (u128::from(hi) << 64), key);
        }
        // Keys equal in their low word (the bucket hash) but not in the high one stay apart.
        let mut w = DedupWindow::new(1_000, 0);
        assert_eq!(w.observe(5, 0), Some(1_000));
        assert_eq!(w.observe(5 | (1 << 64), 0), Some(1_000));
        assert_eq!(w.observe(5, 1), None);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn keys_separate_tenant_and_id() {
        assert_ne!(event_key("ab", "c"), event_key("a", "bc"));
        assert_eq!(event_key("t", "e"), event_key("t", "e"));
    }

    #[test]
    fn redelivery_inside_the_window_is_dropped_and_outside_is_not() {
        let mut w = DedupWindow::new(1_000, 0);
        let (a, b) = (event_key("t", "a"), event_key("t", "b"));
        assert_eq!(w.observe(a, 100), Some(1_100));
        assert_eq!(w.observe(a, 500), None, "re-sent 400 ms later");
        assert_eq!(w.observe(b, 1_100), Some(2_100));
        assert_eq!(
            w.observe(a, 1_100),
            None,
            "watermark exactly at expiry: still remembered"
        );
        assert_eq!(w.observe(b, 1_101), None);
        // The watermark passes a's expiry (1 100): a is forgotten and counts as new again.
        assert_eq!(w.observe(a, 1_101), Some(2_101));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn late_records_do_not_move_the_watermark_back() {
        let mut w = DedupWindow::new(1_000, 0);
        let a = event_key("t", "a");
        assert_eq!(w.observe(event_key("t", "x"), 5_000), Some(6_000));
        // A record stamped earlier than the watermark is remembered for a full window from the watermark.
        assert_eq!(w.observe(a, 10), Some(6_000));
        assert_eq!(w.watermark_ms(), 5_000);
        assert_eq!(w.observe(a, 5_900), None);
    }

    #[test]
    fn a_clock_far_ahead_cannot_expire_the_window() {
        // 15-minute window: tolerance 60 s.
        let mut w = DedupWindow::new(900_000, 0);
        assert_eq!(w.clock_tolerance_ms(), 60_000);
        let now = 1_780_000_000_000i64;
        w.set_clock(now);
        let early: Vec<EventKey> = (0..5).map(|i| event_key("t", &format!("e{i}"))).collect();
        for &k in &early {
            assert_eq!(w.observe(k, now - 1_000), Some(now - 1_000 + 900_000));
        }
        // Stamped a year ahead: its dedup time is the clock + 60 s, not a year from now.
        let year = 365 * 86_400_000i64;
        let ahead = event_key("t", "ahead");
        assert_eq!(w.observe(ahead, now + year), Some(now + 60_000 + 900_000));
        assert_eq!(w.watermark_ms(), now + 60_000);
        // The early keys are still remembered: their re-deliveries are dropped.
        w.set_clock(now + 1_000);
        for &k in &early {
            assert_eq!(w.observe(k, now), None);
        }
        // The year-ahead copy's own re-delivery is dropped too (and moves the watermark with the clock).
        assert_eq!(w.observe(ahead, now + year), None);
        assert_eq!(w.watermark_ms(), now + 61_000);
        // Stamped a year behind: it does not move the watermark, and is remembered a full window.
        let behind = event_key("t", "behind");
        assert_eq!(w.observe(behind, now - year), Some(now + 61_000 + 900_000));
        assert_eq!(w.watermark_ms(), now + 61_000);
        // Time passes normally: the early keys expire once sane records pass their expiry.
        w.set_clock(now + 900_000);
        let later = event_key("t", "later");
        assert_eq!(w.observe(later, now + 899_000), Some(now + 1_799_000));
        assert_eq!(
            w.observe(early[0], now + 899_000),
            None,
            "at its expiry: kept"
        );
        assert_eq!(w.observe(early[1], now + 899_001), Some(now + 1_799_001));
    }

    #[test]
    fn tolerance_is_a_tenth_of_a_small_window() {
        let mut w = DedupWindow::new(5_000, 0);
        assert_eq!(w.clock_tolerance_ms(), 500);
        w.set_clock(10_000);
        assert_eq!(w.observe(event_key("t", "a"), 99_999), Some(10_500 + 5_000));
        // Without a clock (benchmarks, tests of the window alone) the record timestamp counts as is.
        let mut w = DedupWindow::new(5_000, 0);
        assert_eq!(w.observe(event_key("t", "a"), 99_999), Some(104_999));
    }

    /// The window against the plainest statement of its rule: a map of every key ever accepted to its
    /// expiry, where a key is a re-delivery while its expiry is not behind the watermark. A 50 ms window
    /// over 5,000 keys makes keys expire, come back and get swept many times over; some records are
    /// stamped late (behind the watermark).
    #[test]
    fn decides_like_a_map_of_expiries_through_many_sweeps() {
        let window = 50i64;
        let mut w = DedupWindow::new(window, 0);
        let mut model: std::collections::HashMap<EventKey, i64> = Default::default();
        let mut watermark = 0i64;
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let (mut sweeps, mut table) = (0, 0);
        for step in 0..300_000i64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = event_key("t", &(rng % 5_000).to_string());
            let ts = step / 40 - ((rng >> 32) % 8) as i64;
            watermark = watermark.max(ts);
            let expected = match model.get(&key) {
                Some(&expiry) if expiry >= watermark => None,
                _ => {
                    model.insert(key, watermark + window);
                    Some(watermark + window)
                }
            };
            assert_eq!(w.observe(key, ts), expected, "step {step}");
            if w.keys.len() < table {
                sweeps += 1;
            }
            table = w.keys.len();
            if step % 1_000 == 0 {
                let live = model.values().filter(|&&e| e >= watermark).count();
                assert_eq!(w.len(), live, "step {step}");
            }
        }
        assert_eq!(w.watermark_ms(), watermark);
        assert!(sweeps >= 10, "{sweeps} sweeps");
    }

    #[test]
    fn a_restore_out_of_expiry_order_counts_expiries_exactly() {
        let keys: Vec<EventKey> = (0..4).map(|i| event_key("t", &i.to_string())).collect();
        let entries = [
            (keys[0], 300),
            (keys[1], 100),
            (keys[2], 200),
            (keys[3], 50),
        ];
        // Watermark 60: the entry expiring at 50 is dropped, three are remembered.
        let mut w = DedupWindow::restore(1_000, 60, entries);
        assert_eq!(w.len(), 3);
        // Watermark 150: the key expiring at 100 is forgotten and accepted again.
        assert_eq!(w.observe(keys[2], 150), None);
        assert_eq!(w.len(), 2);
        assert_eq!(w.observe(keys[1], 150), Some(1_150));
        assert_eq!(w.observe(keys[0], 300), None);
        // Watermark 301: 200 and 300 are behind it, 1 150 is not.
        assert_eq!(w.observe(keys[3], 301), Some(1_301));
        assert_eq!(w.len(), 2);
        assert_eq!(w.observe(keys[1], 301), None);
    }

    #[test]
    fn restored_window_decides_like_the_original() {
        let mut original = DedupWindow::new(1_000, 0);
        let mut persisted = Vec::new();
        for (i, ts) in [(1u32, 0i64), (2, 300), (3, 900), (4, 1_200)] {
            let key = event_key("t", &i.to_string());
            if let Some(expiry) = original.observe(key, ts) {
                persisted.push((key, expiry));
            }
        }
        let bytes = encode_entries(&persisted);
        assert_eq!(bytes.len(), persisted.len() * ENTRY_BYTES);
        let mut restored =
            DedupWindow::restore(1_000, original.watermark_ms(), decode_entries(&bytes));
        assert_eq!(restored.len(), original.len());
        for (i, ts) in [
            (1u32, 1_250i64),
            (2, 1_250),
            (3, 1_300),
            (5, 1_400),
            (2, 1_400),
        ] {
            let key = event_key("t", &i.to_string());
            assert_eq!(
                restored.observe(key, ts),
                original.observe(key, ts),
                "key {i} at {ts}"
            );
        }
    }
}
