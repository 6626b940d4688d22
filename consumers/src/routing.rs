//! Is a record on the partition its key belongs to? Every decoded event passes through [`check`] with
//! its record key, its partition and its topic's partition count, and comes out either fine or with a
//! [`Misrouted`] reason — counted (`sluice_ingest_misrouted_records_total{kind, reason}`) and warned
//! about, never dropped: the dedup window is per partition, so an event whose copies sit on two
//! partitions is seen once by each window (docs/guarantees.md, "Duplicates across partitions").
//!
//! The partition a key belongs to is Kafka's default: `(murmur2(key) & 0x7fffffff) % partitions`, with
//! MurmurHash2 seeded as in Kafka's `Utils.murmur2` (the Java client's `BuiltInPartitioner`, and
//! librdkafka's `partitioner=murmur2_random`). The hash comes from the `murmur2` crate (`murmur2` with
//! `KAFKA_SEED`: the endianness-independent MurmurHash2, which is Kafka's variant); the unit test below
//! holds it to Kafka's own test vectors (`UtilsTest.testMurmur2`).

use sluice_schemas::event::is_partition_key;
use sluice_schemas::EventKind;

/// Why a record is not where its key says it should be. A bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Misrouted {
    /// The record has no key: its producer chose a partition without one.
    NoKey,
    /// The key is not `{tenant_id}/{entity}` of the event it carries.
    KeyMismatch,
    /// The key is right but murmur2 puts it on another partition (e.g. a librdkafka client with its
    /// default `consistent_random` partitioner, CRC32).
    WrongPartition,
}

impl Misrouted {
    pub const ALL: [Misrouted; 3] = [
        Misrouted::NoKey,
        Misrouted::KeyMismatch,
        Misrouted::WrongPartition,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Misrouted::NoKey => "no_key",
            Misrouted::KeyMismatch => "key_mismatch",
            Misrouted::WrongPartition => "wrong_partition",
        }
    }

    pub(crate) fn slot(self) -> usize {
        match self {
            Misrouted::NoKey => 0,
            Misrouted::KeyMismatch => 1,
            Misrouted::WrongPartition => 2,
        }
    }
}

/// Kafka's partition for `key` among `partitions` (> 0): the Java client's default partitioner.
pub fn kafka_partition(key: &[u8], partitions: i32) -> i32 {
    let hash = murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff;
    (hash % partitions.max(1) as u32) as i32
}

/// Checks one decoded event's placement. `partitions`: the topic's partition count, when known.
pub fn check(
    key: Option<&[u8]>,
    tenant_id: &str,
    entity: &str,
    partition: i32,
    partitions: Option<i32>,
) -> Option<Misrouted> {
    let Some(key) = key else {
        return Some(Misrouted::NoKey);
    };
    if !is_partition_key(key, tenant_id, entity) {
        return Some(Misrouted::KeyMismatch);
    }
    match partitions {
        Some(n) if n > 0 && kafka_partition(key, n) != partition => Some(Misrouted::WrongPartition),
        _ => None,
    }
}

/// Per-turn counts of misrouted records, by kind and reason.
#[derive(Debug, Default)]
pub(crate) struct MisroutedCounts {
    counts: [[u64; 3]; 3],
}

impl MisroutedCounts {
    pub(crate) fn add(&mut self, kind_slot: usize, reason: Misrouted) {
        self.counts[kind_slot][reason.slot()] += 1;
    }

    /// Publishes and resets the counts.
    pub(crate) fn publish(&mut self, kind_of_slot: impl Fn(usize) -> EventKind) {
        for (slot, reasons) in self.counts.iter_mut().enumerate() {
            for reason in Misrouted::ALL {
                let n = std::mem::take(&mut reasons[reason.slot()]);
                if n > 0 {
                    metrics::counter!(crate::metrics::MISROUTED,
                        "kind" => kind_of_slot(slot).as_str(), "reason" => reason.as_str())
                    .increment(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java):
    /// the Java `int` each input hashes to.
    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        for (key, want) in [
            (&b"21"[..], -973_932_308i32),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            let got = murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32;
            assert_eq!(got, want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo_the_count() {
        // toPositive(murmur2("21")) = -973932308 & 0x7fffffff = 1173551340; the Java partitioner
        // computes `toPositive(hash) % numPartitions`.
        assert_eq!(1_173_551_340 % 7, 3);
        assert_eq!(kafka_partition(b"21", 7), 3);
        assert_eq!(479_470_107 % 4, 3);
        assert_eq!(kafka_partition(b"abc", 4), 3);
        assert_eq!(kafka_partition(b"abc", 1), 0);
    }

    #[test]
    fn checks_key_then_partition() {
        let key = b"t1/camp";
        let right = kafka_partition(key, 6);
        let wrong = (right + 1) % 6;
        assert_eq!(check(Some(key), "t1", "camp", right, Some(6)), None);
        assert_eq!(
            check(Some(key), "t1", "camp", wrong, Some(6)),
            Some(Misrouted::WrongPartition)
        );
        assert_eq!(check(Some(key), "t1", "camp", wrong, None), None);
        assert_eq!(
            check(None, "t1", "camp", right, Some(6)),
            Some(Misrouted::NoKey)
        );
        for bad in [
            &b"t1/cam"[..],
            b"t1camp",
            b"t1/campx",
            b"t1|camp",
            b"t/1camp",
            b"",
        ] {
            assert_eq!(
                check(Some(bad), "t1", "camp", right, Some(6)),
                Some(Misrouted::KeyMismatch),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Tenants and entities may themselves contain '/': the key is still compared exactly.
        assert!(is_partition_key(b"a/b/c", "a/b", "c"));
        assert!(is_partition_key(b"a/b/c", "a", "b/c"));
        assert!(!is_partition_key(b"a/b/c", "a", "b"));
    }
}
