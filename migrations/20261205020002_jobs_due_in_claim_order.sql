-- A claim takes the due jobs in the order (run_at, id). With the index on run_at alone, and due
-- jobs and expired leases asked for in one condition, PostgreSQL read both partial indexes as
-- bitmaps and sorted: a bitmap scan never marks an index entry dead, so under a steady flow of
-- jobs every claim visited every job claimed since the last vacuum again (1.5 ms a claim under
-- the moderation benchmark, docs/PERFORMANCE.md). Claims now read this index in order and stop
-- at their limit (`store::jobs::claim`).
DROP INDEX jobs_due_idx;
CREATE INDEX jobs_due_idx ON jobs (run_at, id) WHERE state IN ('queued', 'failed');
