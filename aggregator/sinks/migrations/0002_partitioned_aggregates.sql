-- Monthly range partitioning of the three aggregate tables (see docs/postgres.md).
--
-- Each table becomes a partitioned table on its time column (click_daily.day, rank_daily.day,
-- crawl_hourly.hour, UTC months), with one partition per month named <table>_pYYYY_MM and a DEFAULT
-- partition <table>_default, so an insert never fails for lack of a partition. sluice_ensure_partitions()
-- creates the months around now (13 back: the event contract accepts events up to 366 days old; N ahead)
-- plus every month found in a DEFAULT partition, moving those rows into their new partition. Ingest calls
-- it at start-up and periodically (PostgresSink::ensure_partitions); this migration calls it once.
--
-- Databases created by 0001 keep their data: each old table is renamed, the partitioned table created,
-- the rows copied, the old table dropped; primary key and indexes are built after the copy. The whole
-- migration is one transaction (sqlx), so a failure leaves the old tables as they were.
--
-- Partitions get ROW LEVEL SECURITY enabled and no policy and no grants: only their owner can read them
-- directly; every other role reads through the parent tables, whose policies are in 0003.

-- One month's partition of `parent` ('click_daily' | 'rank_daily' | 'crawl_hourly'). Built detached,
-- filled with that month's rows from the DEFAULT partition, then attached: ATTACH takes only SHARE UPDATE
-- EXCLUSIVE on the parent (concurrent upserts and reads go on) and, thanks to the CHECK constraint
-- matching the bounds, does not scan the new table. Returns the rows moved out of the DEFAULT partition,
-- or NULL when the partition already existed.
CREATE OR REPLACE FUNCTION sluice_create_month_partition(parent text, month_start date)
RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    part   text := format('%s_p%s', parent, to_char(month_start, 'YYYY_MM'));
    dflt   text := parent || '_default';
    keycol text;
    lo     text;
    hi     text;
    moved  bigint;
