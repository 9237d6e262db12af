-- Moderation (issue 13 §4): rules hanging off a rule set, the rule set's escalation ladder,
-- and one row per moderation action (which is also the warning, when it is one).

-- A rule set's ladder: the steps a member's n-th active warning takes, how long a warning
-- counts, and the member tags that are never acted on. No row: the default ladder.
CREATE TABLE moderation_settings (
    rule_set_id BIGINT PRIMARY KEY REFERENCES rule_sets (id) ON DELETE CASCADE,
    -- `domain::moderation::Ladder::text`: "warn, warn, mute:3600, kick".
    ladder      TEXT NOT NULL DEFAULT 'warn, warn, mute:3600, kick' CHECK (length(ladder) BETWEEN 1 AND 400),
    warn_days   INTEGER NOT NULL DEFAULT 30 CHECK (warn_days BETWEEN 1 AND 3650),
    exempt_tags TEXT[] NOT NULL DEFAULT '{}' CHECK (cardinality(exempt_tags) <= 20),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE moderation_rules (
    id             BIGSERIAL PRIMARY KEY,
    rule_set_id    BIGINT NOT NULL REFERENCES rule_sets (id) ON DELETE CASCADE,
    -- Order within the rule set: the first rule a message breaks decides.
    position       INTEGER NOT NULL CHECK (position BETWEEN 0 AND 1000),
    kind           TEXT NOT NULL CHECK (kind IN ('keywords', 'links', 'phone', 'contact', 'invite', 'flood', 'quarantine')),
    enabled        BOOLEAN NOT NULL DEFAULT true,
    -- Keywords, allowed domains or allowed invite links, by kind.
    words          TEXT[] NOT NULL DEFAULT '{}' CHECK (cardinality(words) <= 500),
    flood_count    INTEGER NOT NULL DEFAULT 0 CHECK (flood_count BETWEEN 0 AND 100),
    flood_seconds  INTEGER NOT NULL DEFAULT 0 CHECK (flood_seconds BETWEEN 0 AND 3600),
    consecutive    INTEGER NOT NULL DEFAULT 0 CHECK (consecutive BETWEEN 0 AND 100),
    quarantine_hours INTEGER NOT NULL DEFAULT 0 CHECK (quarantine_hours BETWEEN 0 AND 720),
    delete_message BOOLEAN NOT NULL DEFAULT true,
    -- nothing | warn (the ladder decides) | mute (for mute_seconds) | kick
    response       TEXT NOT NULL CHECK (response IN ('nothing', 'warn', 'mute', 'kick')),
    mute_seconds   INTEGER NOT NULL DEFAULT 0 CHECK (mute_seconds BETWEEN 0 AND 31622400),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((response = 'mute') = (mute_seconds > 0))
);
CREATE INDEX moderation_rules_set_idx ON moderation_rules (rule_set_id, position);

-- What the bot did about one message that broke a rule. A row with `strike` is a warning: it
-- counts on the ladder until `expires_at`, unless pardoned. `job_ids` are the outbound jobs
-- that carry the deletion, the notice and the mute or kick: the platform's answers are their
-- states and `bot_calls` rows (jobs are pruned after `jobs.keep_finished_days`).
CREATE TABLE moderation_actions (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    group_id     BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id    BIGINT REFERENCES members (id) ON DELETE SET NULL,
    bridge_id    BIGINT NOT NULL,
    chat_id      TEXT NOT NULL,
    -- The platform's id of the member (kept when the member row is deleted).
    user_id      TEXT NOT NULL,
    message_id   TEXT,
    -- The start of the message, for the log.
    excerpt      TEXT NOT NULL DEFAULT '' CHECK (length(excerpt) <= 300),
    rule_set_id  BIGINT REFERENCES rule_sets (id) ON DELETE SET NULL,
    rule_id      BIGINT REFERENCES moderation_rules (id) ON DELETE SET NULL,
    rule_kind    TEXT NOT NULL,
    -- What was found: the keyword, the domain, the number, the flood's rate.
    evidence     TEXT NOT NULL DEFAULT '' CHECK (length(evidence) <= 400),
    deleted      BOOLEAN NOT NULL,
    -- none | warn | mute | kick
    step         TEXT NOT NULL CHECK (step IN ('none', 'warn', 'mute', 'kick')),
    mute_seconds INTEGER,
    strike       INTEGER CHECK (strike >= 1),
    expires_at   TIMESTAMPTZ,
    job_ids      BIGINT[] NOT NULL DEFAULT '{}',
    pardoned_at  TIMESTAMPTZ,
    pardoned_by  TEXT,
    undone_at    TIMESTAMPTZ,
    undone_by    TEXT,
    -- The jobs that lift the mute or kick.
    undo_job_ids BIGINT[] NOT NULL DEFAULT '{}',
    CHECK ((strike IS NULL) = (expires_at IS NULL))
);
CREATE INDEX moderation_actions_group_idx ON moderation_actions (group_id, id DESC);
CREATE INDEX moderation_actions_member_idx ON moderation_actions (member_id, id DESC) WHERE member_id IS NOT NULL;
-- Active warnings of one member in one group: what the ladder counts.
CREATE INDEX moderation_actions_warnings_idx ON moderation_actions (group_id, user_id, expires_at)
    WHERE strike IS NOT NULL AND pardoned_at IS NULL;
CREATE INDEX moderation_actions_at_idx ON moderation_actions (at);

-- Cached rule sets are compiled with their moderation rules: a change tells every process.
CREATE TRIGGER moderation_rules_changed AFTER INSERT OR UPDATE OR DELETE ON moderation_rules
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();
CREATE TRIGGER moderation_settings_changed AFTER INSERT OR UPDATE OR DELETE ON moderation_settings
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();
