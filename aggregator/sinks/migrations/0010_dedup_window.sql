-- The idempotency window of each partition, persisted with its offset (same transaction).
-- watermark_ms: the newest Kafka record timestamp the partition has seen (ms since the epoch).
ALTER TABLE sluice_offsets ADD COLUMN IF NOT EXISTS watermark_ms bigint;

-- One row per flush that accepted new keys: `ids` packs 24-byte entries (128-bit key, i64 expiry ms,
-- little-endian). Rows whose every entry expired (max_expiry_ms < watermark) are deleted at commit.
CREATE TABLE IF NOT EXISTS sluice_dedup (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    end_offset     bigint  NOT NULL,
    max_expiry_ms  bigint  NOT NULL,
    ids            bytea   NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition, end_offset)
);
