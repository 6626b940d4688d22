-- sluice_dedup.ids holds 24-byte entries of 128-bit hashes: random bytes that never compress. Stored
-- EXTENDED (the default), every flush's value above ~2 kB went through a pglz compression attempt first —
-- about 7 % of PostgreSQL's CPU in a load-run profile (docs/BENCHMARKS.md). EXTERNAL keeps out-of-line
-- storage and skips the attempt. Applies to rows written from now on; existing rows stay readable.
ALTER TABLE sluice_dedup ALTER COLUMN ids SET STORAGE EXTERNAL;
