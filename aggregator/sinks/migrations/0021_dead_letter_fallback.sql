-- The dead-letter fallback: dead letters the dead-letter topic cannot take (too large even as a
-- truncated copy, topic missing or not authorised, or still failing after the publish bound) are stored
-- here instead, in the same transaction that moves the partition's offset past them — so each is stored
-- exactly once (the key is its source coordinates) and parking never waits for Kafka. Read them with
-- `sluice-ingest dead-letters list` or SQL (docs/operations.md, "Dead letters").

CREATE TABLE IF NOT EXISTS sluice_dead_letters (
    consumer_group      text        NOT NULL,
    source_topic        text        NOT NULL,
    source_partition    integer     NOT NULL,
    source_offset       bigint      NOT NULL,
    -- Why the record was refused (a RejectReason name or sink_refused) and the detail.
    reason              text        NOT NULL,
    detail              text        NOT NULL,
    -- Why the dead-letter topic could not take it.
    publish_error       text        NOT NULL,
    -- The dead letter whole: key, value (the original bytes, or the re-encoded event for
    -- sink_refused), the original headers as two parallel arrays, and the record timestamp.
    record_key          bytea,
    record_value        bytea       NOT NULL,
    header_names        text[]      NOT NULL,
    header_values       bytea[]     NOT NULL,
    record_timestamp_ms bigint,
    parked_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, source_topic, source_partition, source_offset)
);

-- sluice_writer may also append (and read) parked dead letters: the grant function of 0012 with one
-- more line, re-run.

-- Grants sluice_writer its access in this database, if the role exists. Idempotent. Returns whether the
-- role exists.
CREATE OR REPLACE FUNCTION sluice_grant_writer()
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    t text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_writer') THEN
        RETURN false;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO sluice_writer', current_database());
    GRANT USAGE ON SCHEMA public TO sluice_writer;
    GRANT SELECT, INSERT, UPDATE ON click_daily, rank_daily, crawl_hourly TO sluice_writer;
    GRANT SELECT, INSERT, UPDATE ON sluice_offsets TO sluice_writer;
    GRANT SELECT, INSERT, DELETE ON sluice_dedup TO sluice_writer;
    GRANT SELECT, INSERT ON sluice_dead_letters TO sluice_writer;
    GRANT EXECUTE ON FUNCTION sluice_ensure_partitions(integer, integer) TO sluice_writer;
    IF to_regclass('_sqlx_migrations') IS NOT NULL THEN
        GRANT SELECT ON _sqlx_migrations TO sluice_writer;
    END IF;
    FOREACH t IN ARRAY ARRAY['click_daily', 'rank_daily', 'crawl_hourly'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_policy
                       WHERE polrelid = to_regclass(t) AND polname = 'writer_all_tenants') THEN
            EXECUTE format('CREATE POLICY writer_all_tenants ON %I TO sluice_writer
                                USING (true) WITH CHECK (true)', t);
        END IF;
    END LOOP;
    RETURN true;
END
$fn$;
REVOKE ALL ON FUNCTION sluice_grant_writer() FROM PUBLIC;

SELECT sluice_grant_writer();
