-- Rule sets (规则集): the bot automation an operator sets once and applies to many groups
-- (welcome, keyword replies, entry policy; moderation rules reference `rule_sets (id)` too).
--
-- A rule set is attached to single groups (`rule_set_groups`, at most one per group) or to a
-- group tag (`rule_set_tags`, at most one per tag). A group's effective rule set is its own
-- attachment if it has one, else the attachment of one of its tags: the highest `priority`,
-- then the tag first in text order. `store::rule_sets::effective` is that rule in SQL.
CREATE TABLE rule_sets (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 120),
    description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    -- Bumped by every change to the rule set or to anything hanging off it.
    version     INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX rule_sets_name_key ON rule_sets (lower(btrim(name)));

-- A group's own rule set: wins over any tag's.
CREATE TABLE rule_set_groups (
    group_id    BIGINT PRIMARY KEY REFERENCES groups (id) ON DELETE CASCADE,
    rule_set_id BIGINT NOT NULL REFERENCES rule_sets (id) ON DELETE CASCADE,
    attached_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX rule_set_groups_rule_set_idx ON rule_set_groups (rule_set_id);

-- A tag's rule set: applies to every group carrying the tag (groups.tags) without its own.
CREATE TABLE rule_set_tags (
    tag         TEXT PRIMARY KEY CHECK (length(tag) BETWEEN 1 AND 32),
    rule_set_id BIGINT NOT NULL REFERENCES rule_sets (id) ON DELETE CASCADE,
    -- Between two tags of one group, the higher priority wins.
    priority    INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    attached_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX rule_set_tags_rule_set_idx ON rule_set_tags (rule_set_id);

-- What the bot did in a group, and why: one row per action Shoal asked a bot to take (a
-- welcome, a keyword reply, an answer to a join request, a moderation step…). `job_id` is the
-- outbound job that carries the action: the platform's answer is that job's `bot_calls` row;
-- `answer` holds an answer known at once (carried in the webhook's answer, held for an
-- operator). `kind` is `domain::rule_set::ActivityKind` (no CHECK: other rule kinds add
-- values in Rust only).
CREATE TABLE bot_activity (
    id          BIGSERIAL PRIMARY KEY,
    group_id    BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id   BIGINT REFERENCES members (id) ON DELETE SET NULL,
    -- The platform's id of the member acted on (kept when the member row is deleted).
    user_id     TEXT,
    bridge_id   BIGINT,
    kind        TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 40),
    -- The `domain::action::Action`, when the bot was asked to act.
    action      JSONB,
    rule_set_id BIGINT REFERENCES rule_sets (id) ON DELETE SET NULL,
    -- Which rule: "welcome", "keyword:12", "entry:keyword"… (`rule_set::RuleRef`).
    rule        TEXT NOT NULL DEFAULT '' CHECK (length(rule) <= 200),
    reason      TEXT NOT NULL DEFAULT '' CHECK (length(reason) <= 2000),
    job_id      BIGINT,
    answer      TEXT CHECK (length(answer) <= 2000),
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bot_activity_group_idx ON bot_activity (group_id, id DESC);
CREATE INDEX bot_activity_member_idx ON bot_activity (member_id, id DESC) WHERE member_id IS NOT NULL;
CREATE INDEX bot_activity_job_idx ON bot_activity (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX bot_activity_at_idx ON bot_activity (at);

-- Every Shoal process caches effective rule sets (`automation::RuleSetCache`); a change to a
-- rule set, an attachment or a group's tags tells them all: NOTIFY shoal_rule_sets (sent at
-- commit, once per transaction). Tables that hang rules off a rule set (moderation rules…)
-- attach this same statement trigger.
CREATE FUNCTION rule_sets_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shoal_rule_sets', '');
    RETURN NULL;
END $$;

CREATE TRIGGER rule_sets_changed AFTER INSERT OR UPDATE OR DELETE ON rule_sets
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();
CREATE TRIGGER rule_set_groups_changed AFTER INSERT OR UPDATE OR DELETE ON rule_set_groups
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();
CREATE TRIGGER rule_set_tags_changed AFTER INSERT OR UPDATE OR DELETE ON rule_set_tags
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();
CREATE TRIGGER groups_tags_changed AFTER UPDATE OF tags, timezone ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();
