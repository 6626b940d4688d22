-- The TTL that ClickHouseSink::apply_retention sets on each month-partitioned table of a modern server
-- (placeholders: the table, the time column of its toYYYYMM partition key, the retention in months).
-- A row is deleted once it is older than the retention; older servers drop whole expired partitions.
ALTER TABLE {table} MODIFY TTL {column} + toIntervalMonth({months});
