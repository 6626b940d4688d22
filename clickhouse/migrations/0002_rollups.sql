-- Rollups for analysts, kept up to date by materialized views on the raw tables. Runs on ClickHouse 18.16
-- and current releases. docs/analytics.md has the design, the measured costs and the analyst queries.
-- Since 0005 (0005_rollups_as_views.sql) the rollup tables and their views below are dropped again and
-- the rollups' names are views over the raw tables; only crawl_fetches and its view stay. A new database
-- still runs this file first, as every server did.
--
-- The same event may reach a raw table more than once (a replay after a crash, a rebalance, a producer
-- retry), and a materialized view sees every insert. So every rollup holds duplicate-proof state only:
--   * counts are uniqExact sets of event_id (a second copy of an event adds nothing to the set);
--   * min, max and argMax keyed by (occurred_at, occurred_at_micros, event_id) are idempotent;
--   * values that cannot be made duplicate-proof cheaply (sums, latency quantiles) come from
--     crawl_fetches, a slim ReplacingMergeTree keyed on the event and queried with FINAL.
-- State columns end in _state and are read with the matching -Merge function, GROUP BY the key.
-- Aggregate arguments are never Nullable (18.16 and 26.x name Nullable states differently): a missing
-- visitor is filtered with the -If combinator, an unranked check is stored as position 0 (last, worst)
-- or 255 (best) and turned back into NULL with nullIf at query time.
-- Buckets are UTC whatever the server's time zone. Each statement ends with ";" at the end of a line.
-- click_hour and click_day are not here: they are views over click_minute (0003_click_hour_view.sql,
-- 0004_click_day_view.sql). Servers that ran an earlier version of this file, which made each a table
-- fed by its own view, are converted by those migrations.

CREATE TABLE IF NOT EXISTS click_minute (
    tenant_id      String,
    short_code     String,
    minute         DateTime('UTC'),
    clicks_state   AggregateFunction(uniqExact, String),
    visitors_state AggregateFunction(uniqExactIf, String, UInt8)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant_id, short_code, minute);

CREATE TABLE IF NOT EXISTS rank_day (
    tenant_id      String,
    campaign_id    String,
    keyword        String,
    geo            String,
    engine         String,
    device         String,
    day            Date,
    checks_state   AggregateFunction(uniqExact, String),
    last_state     AggregateFunction(argMax, UInt8, Tuple(DateTime, UInt32, String)),
    best_state     AggregateFunction(min, UInt8),
    worst_state    AggregateFunction(max, UInt8)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, campaign_id, keyword, geo, engine, device, day);

CREATE TABLE IF NOT EXISTS crawl_hour (
    tenant_id          String,
    domain             String,
    hour               DateTime('UTC'),
    status_1xx_state   AggregateFunction(uniqExactIf, String, UInt8),
    status_2xx_state   AggregateFunction(uniqExactIf, String, UInt8),
    status_3xx_state   AggregateFunction(uniqExactIf, String, UInt8),
    status_4xx_state   AggregateFunction(uniqExactIf, String, UInt8),
    status_5xx_state   AggregateFunction(uniqExactIf, String, UInt8),
    fetch_ms_max_state AggregateFunction(max, UInt32)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, domain, hour);

CREATE TABLE IF NOT EXISTS crawl_fetches (
    tenant_id   String,
    domain      String,
    hour        DateTime('UTC'),
    event_id    String,
    status_code UInt16,
    fetch_ms    UInt32,
    bytes       UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, domain, hour, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS click_minute_mv TO click_minute AS
SELECT tenant_id, short_code, toStartOfMinute(occurred_at, 'UTC') AS minute,
       uniqExactState(event_id) AS clicks_state,
       uniqExactIfState(ifNull(visitor_id, ''), isNotNull(visitor_id)) AS visitors_state
FROM click_events
GROUP BY tenant_id, short_code, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS rank_day_mv TO rank_day AS
SELECT tenant_id, campaign_id, keyword, geo, engine, device, toDate(occurred_at, 'UTC') AS day,
       uniqExactState(event_id) AS checks_state,
       argMaxState(ifNull(position, toUInt8(0)), (occurred_at, occurred_at_micros, event_id)) AS last_state,
       minState(ifNull(position, toUInt8(255))) AS best_state,
       maxState(ifNull(position, toUInt8(0))) AS worst_state
FROM rank_events
GROUP BY tenant_id, campaign_id, keyword, geo, engine, device, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS crawl_hour_mv TO crawl_hour AS
SELECT tenant_id, domain, toStartOfHour(occurred_at, 'UTC') AS hour,
       uniqExactIfState(event_id, status_code < 200) AS status_1xx_state,
       uniqExactIfState(event_id, status_code >= 200 AND status_code < 300) AS status_2xx_state,
       uniqExactIfState(event_id, status_code >= 300 AND status_code < 400) AS status_3xx_state,
       uniqExactIfState(event_id, status_code >= 400 AND status_code < 500) AS status_4xx_state,
       uniqExactIfState(event_id, status_code >= 500) AS status_5xx_state,
       maxState(fetch_ms) AS fetch_ms_max_state
FROM crawl_events
GROUP BY tenant_id, domain, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS crawl_fetches_mv TO crawl_fetches AS
SELECT tenant_id, domain, toStartOfHour(occurred_at, 'UTC') AS hour, event_id, status_code, fetch_ms, bytes
FROM crawl_events;

-- Backfill from the raw rows already there. Safe while ingest keeps writing: an event that reaches a
-- rollup both through its view and through this backfill is absorbed like any other duplicate; and safe
-- to run again if the migration is interrupted.

INSERT INTO click_minute
SELECT tenant_id, short_code, toStartOfMinute(occurred_at, 'UTC') AS minute,
       uniqExactState(event_id), uniqExactIfState(ifNull(visitor_id, ''), isNotNull(visitor_id))
FROM click_events
GROUP BY tenant_id, short_code, minute;

INSERT INTO rank_day
SELECT tenant_id, campaign_id, keyword, geo, engine, device, toDate(occurred_at, 'UTC') AS day,
       uniqExactState(event_id),
       argMaxState(ifNull(position, toUInt8(0)), (occurred_at, occurred_at_micros, event_id)),
       minState(ifNull(position, toUInt8(255))),
       maxState(ifNull(position, toUInt8(0)))
FROM rank_events
GROUP BY tenant_id, campaign_id, keyword, geo, engine, device, day;

INSERT INTO crawl_hour
SELECT tenant_id, domain, toStartOfHour(occurred_at, 'UTC') AS hour,
       uniqExactIfState(event_id, status_code < 200),
       uniqExactIfState(event_id, status_code >= 200 AND status_code < 300),
       uniqExactIfState(event_id, status_code >= 300 AND status_code < 400),
       uniqExactIfState(event_id, status_code >= 400 AND status_code < 500),
       uniqExactIfState(event_id, status_code >= 500),
       maxState(fetch_ms)
FROM crawl_events
GROUP BY tenant_id, domain, hour;

INSERT INTO crawl_fetches
SELECT tenant_id, domain, toStartOfHour(occurred_at, 'UTC') AS hour, event_id, status_code, fetch_ms, bytes
FROM crawl_events;
