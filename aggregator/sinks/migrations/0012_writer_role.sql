-- The least-privilege role for running ingest (see docs/postgres.md, "Who does what").
--
-- sluice_writer: a NOLOGIN group role with exactly what a running `sluice-ingest run` needs, and nothing
-- else (no DDL, no TRUNCATE, no DELETE on aggregates, no access to the partitions themselves):
--   - SELECT, INSERT, UPDATE on click_daily, rank_daily, crawl_hourly (the upserts), through a permissive
--     policy for sluice_writer only: it writes every tenant's rows, while the tenant_isolation policy
--     (0003) still confines every other non-owner role, readers included;
--   - SELECT, INSERT, UPDATE on sluice_offsets (the compare-and-swap; `sluice-ingest replay` too);
--   - SELECT, INSERT, DELETE on sluice_dedup (append a flush's keys, prune expired ones);
--   - EXECUTE on sluice_ensure_partitions, which becomes SECURITY DEFINER: partitions are created as the
--     tables' owner, so the writer can keep them ahead of need without owning anything;
--   - SELECT on _sqlx_migrations, so a process that does not migrate can check the schema is current.
-- Ingest logs in as a member of it with migrate_on_start = false; `sluice-ingest migrate` runs as the
-- owner (the role that runs these migrations). Roles are cluster-wide: the role is created only if
-- absent, and creating it needs CREATEROLE. Without that privilege the migration skips the role and its
-- grants with a NOTICE (it does not fail); an admin then creates the role and runs
-- SELECT sluice_grant_writer(); as the owner.

-- Runs as its owner whoever calls it. The fixed search_path (pg_temp last) keeps a caller from steering
-- the unqualified names inside to objects of its own.
ALTER FUNCTION sluice_ensure_partitions(integer, integer)
    SECURITY DEFINER SET search_path = public, pg_temp;

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

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_writer') THEN
        BEGIN
            CREATE ROLE sluice_writer NOLOGIN NOBYPASSRLS;
        EXCEPTION
            -- Another database's migration created it at the same moment.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role sluice_writer does not exist and % may not create it (needs CREATEROLE): '
                             'skipped; an admin should CREATE ROLE sluice_writer NOLOGIN and then run '
                             'SELECT sluice_grant_writer(); as %', current_user, current_user;
        END;
    END IF;
    PERFORM sluice_grant_writer();
END
$$;
