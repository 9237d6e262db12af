-- `checkins` and `member_daily_activity` get a row from nearly every group message. Their four
-- foreign keys (to `members` and to `groups`) each ran a lookup that locks the parent row, per
-- written row, after the statement: about an eighth of a check-in's cost in the database
-- (docs/PERFORMANCE.md). What they guarded holds without them:
--
-- * Both tables are written only by the message statements (`store::checkins`,
--   `store::bridges`), with the member the same transaction has just created or refreshed, and
--   so holds locked, and a group found by its chat.
-- * Shoal deletes neither members (it anonymises them and keeps their history) nor groups (it
--   archives them).
--
-- What the keys did besides, removing a deleted parent's rows (by hand, in SQL), is done by
-- statement triggers, as for `bridge_events`. `points_ledger` keeps its key to `members`: it is
-- written from many places, and its history is the money.

ALTER TABLE checkins DROP CONSTRAINT checkins_member_id_fkey, DROP CONSTRAINT checkins_group_id_fkey;
ALTER TABLE member_daily_activity
    DROP CONSTRAINT member_daily_activity_member_id_fkey,
    DROP CONSTRAINT member_daily_activity_group_id_fkey;

CREATE FUNCTION members_forget_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM checkins c USING gone WHERE c.member_id = gone.id;
    DELETE FROM member_daily_activity a USING gone WHERE a.member_id = gone.id;
    RETURN NULL;
END $$;

CREATE TRIGGER members_forget_activity AFTER DELETE ON members
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION members_forget_activity();

CREATE FUNCTION groups_forget_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM checkins c USING gone WHERE c.group_id = gone.id;
    DELETE FROM member_daily_activity a USING gone WHERE a.group_id = gone.id;
    RETURN NULL;
END $$;

CREATE TRIGGER groups_forget_activity AFTER DELETE ON groups
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION groups_forget_activity();
