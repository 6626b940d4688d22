-- Tenant isolation for readers (see docs/postgres.md).
--
-- Row-level security on the three aggregate tables: a role that is not the table owner sees (and could
-- touch) only the rows of the tenant named by the session setting app.current_tenant; with the setting
-- absent or empty it sees nothing. The policies are for PUBLIC, so every non-owner role is confined,
-- not only sluice_reader. The owner — the ingest role that runs these migrations — is not subject to
-- RLS (no FORCE ROW LEVEL SECURITY): ingest writes every tenant's rows in one transaction.
--
-- sluice_reader: a NOLOGIN group role with SELECT on the three tables and nothing else (no write
-- privilege, no access to sluice_offsets or to the partitions themselves). Product APIs log in as a
-- member of it:  CREATE ROLE product_api LOGIN PASSWORD '...' IN ROLE sluice_reader;
-- Roles are cluster-wide: the role is created only if absent, and creating it needs CREATEROLE. Without
-- that privilege the migration skips the role and its grants with a NOTICE (it does not fail); an admin
-- then creates the role and runs SELECT sluice_grant_reader(); as the table owner.

ALTER TABLE click_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE rank_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE crawl_hourly ENABLE ROW LEVEL SECURITY;

-- current_setting(..., true) is NULL when the setting was never defined; NULL and '' match no row.
CREATE POLICY tenant_isolation ON click_daily
    USING (tenant_id = current_setting('app.current_tenant', true))
    WITH CHECK (tenant_id = current_setting('app.current_tenant', true));
CREATE POLICY tenant_isolation ON rank_daily
    USING (tenant_id = current_setting('app.current_tenant', true))
    WITH CHECK (tenant_id = current_setting('app.current_tenant', true));
CREATE POLICY tenant_isolation ON crawl_hourly
    USING (tenant_id = current_setting('app.current_tenant', true))
    WITH CHECK (tenant_id = current_setting('app.current_tenant', true));

-- Grants sluice_reader its read access in this database, if the role exists. Idempotent. Returns
-- whether the role exists.
CREATE OR REPLACE FUNCTION sluice_grant_reader()
RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_reader') THEN
        RETURN false;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO sluice_reader', current_database());
    GRANT USAGE ON SCHEMA public TO sluice_reader;
    GRANT SELECT ON click_daily, rank_daily, crawl_hourly TO sluice_reader;
    RETURN true;
END
$fn$;
REVOKE ALL ON FUNCTION sluice_grant_reader() FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_reader') THEN
        BEGIN
            CREATE ROLE sluice_reader NOLOGIN NOBYPASSRLS;
        EXCEPTION
            -- Another database's migration created it at the same moment.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role sluice_reader does not exist and % may not create it (needs CREATEROLE): '
                             'skipped; an admin should CREATE ROLE sluice_reader NOLOGIN and then run '
                             'SELECT sluice_grant_reader(); as %', current_user, current_user;
        END;
    END IF;
    PERFORM sluice_grant_reader();
END
$$;
