-- Raw events, one row per event, for analysts. Runs on ClickHouse 18.16 and current releases.
-- ReplacingMergeTree keyed on the event (its sort key ends with event_id): a replayed or re-sent event
-- collapses into one row at merge time; queries that must be exact before merges use FINAL.
-- occurred_at is whole seconds (18.16 has no DateTime64); occurred_at_micros keeps the sub-second part.

CREATE TABLE IF NOT EXISTS rank_events (
    event_id           String,
    tenant_id          String,
    occurred_at        DateTime,
    occurred_at_micros UInt32,
    campaign_id        String,
    keyword            String,
    geo                String,
    engine             String,
    device             String,
    url                Nullable(String),
    position           Nullable(UInt8),
    kafka_topic        String,
    kafka_partition    UInt16,
    kafka_offset       UInt64,
    ingested_at        DateTime
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, campaign_id, keyword, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS crawl_events (
    event_id           String,
    tenant_id          String,
    occurred_at        DateTime,
    occurred_at_micros UInt32,
    campaign_id        String,
    url                String,
    domain             String,
    status_code        UInt16,
    fetch_ms           UInt32,
    bytes              UInt64,
    content_hash       Nullable(String),
    kafka_topic        String,
    kafka_partition    UInt16,
    kafka_offset       UInt64,
    ingested_at        DateTime
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, campaign_id, domain, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS click_events (
    event_id           String,
    tenant_id          String,
    occurred_at        DateTime,
    occurred_at_micros UInt32,
    short_code         String,
    referrer           Nullable(String),
    country            Nullable(String),
    user_agent         Nullable(String),
    visitor_id         Nullable(String),
    kafka_topic        String,
    kafka_partition    UInt16,
    kafka_offset       UInt64,
    ingested_at        DateTime
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, short_code, occurred_at, event_id);
