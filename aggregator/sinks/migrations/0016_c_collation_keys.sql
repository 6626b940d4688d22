-- The aggregate tables' key columns compare byte by byte (COLLATE "C").
--
-- Every upsert walks the primary-key B-tree, comparing text keys. Under the database's default
-- collation (C.UTF-8 on the local stack, often en_US.UTF-8 elsewhere) each comparison goes through
-- strcoll: `bttextcmp`/`varstr_cmp` were about 18 % of PostgreSQL's CPU in a 100k events/s load run
-- (docs/BENCHMARKS.md). With "C" it is a memcmp. For UTF-8, byte order is code-point order, which is what
-- glibc's C.UTF-8 sorts by, so on the local stack no ORDER BY changes; under a language collation,
-- ORDER BY on these columns becomes code-point order (add COLLATE "en_US" etc. to a query that needs
-- a language order). Equality and the tenant policies are unaffected.
--
-- The collation is part of the column type, and PostgreSQL refuses to change the type of a column a
-- policy refers to: the tenant policies (0003) are dropped and re-created around the change. Indexes on
-- the columns are rebuilt; the rows are not rewritten (same type). The change propagates to every
-- partition, and partitions created later copy it (`CREATE TABLE … (LIKE parent …)`).

DROP POLICY IF EXISTS tenant_isolation ON click_daily;
DROP POLICY IF EXISTS tenant_isolation ON rank_daily;
DROP POLICY IF EXISTS tenant_isolation ON crawl_hourly;

ALTER TABLE click_daily
    ALTER COLUMN tenant_id  TYPE text COLLATE "C",
    ALTER COLUMN short_code TYPE text COLLATE "C";

ALTER TABLE rank_daily
    ALTER COLUMN tenant_id   TYPE text COLLATE "C",
    ALTER COLUMN campaign_id TYPE text COLLATE "C",
    ALTER COLUMN keyword     TYPE text COLLATE "C",
    ALTER COLUMN geo         TYPE text COLLATE "C",
    ALTER COLUMN engine      TYPE text COLLATE "C",
    ALTER COLUMN device      TYPE text COLLATE "C";

ALTER TABLE crawl_hourly
    ALTER COLUMN tenant_id   TYPE text COLLATE "C",
    ALTER COLUMN campaign_id TYPE text COLLATE "C",
    ALTER COLUMN domain      TYPE text COLLATE "C";

CREATE POLICY tenant_isolation ON click_daily
    USING (tenant_id = current_setting('app.current_tenant', true))
    WITH CHECK (tenant_id = current_setting('app.current_tenant', true));
CREATE POLICY tenant_isolation ON rank_daily
    USING (tenant_id = current_setting('app.current_tenant', true))
    WITH CHECK (tenant_id = current_setting('app.current_tenant', true));
CREATE POLICY tenant_isolation ON crawl_hourly
    USING (tenant_id = current_setting('app.current_tenant', true))
    WITH CHECK (tenant_id = current_setting('app.current_tenant', true));
