-- Every rule broken in a chat writes a `moderation_actions` row and one `bot_activity` row per
-- action of the bot. Their seven foreign keys (to `groups`, `members`, `rule_sets` and
-- `moderation_rules`) each ran a lookup after the insert that locked the parent row in share
-- mode. Under a flood most violations name the same rule set and the same rule, so those two
-- rows were locked by many transactions at once, each lock a new multixact on a shared row: a
-- tenth of the database's time under the moderation benchmark (docs/PERFORMANCE.md). What the
-- keys guarded holds without them:
--
-- * Both tables are written only by `moderation::act` and `app::moderation::undo` (and the
--   automation's activity log), with a group found by its chat, a member the same transaction
--   has just created or refreshed, and the rule set and rule of the cached judge; the rule's id is
--   read from `moderation_rules` in the insert, so a rule deleted before it reads as none.
-- * Shoal deletes neither members (it anonymises them) nor groups (it archives them).
--
-- What the keys did on a parent's deletion is done by statement triggers, once per statement:
-- a deleted group takes its log rows along; a deleted member, rule set or rule leaves the rows
-- and loses the link (the row keeps the member's platform id and the rule's kind). A row written
-- by a transaction that raced such a deletion keeps the id of a parent that is gone; the lists
-- join the parents' names and show it as they show a lost link.

ALTER TABLE moderation_actions
    DROP CONSTRAINT moderation_actions_group_id_fkey,
    DROP CONSTRAINT moderation_actions_member_id_fkey,
    DROP CONSTRAINT moderation_actions_rule_set_id_fkey,
    DROP CONSTRAINT moderation_actions_rule_id_fkey;
ALTER TABLE bot_activity
    DROP CONSTRAINT bot_activity_group_id_fkey,
    DROP CONSTRAINT bot_activity_member_id_fkey,
    DROP CONSTRAINT bot_activity_rule_set_id_fkey;

CREATE FUNCTION groups_forget_bot_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM gone) THEN
        DELETE FROM moderation_actions a USING gone WHERE a.group_id = gone.id;
        DELETE FROM bot_activity a USING gone WHERE a.group_id = gone.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER groups_forget_bot_log AFTER DELETE ON groups
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION groups_forget_bot_log();

CREATE FUNCTION members_unlink_bot_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM gone) THEN
        UPDATE moderation_actions a SET member_id = NULL FROM gone WHERE a.member_id = gone.id;
        UPDATE bot_activity a SET member_id = NULL FROM gone WHERE a.member_id = gone.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER members_unlink_bot_log AFTER DELETE ON members
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION members_unlink_bot_log();

CREATE FUNCTION rule_sets_unlink_bot_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM gone) THEN
        UPDATE moderation_actions a SET rule_set_id = NULL FROM gone WHERE a.rule_set_id = gone.id;
        UPDATE bot_activity a SET rule_set_id = NULL FROM gone WHERE a.rule_set_id = gone.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER rule_sets_unlink_bot_log AFTER DELETE ON rule_sets
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_unlink_bot_log();

-- A rule set's save deletes the rules it no longer has, usually none.
CREATE FUNCTION moderation_rules_unlink_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM gone) THEN
        UPDATE moderation_actions a SET rule_id = NULL FROM gone WHERE a.rule_id = gone.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER moderation_rules_unlink_log AFTER DELETE ON moderation_rules
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION moderation_rules_unlink_log();