BEGIN
    IF parent NOT IN ('click_daily', 'rank_daily', 'crawl_hourly') THEN
        RAISE EXCEPTION 'sluice_create_month_partition: unknown table %', parent;
    END IF;
    IF month_start <> date_trunc('month', month_start::timestamp)::date THEN
        RAISE EXCEPTION 'sluice_create_month_partition: % is not the first day of a month', month_start;
    END IF;
    IF to_regclass(format('%I', part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF parent = 'crawl_hourly' THEN
        -- Explicit UTC offsets: the bounds do not depend on the session's TimeZone.
        keycol := 'hour';
        lo := quote_literal(to_char(month_start, 'YYYY-MM-DD') || ' 00:00:00+00');
        hi := quote_literal(to_char(month_start + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
    ELSE
        keycol := 'day';
        lo := quote_literal(to_char(month_start, 'YYYY-MM-DD'));
        hi := quote_literal(to_char(month_start + interval '1 month', 'YYYY-MM-DD'));
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%I >= %s AND %I < %s)',
                   part, part || '_bounds', keycol, lo, keycol, hi);
    moved := 0;
    IF to_regclass(format('%I', dflt)) IS NOT NULL THEN
        EXECUTE format('WITH m AS (DELETE FROM %I WHERE %I >= %s AND %I < %s RETURNING *)
                        INSERT INTO %I SELECT * FROM m', dflt, keycol, lo, keycol, hi, part);
        GET DIAGNOSTICS moved = ROW_COUNT;
    END IF;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', parent, part, lo, hi);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bounds');
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
    RETURN moved;
END
$fn$;

-- Makes sure every aggregate table has a partition for each month from `months_back` before the current
-- UTC month to `months_ahead` after it, and for every month that has rows in its DEFAULT partition
-- (which it thereby empties). Idempotent; concurrent calls queue on an advisory lock. Returns how many
-- partitions it created and how many rows it moved out of DEFAULT partitions.
CREATE OR REPLACE FUNCTION sluice_ensure_partitions(months_ahead integer DEFAULT 3,
                                                    months_back integer DEFAULT 13)
RETURNS TABLE (created integer, moved_rows bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    parent     text;
    month_expr text;
    window_months date[];
    stray_months  date[];
    m          date;
    r          bigint;
BEGIN
    IF months_ahead < 0 OR months_back < 0 THEN
        RAISE EXCEPTION 'sluice_ensure_partitions: months_ahead and months_back must be >= 0';
    END IF;
    -- 'sluice' in ASCII: one maintainer at a time per database.
    PERFORM pg_advisory_xact_lock(1936488805);
    created := 0;
    moved_rows := 0;
    window_months := ARRAY(
        SELECT g::date
        FROM generate_series(this_month - make_interval(months => months_back),
                             this_month + make_interval(months => months_ahead),
                             interval '1 month') AS g);
    FOREACH parent IN ARRAY ARRAY['click_daily', 'rank_daily', 'crawl_hourly'] LOOP
        month_expr := CASE parent
            WHEN 'crawl_hourly' THEN 'date_trunc(''month'', hour AT TIME ZONE ''UTC'')::date'
            ELSE 'date_trunc(''month'', day::timestamp)::date'
        END;
        stray_months := '{}';
        IF to_regclass(format('%I', parent || '_default')) IS NOT NULL THEN
            EXECUTE format('SELECT coalesce(array_agg(DISTINCT %s), ''{}'') FROM %I',
                           month_expr, parent || '_default')
               INTO stray_months;
        END IF;
        FOR m IN SELECT DISTINCT x FROM unnest(window_months || stray_months) AS x ORDER BY 1 LOOP
            r := sluice_create_month_partition(parent, m);
            IF r IS NOT NULL THEN
                created := created + 1;
                moved_rows := moved_rows + r;
            END IF;
        END LOOP;
    END LOOP;
    RETURN NEXT;
END
$fn$;

-- Only the owner (the ingest role that runs migrations) maintains partitions.
REVOKE ALL ON FUNCTION sluice_create_month_partition(text, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION sluice_ensure_partitions(integer, integer) FROM PUBLIC;

-- Move the 0001 tables aside.
ALTER TABLE click_daily RENAME TO click_daily_unpartitioned;
ALTER TABLE rank_daily RENAME TO rank_daily_unpartitioned;
ALTER TABLE crawl_hourly RENAME TO crawl_hourly_unpartitioned;

-- Same columns, same order, same types and collations as 0001.
CREATE TABLE click_daily (
    tenant_id  text   NOT NULL,
    short_code text   NOT NULL,
    day        date   NOT NULL,
    clicks     bigint NOT NULL
) PARTITION BY RANGE (day);

CREATE TABLE rank_daily (
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
    checks           bigint      NOT NULL
) PARTITION BY RANGE (day);

CREATE TABLE crawl_hourly (
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
    bytes_sum    bigint      NOT NULL
) PARTITION BY RANGE (hour);

CREATE TABLE click_daily_default PARTITION OF click_daily DEFAULT;
CREATE TABLE rank_daily_default PARTITION OF rank_daily DEFAULT;
CREATE TABLE crawl_hourly_default PARTITION OF crawl_hourly DEFAULT;
ALTER TABLE click_daily_default ENABLE ROW LEVEL SECURITY;
ALTER TABLE rank_daily_default ENABLE ROW LEVEL SECURITY;
ALTER TABLE crawl_hourly_default ENABLE ROW LEVEL SECURITY;

-- A partition for every month the old tables hold, then the window around now.
SELECT sluice_create_month_partition('click_daily', m)
FROM (SELECT DISTINCT date_trunc('month', day::timestamp)::date AS m FROM click_daily_unpartitioned) s;
SELECT sluice_create_month_partition('rank_daily', m)
FROM (SELECT DISTINCT date_trunc('month', day::timestamp)::date AS m FROM rank_daily_unpartitioned) s;
SELECT sluice_create_month_partition('crawl_hourly', m)
FROM (SELECT DISTINCT date_trunc('month', hour AT TIME ZONE 'UTC')::date AS m
      FROM crawl_hourly_unpartitioned) s;
SELECT * FROM sluice_ensure_partitions(3);

INSERT INTO click_daily (tenant_id, short_code, day, clicks)
SELECT tenant_id, short_code, day, clicks FROM click_daily_unpartitioned;
INSERT INTO rank_daily (tenant_id, campaign_id, keyword, geo, engine, device, day, last_position,
                        last_occurred_at, last_event_id, best_position, worst_position, checks)
SELECT tenant_id, campaign_id, keyword, geo, engine, device, day, last_position,
       last_occurred_at, last_event_id, best_position, worst_position, checks
FROM rank_daily_unpartitioned;
INSERT INTO crawl_hourly (tenant_id, campaign_id, domain, hour, pages, status_2xx, status_3xx, status_4xx,
                          status_5xx, fetch_ms_sum, fetch_ms_max, bytes_sum)
SELECT tenant_id, campaign_id, domain, hour, pages, status_2xx, status_3xx, status_4xx,
       status_5xx, fetch_ms_sum, fetch_ms_max, bytes_sum
FROM crawl_hourly_unpartitioned;

DROP TABLE click_daily_unpartitioned;
DROP TABLE rank_daily_unpartitioned;
DROP TABLE crawl_hourly_unpartitioned;

-- Keys (they include the partition column, as PostgreSQL requires) and read indexes, built after the
-- copy. Every index starts with tenant_id: every product read is within one tenant (and RLS adds
-- tenant_id = current_setting(...) to each of them).
--   click_daily PK  (tenant_id, short_code, day)                       a link's daily clicks
--   rank_daily PK   (tenant_id, campaign_id, keyword, geo, engine, device, day)   one series' history
--   rank_daily_campaign_day (tenant_id, campaign_id, day DESC)         all keywords of a campaign, one day
--   crawl_hourly PK (tenant_id, campaign_id, domain, hour)             a campaign's domain, by hour
--   crawl_hourly_domain_hour (tenant_id, domain, hour DESC)            a domain's health across campaigns
ALTER TABLE click_daily ADD PRIMARY KEY (tenant_id, short_code, day);
ALTER TABLE rank_daily ADD PRIMARY KEY (tenant_id, campaign_id, keyword, geo, engine, device, day);
ALTER TABLE crawl_hourly ADD PRIMARY KEY (tenant_id, campaign_id, domain, hour);
CREATE INDEX rank_daily_campaign_day ON rank_daily (tenant_id, campaign_id, day DESC);
CREATE INDEX crawl_hourly_domain_hour ON crawl_hourly (tenant_id, domain, hour DESC);
