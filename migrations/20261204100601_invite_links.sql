-- Per-member platform invite links and join hints (docs/ARCHITECTURE.md, "Invites").

-- Telegram: links a group's bot made with `createChatInviteLink(name = the member's code)`,
-- one per member and group ever (the unique key: concurrent asks make one row, one job, one
-- call). `pending` until the job's call answers; `unknown` when the call may have happened
-- without an answer (never repeated by itself); `failed` with the bot's words.
CREATE TABLE member_invite_links (
    id                   BIGSERIAL PRIMARY KEY,
    member_id            BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    group_id             BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    -- The link's name on the platform: the member's invite code.
    name                 TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 32),
    creates_join_request BOOLEAN NOT NULL DEFAULT false,
    status               TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'created', 'failed', 'unknown')),
    invite_link          TEXT CHECK (length(invite_link) BETWEEN 1 AND 300),
    error                TEXT NOT NULL DEFAULT '' CHECK (length(error) <= 500),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (member_id, group_id),
    CHECK ((status = 'created') = (invite_link IS NOT NULL))
);
CREATE INDEX member_invite_links_group_idx ON member_invite_links (group_id, status);

-- Per group: personal Telegram links ask to join (`creates_join_request`), for public groups,
-- where a join through a plain link is not reported with the link.
ALTER TABLE groups ADD COLUMN invite_links_join_request BOOLEAN NOT NULL DEFAULT false;

-- What a join request said about who brought the applicant (Telegram
-- `chat_join_request.invite_link.name`, go-cqhttp `request/group/add` `invitor_id`), kept per
-- applicant and group until their join arrives (within `domain::invite_link::HINT_WINDOW_HOURS`).
CREATE TABLE invite_hints (
    id                BIGSERIAL PRIMARY KEY,
    group_id          BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id         BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    invite_link_name  TEXT CHECK (length(invite_link_name) <= 64),
    inviter_member_id BIGINT REFERENCES members (id) ON DELETE CASCADE,
    seen_at           TIMESTAMPTZ NOT NULL,
    used_at           TIMESTAMPTZ,
    UNIQUE (group_id, member_id),
    CHECK (invite_link_name IS NOT NULL OR inviter_member_id IS NOT NULL)
);
