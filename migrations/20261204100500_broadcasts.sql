-- Scheduled broadcasts (定时群发) and check-in reminders: a text for many groups, now, at a time,
-- or every day / week at a local time in each group's own time zone. Each occurrence writes one
-- delivery row per group, tied to the bot_action job that sends it (the job's settlement moves
-- the row on: sent with the platform's message id, failed with the reason, unknown, cancelled).

CREATE TABLE broadcasts (
    id                BIGSERIAL PRIMARY KEY,
    -- Plain text as the operator wrote it; escaped per platform when an occurrence is sent.
    text              TEXT NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    -- An optional picture (checked and re-encoded like every uploaded image), sent with the text
    -- as its caption; the bots fetch it from /b/{id}/{image_token}.
    image             BYTEA CHECK (image IS NULL OR octet_length(image) <= 4194304),
    image_type        TEXT CHECK (image_type IN ('image/png', 'image/jpeg')),
    image_token       TEXT,
    -- Who gets it: chosen groups, the groups with a tag (at each occurrence), or the groups
    -- whose check-in reminder is on (at each occurrence).
    audience          TEXT NOT NULL CHECK (audience IN ('groups', 'tag', 'reminders')),
    group_ids         BIGINT[] NOT NULL DEFAULT '{}',
    tag               TEXT CHECK (tag IS NULL OR length(tag) BETWEEN 1 AND 32),
    -- The creator's groups when scoped (NULL: every group): a tag or the reminders never reach
    -- beyond them, and only principals seeing all of them see the broadcast.
    scope             BIGINT[],
    -- Name (in OneBot: @) the members of each group who have not checked in today.
    mention_unchecked BOOLEAN NOT NULL DEFAULT FALSE,
    -- Once: at send_at. Recurring: every day, or on `weekdays` (1 = Monday … 7 = Sunday), at
    -- `local_time` in each group's time zone.
    send_at           TIMESTAMPTZ,
    every             TEXT CHECK (every IN ('daily', 'weekly')),
    local_time        TIME,
    weekdays          SMALLINT[] NOT NULL DEFAULT '{}',
    state             TEXT NOT NULL DEFAULT 'scheduled' CHECK (state IN ('scheduled', 'done', 'cancelled')),
    -- The next occurrence's job and time (recurring, or once and not yet due).
    next_at           TIMESTAMPTZ,
    next_job_id       BIGINT,
    created_by        TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    cancelled_at      TIMESTAMPTZ,
    CHECK ((every IS NULL) = (local_time IS NULL)),
    CHECK (every IS NULL OR send_at IS NULL),
    CHECK (every IS DISTINCT FROM 'weekly' OR cardinality(weekdays) BETWEEN 1 AND 7),
    CHECK ((audience = 'tag') = (tag IS NOT NULL)),
    CHECK ((image IS NULL) = (image_type IS NULL) AND (image IS NULL) = (image_token IS NULL))
);
CREATE INDEX broadcasts_list_idx ON broadcasts (id DESC);

CREATE TABLE broadcast_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    broadcast_id  BIGINT NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    group_id      BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    -- The occurrence (its instant in the group's zone); one delivery per group and occurrence.
    occurrence_at TIMESTAMPTZ NOT NULL,
    bridge_id     BIGINT,
    chat_id       TEXT,
    -- The bot_action job that sends it (none when the group has no bot to send through).
    job_id        BIGINT,
    state         TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'sent', 'failed', 'unknown', 'cancelled')),
    message_id    TEXT,
    error         TEXT,
    -- Members named in it (reminders).
    mentioned     INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (broadcast_id, group_id, occurrence_at)
);
CREATE INDEX broadcast_deliveries_job_idx ON broadcast_deliveries (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX broadcast_deliveries_list_idx ON broadcast_deliveries (broadcast_id, occurrence_at DESC, group_id);

-- Groups whose daily check-in reminder is on (the audience of reminder broadcasts).
CREATE TABLE reminder_groups (
    group_id   BIGINT PRIMARY KEY REFERENCES groups (id) ON DELETE CASCADE,
    enabled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A delivery's message id is read from its job's successful send in the call log when the job
-- is settled (the call-log row may have been written by an earlier settlement batch).
CREATE INDEX bot_calls_job_idx ON bot_calls (job_id) WHERE job_id IS NOT NULL;
