-- The replay fence (sluice-ingest replay, docs/operations.md "Replay and backfill").
--
-- replay_until: set when an operator moves a partition's stored offset back. Records below it were
-- already merged into the aggregates (and their keys into the dedup window) before the rewind, so ingest
-- re-sends them to ClickHouse (idempotent by event) and nothing else. The commit that moves next_offset
-- to or past it clears it again. NULL: no replay in progress.
ALTER TABLE sluice_offsets ADD COLUMN IF NOT EXISTS replay_until bigint;
