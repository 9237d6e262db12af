-- Foundation schema: operators, sessions, API tokens, audit log, groups, members, memberships.
-- Constraints here back the invariants; Rust code checks the same things for friendly errors.

CREATE TABLE operators (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{1,31}$'),
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    all_groups    BOOLEAN NOT NULL DEFAULT FALSE,
    language      TEXT CHECK (language IN ('en', 'zh-CN')),
    disabled_at   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX operators_username_key ON operators (username);

-- The one-time setup token printed at first start while no operator exists (hash only).
CREATE TABLE setup_tokens (
    token_hash BYTEA PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- tower-sessions' Postgres store (schema public, table sessions).
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    data        BYTEA NOT NULL,
    expiry_date TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expiry_date);

CREATE TABLE login_failures (
    id       BIGSERIAL PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    username TEXT NOT NULL,
    ip       TEXT NOT NULL
);
CREATE INDEX login_failures_username_idx ON login_failures (username, at);
CREATE INDEX login_failures_ip_idx ON login_failures (ip, at);

CREATE TABLE groups (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 120),
    platform         TEXT NOT NULL CHECK (platform IN ('wechat', 'qq', 'telegram', 'discord', 'whatsapp', 'other')),
    join_url         TEXT CHECK (join_url IS NULL OR join_url ~ '^https?://'),
    capacity         INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    member_count     INTEGER CHECK (member_count >= 0),
    timezone         TEXT NOT NULL DEFAULT 'Asia/Shanghai',
    external_chat_id TEXT CHECK (external_chat_id IS NULL OR length(external_chat_id) BETWEEN 1 AND 128),
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    tags             TEXT[] NOT NULL DEFAULT '{}',
    notes            TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX groups_external_chat_key ON groups (platform, external_chat_id) WHERE external_chat_id IS NOT NULL;
CREATE INDEX groups_tags_idx ON groups USING GIN (tags);
CREATE INDEX groups_status_idx ON groups (status, id);

-- The uploaded group QR image (WeChat-style join target), replaced in place.
CREATE TABLE group_qr_images (
    group_id     BIGINT PRIMARY KEY REFERENCES groups (id) ON DELETE CASCADE,
    content_type TEXT NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg')),
    bytes        BYTEA NOT NULL CHECK (octet_length(bytes) <= 2097152),
    sha256       TEXT NOT NULL,
    qr_payload   TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    uploaded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- NULL: the platform's QR codes do not expire (WeChat's do: 7 days after upload by default).
    expires_at   TIMESTAMPTZ
);

CREATE TABLE operator_groups (
    operator_id BIGINT NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    group_id    BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (operator_id, group_id)
);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 80),
    token_hash   BYTEA NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    all_groups   BOOLEAN NOT NULL DEFAULT FALSE,
    created_by   BIGINT REFERENCES operators (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

CREATE TABLE api_token_groups (
    token_id BIGINT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, group_id)
);

CREATE TABLE members (
    id               BIGSERIAL PRIMARY KEY,
    platform         TEXT NOT NULL CHECK (platform IN ('wechat', 'qq', 'telegram', 'discord', 'whatsapp', 'other')),
    external_user_id TEXT NOT NULL CHECK (length(external_user_id) BETWEEN 1 AND 128),
    display_name     TEXT NOT NULL CHECK (length(display_name) <= 120),
    tags             TEXT[] NOT NULL DEFAULT '{}',
    notes            TEXT NOT NULL DEFAULT '',
    last_active_at   TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (platform, external_user_id)
);
CREATE INDEX members_tags_idx ON members USING GIN (tags);

CREATE TABLE memberships (
    id        BIGSERIAL PRIMARY KEY,
    member_id BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    group_id  BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    role      TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    left_at   TIMESTAMPTZ,
    CHECK (left_at IS NULL OR left_at >= joined_at)
);
-- At most one open membership per member and group.
CREATE UNIQUE INDEX memberships_open_key ON memberships (member_id, group_id) WHERE left_at IS NULL;
CREATE INDEX memberships_group_idx ON memberships (group_id, member_id);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('operator', 'token', 'system')),
    actor_id    BIGINT,
    actor_name  TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT,
    details     JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
