-- Durable jobs: work that happens later or elsewhere (alert deliveries, and later outbound bot
-- actions, broadcasts, reward confirmations). A job is inserted in the transaction of the change
-- that causes it, claimed with FOR UPDATE SKIP LOCKED by any Shoal process for a lease, retried
-- with backoff, re-claimed when its lease runs out (the claiming process died), and dead after
-- its last attempt.
CREATE TYPE job_state AS ENUM ('queued', 'running', 'failed', 'dead', 'unknown', 'done', 'cancelled');

CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
    payload      JSONB NOT NULL DEFAULT '{}',
    state        job_state NOT NULL DEFAULT 'queued',
    -- Attempts started so far (a claim counts one).
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    -- Not before this time (queued: first run; failed: the next retry).
    run_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- While running: which process holds it and until when.
    locked_by    TEXT,
    lease_until  TIMESTAMPTZ,
    last_error   TEXT,
    -- At most one job per key, ever (e.g. one delivery per alert): enqueueing twice is a no-op.
    dedupe_key   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,
    CHECK ((state = 'running') = (lease_until IS NOT NULL))
);
-- What a claim looks at: due jobs and expired leases.
CREATE INDEX jobs_due_idx ON jobs (run_at) WHERE state IN ('queued', 'failed');
CREATE INDEX jobs_lease_idx ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_state_idx ON jobs (state, id DESC);
CREATE UNIQUE INDEX jobs_dedupe_key ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;

-- Wake idle workers at once when a job becomes due now (they also poll).
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shoal_jobs', '');
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();
