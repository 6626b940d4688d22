-- Sluice OLTP aggregates and the per-partition offsets they cover (one transaction moves both).

CREATE TABLE IF NOT EXISTS sluice_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE IF NOT EXISTS click_daily (
    tenant_id  text   NOT NULL,
    short_code text   NOT NULL,
    day        date   NOT NULL,
    clicks     bigint NOT NULL,
    PRIMARY KEY (tenant_id, short_code, day)
);

CREATE TABLE IF NOT EXISTS rank_daily (
    tenant_id        text        NOT NULL,
    campaign_id      text        NOT NULL,
    keyword          text        NOT NULL,
    geo              text        NOT NULL,
    engine           text        NOT NULL,
    device           text        NOT NULL,
    day              date        NOT NULL,
    last_position    smallint,
    -- (last_occurred_at, last_event_id) orders checks; "C" collation = byte order, as in the consumer.
    last_occurred_at timestamptz NOT NULL,
    last_event_id    text COLLATE "C" NOT NULL,
    best_position    smallint,
    worst_position   smallint,
    checks           bigint      NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, keyword, geo, engine, device, day)
);

CREATE TABLE IF NOT EXISTS crawl_hourly (
    tenant_id    text        NOT NULL,
    campaign_id  text        NOT NULL,
    domain       text        NOT NULL,
    hour         timestamptz NOT NULL,
    pages        bigint      NOT NULL,
    status_2xx   bigint      NOT NULL,
    status_3xx   bigint      NOT NULL,
    status_4xx   bigint      NOT NULL,
    status_5xx   bigint      NOT NULL,
    fetch_ms_sum bigint      NOT NULL,
    fetch_ms_max bigint      NOT NULL,
    bytes_sum    bigint      NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, domain, hour)
);
