-- Deleting a member keeps their history: the row stays, anonymised (name, platform user id,
-- tags and notes scrubbed) and marked deleted, so that ledger entries, check-ins and memberships
-- still refer to something and a balance still equals the sum of its ledger. Lists and lookups
-- skip deleted members (`store::members`).
ALTER TABLE members ADD COLUMN deleted_at TIMESTAMPTZ;

-- No delete of a member may take ledger entries with it any more: the cascade goes, and the
-- append-only trigger refuses every UPDATE and DELETE, at any depth.
ALTER TABLE points_ledger DROP CONSTRAINT points_ledger_member_id_fkey,
    ADD CONSTRAINT points_ledger_member_id_fkey FOREIGN KEY (member_id) REFERENCES members (id);

CREATE OR REPLACE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'points_ledger is append-only';
END $$;

-- `forfeit`: a deleted member's remaining balance, taken back by one entry (domain::points).
ALTER TABLE points_ledger DROP CONSTRAINT points_ledger_kind_check,
    ADD CONSTRAINT points_ledger_kind_check CHECK (kind IN ('checkin', 'streak_bonus', 'makeup', 'adjustment',
        'invite', 'redemption', 'refund', 'expiry', 'api', 'forfeit'));
