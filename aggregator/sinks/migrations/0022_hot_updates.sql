-- Aggregate rows are updated in place: every flush that touches a key rewrites its row (INSERT … ON
-- CONFLICT DO UPDATE). With the default fillfactor of 100 a page is full once its rows are inserted, so
-- the first update of each row puts the new version on another page, and every index of the table gets a
-- new entry: one more B-tree descent with text comparisons per updated row, for each index (rank_daily and
-- crawl_hourly have two). With free room on the page the update is HOT (heap-only tuple): no index entry,
-- and the dead version is pruned on the page. fillfactor 80 leaves that room (docs/BENCHMARKS.md, issue 16,
-- has the measured effect).
--
-- Partitioned tables take no storage parameters: each partition does. Existing partitions get it here
-- (it applies to pages filled from now on; no rewrite); partitions created later get it from
-- sluice_create_month_partition, restated below with that one change (WITH (fillfactor = 80)).

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
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS) WITH (fillfactor = 80)',
                   part, parent);
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

DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT i.inhrelid::regclass
        FROM pg_inherits i
        WHERE i.inhparent IN ('click_daily'::regclass, 'rank_daily'::regclass, 'crawl_hourly'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 80)', part);
    END LOOP;
END
$$;
