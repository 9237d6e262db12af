-- What a rule set does besides moderation: the welcome, keyword auto-replies and the entry
-- threshold (入群门槛), with the state they keep: welcome batches (joins within a window are
-- welcomed in one message), keyword cooldowns per chat, join requests and their queue.
-- Every table hanging off a rule set tells the caches (rule_sets_changed) and bumps nothing
-- itself: the use cases bump `rule_sets.version`.

CREATE TABLE rule_set_welcome (
    rule_set_id     BIGINT PRIMARY KEY REFERENCES rule_sets (id) ON DELETE CASCADE,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    template        TEXT NOT NULL CHECK (length(template) BETWEEN 1 AND 1000),
    image_url       TEXT CHECK (image_url IS NULL OR image_url ~ '^https?://'),
    rules_link      TEXT NOT NULL DEFAULT '' CHECK (length(rules_link) <= 500),
    delay_secs      INTEGER NOT NULL DEFAULT 0 CHECK (delay_secs BETWEEN 0 AND 3600),
    window_secs     INTEGER NOT NULL DEFAULT 60 CHECK (window_secs BETWEEN 0 AND 3600),
    delete_previous BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE keyword_replies (
    id            BIGSERIAL PRIMARY KEY,
    rule_set_id   BIGINT NOT NULL REFERENCES rule_sets (id) ON DELETE CASCADE,
    match_kind    TEXT NOT NULL CHECK (match_kind IN ('exact', 'contains', 'regex')),
    pattern       TEXT NOT NULL CHECK (length(pattern) BETWEEN 1 AND 200),
    reply_text    TEXT NOT NULL DEFAULT '' CHECK (length(reply_text) <= 2000),
    image_url     TEXT CHECK (image_url IS NULL OR image_url ~ '^https?://'),
    cooldown_secs INTEGER NOT NULL DEFAULT 60 CHECK (cooldown_secs BETWEEN 0 AND 86400),
    -- Local hours [from, to) in the group's time zone (over midnight when from > to); NULL: always.
    hours_from    SMALLINT CHECK (hours_from BETWEEN 0 AND 23),
    hours_to      SMALLINT CHECK (hours_to BETWEEN 1 AND 24),
    priority      INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (reply_text <> '' OR image_url IS NOT NULL),
    CHECK ((hours_from IS NULL) = (hours_to IS NULL))
);
CREATE INDEX keyword_replies_rule_set_idx ON keyword_replies (rule_set_id, priority DESC, id);

-- A keyword reply answers a chat at most once per cooldown, across processes: the answer
-- claims the row with a conditional upsert.
CREATE TABLE keyword_cooldowns (
    keyword_id BIGINT NOT NULL REFERENCES keyword_replies (id) ON DELETE CASCADE,
    chat_id    TEXT NOT NULL,
    until      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (keyword_id, chat_id)
);

CREATE TABLE rule_set_entry (
    rule_set_id    BIGINT PRIMARY KEY REFERENCES rule_sets (id) ON DELETE CASCADE,
    mode           TEXT NOT NULL CHECK (mode IN ('approve_all', 'keyword', 'manual')),
    keywords       TEXT[] NOT NULL DEFAULT '{}',
    -- Keyword mode, no keyword in the answer: decline or hold for an operator.
    otherwise      TEXT NOT NULL DEFAULT 'decline' CHECK (otherwise IN ('decline', 'hold')),
    decline_reason TEXT NOT NULL DEFAULT '' CHECK (length(decline_reason) <= 200),
    expire_hours   INTEGER NOT NULL DEFAULT 72 CHECK (expire_hours BETWEEN 1 AND 720),
    -- A held request nobody answered in time: decline it, or leave it to lapse (expired).
    on_expiry      TEXT NOT NULL DEFAULT 'decline' CHECK (on_expiry IN ('decline', 'hold')),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TRIGGER rule_set_welcome_changed AFTER INSERT OR UPDATE OR DELETE ON rule_set_welcome
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();
CREATE TRIGGER keyword_replies_changed AFTER INSERT OR UPDATE OR DELETE ON keyword_replies
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();
CREATE TRIGGER rule_set_entry_changed AFTER INSERT OR UPDATE OR DELETE ON rule_set_entry
    FOR EACH STATEMENT EXECUTE FUNCTION rule_sets_changed();

-- Joins waiting to be welcomed together: at most one open batch per group; the `welcome` job
-- (run at `due_at`) closes it and posts one message naming its members.
CREATE TABLE welcome_batches (
    id          BIGSERIAL PRIMARY KEY,
    group_id    BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    bridge_id   BIGINT NOT NULL,
    chat_id     TEXT NOT NULL,
    due_at      TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ,
    -- The bot_action job that posted the welcome (its bot_calls row holds the message id).
    job_id      BIGINT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX welcome_batches_open_key ON welcome_batches (group_id) WHERE closed_at IS NULL;
CREATE INDEX welcome_batches_group_idx ON welcome_batches (group_id, id DESC);

CREATE TABLE welcome_members (
    batch_id  BIGINT NOT NULL REFERENCES welcome_batches (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    name      TEXT NOT NULL,
    member_id BIGINT REFERENCES members (id) ON DELETE SET NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, user_id)
);

-- Join requests from bridges (OneBot request/group/add, Telegram chat_join_request), judged by
-- the group's entry policy; held ones wait in the approval queue until an operator answers or
-- they expire (`join_request_expiry` job).
CREATE TABLE join_requests (
    id           BIGSERIAL PRIMARY KEY,
    group_id     BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    bridge_id    BIGINT NOT NULL,
    chat_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    member_id    BIGINT REFERENCES members (id) ON DELETE SET NULL,
    -- What answers it on the platform: OneBot's flag, Telegram's user id.
    request      TEXT NOT NULL CHECK (length(request) BETWEEN 1 AND 200),
    -- What the applicant wrote (OneBot comment, Telegram bio).
    answer       TEXT NOT NULL DEFAULT '' CHECK (length(answer) <= 1000),
    user_chat_id TEXT,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'declined', 'expired')),
    rule_set_id  BIGINT REFERENCES rule_sets (id) ON DELETE SET NULL,
    -- "policy" or the operator's name.
    decided_by   TEXT,
    reason       TEXT NOT NULL DEFAULT '' CHECK (length(reason) <= 200),
    expires_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_at   TIMESTAMPTZ
);
CREATE UNIQUE INDEX join_requests_pending_key ON join_requests (bridge_id, chat_id, user_id) WHERE status = 'pending';
CREATE INDEX join_requests_queue_idx ON join_requests (status, id DESC);
CREATE INDEX join_requests_group_idx ON join_requests (group_id, id DESC);
