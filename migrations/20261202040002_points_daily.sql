-- Ledger totals per UTC day and kind, kept by the statement that writes the entries
-- (store::points::ledger_entries!), so that the points overview reads a few hundred rows instead
-- of millions of ledger entries: the last 30 days by kind, and the outstanding balance (the sum
-- of every entry ever, which equals the sum of all balances).
--
-- `slot` spreads the totals of one day and kind over up to 64 rows, one per database session
-- (backend pid mod 64): concurrent check-ins would otherwise all wait for one row until each
-- commits. A session never waits for itself, so the pool's connections seldom meet on a row.
CREATE TABLE points_daily (
    day     DATE NOT NULL,
    kind    TEXT NOT NULL,
    slot    SMALLINT NOT NULL,
    entries BIGINT NOT NULL DEFAULT 0,
    earned  BIGINT NOT NULL DEFAULT 0,
    spent   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, kind, slot)
);

INSERT INTO points_daily (day, kind, slot, entries, earned, spent)
SELECT (at AT TIME ZONE 'UTC')::date, kind, 0, count(*),
       COALESCE(sum(delta) FILTER (WHERE delta > 0), 0), COALESCE(-sum(delta) FILTER (WHERE delta < 0), 0)
FROM points_ledger GROUP BY 1, 2;

-- Entries leave the ledger only with their member (the cascade): their totals leave with them.
CREATE FUNCTION points_daily_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO points_daily AS d (day, kind, slot, entries, earned, spent)
    SELECT (at AT TIME ZONE 'UTC')::date, kind, 0, -count(*),
           -COALESCE(sum(delta) FILTER (WHERE delta > 0), 0), -COALESCE(-sum(delta) FILTER (WHERE delta < 0), 0)
    FROM gone GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, kind, slot) DO UPDATE
        SET entries = d.entries + EXCLUDED.entries, earned = d.earned + EXCLUDED.earned, spent = d.spent + EXCLUDED.spent;
    RETURN NULL;
END $$;
CREATE TRIGGER points_ledger_forget AFTER DELETE ON points_ledger
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION points_daily_forget();

-- The overview's top balances: the accounts with points, largest first, without sorting them all.
CREATE INDEX points_accounts_top_idx ON points_accounts (balance DESC, member_id) WHERE balance > 0;
