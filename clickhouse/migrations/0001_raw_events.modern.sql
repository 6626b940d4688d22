-- Modern overlay of 0001 (applied after it, only on servers the runner deems modern; see
-- docs/analytics.md "Portability"). Each ALTER is idempotent. On a table that already holds data the
-- type and codec changes run as a background mutation that rewrites those columns once.
--   * LowCardinality for the few-valued strings outside the sort key (dictionary-encoded: smaller, faster
--     GROUP BY). Sort-key columns keep String: changing them would need a table rebuild.
--   * ZSTD for the long free-text strings (urls, user agents, referrers).
--   * occurred_at_us: the event time with its microseconds as one DateTime64(6, 'UTC') value (ALIAS:
--     computed when read, nothing stored).

ALTER TABLE rank_events
    MODIFY COLUMN geo LowCardinality(String),
    MODIFY COLUMN engine LowCardinality(String),
    MODIFY COLUMN device LowCardinality(String),
    MODIFY COLUMN url Nullable(String) CODEC(ZSTD(3)),
    MODIFY COLUMN kafka_topic LowCardinality(String),
    ADD COLUMN IF NOT EXISTS occurred_at_us DateTime64(6, 'UTC')
        ALIAS fromUnixTimestamp64Micro(toInt64(occurred_at) * 1000000 + occurred_at_micros, 'UTC');

ALTER TABLE crawl_events
    MODIFY COLUMN url String CODEC(ZSTD(3)),
    MODIFY COLUMN kafka_topic LowCardinality(String),
    ADD COLUMN IF NOT EXISTS occurred_at_us DateTime64(6, 'UTC')
        ALIAS fromUnixTimestamp64Micro(toInt64(occurred_at) * 1000000 + occurred_at_micros, 'UTC');

ALTER TABLE click_events
    MODIFY COLUMN referrer Nullable(String) CODEC(ZSTD(3)),
    MODIFY COLUMN country LowCardinality(Nullable(String)),
    MODIFY COLUMN user_agent Nullable(String) CODEC(ZSTD(3)),
    MODIFY COLUMN kafka_topic LowCardinality(String),
    ADD COLUMN IF NOT EXISTS occurred_at_us DateTime64(6, 'UTC')
        ALIAS fromUnixTimestamp64Micro(toInt64(occurred_at) * 1000000 + occurred_at_micros, 'UTC');
