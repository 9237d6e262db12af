-- A transaction that sends NOTIFY takes one lock for the whole database at commit and holds it
-- through its WAL flush, so every transaction that enqueued a job committed after the previous
-- one's flush, one at a time: under the moderation benchmark most of the webhooks' waiting was
-- on that lock (docs/PERFORMANCE.md). The process that enqueues now sends the NOTIFY after its
-- transaction, from its own short statement (`jobs::nudger`).
DROP TRIGGER jobs_notify ON jobs;
DROP FUNCTION jobs_notify();
