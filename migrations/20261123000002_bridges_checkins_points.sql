-- Bridges (chat-bot connections), their events, check-ins and the points ledger.

CREATE TABLE bridges (
    id             BIGSERIAL PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('onebot11', 'telegram', 'generic')),
    -- The platform of the chats this bridge reports (onebot11: qq, telegram: telegram).
    platform       TEXT NOT NULL CHECK (platform IN ('wechat', 'qq', 'telegram', 'discord', 'whatsapp', 'other')),
    name           TEXT NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 120),
    -- Verifies webhooks (HMAC key or secret token), so it is kept as given: shown once in the UI.
    secret         TEXT NOT NULL,
    api_base_url   TEXT CHECK (api_base_url IS NULL OR api_base_url ~ '^https?://'),
    access_token   TEXT,
    -- The bot's own platform user id (OneBot self_id, Telegram bot id) once seen.
    self_id        TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_event_at  TIMESTAMPTZ
);

-- Every authenticated delivery, once: the dedupe key makes a retry a no-op that gets the stored
-- reply back.
CREATE TABLE bridge_events (
    id          BIGSERIAL PRIMARY KEY,
    bridge_id   BIGINT NOT NULL REFERENCES bridges (id) ON DELETE CASCADE,
    dedupe_key  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    chat_id     TEXT,
    user_id     TEXT,
    reply       JSONB,
    status      INTEGER NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (bridge_id, dedupe_key)
);
CREATE INDEX bridge_events_recent_idx ON bridge_events (bridge_id, received_at DESC);

-- Chats seen in a bridge's events that no group claims yet.
CREATE TABLE unlinked_chats (
    bridge_id   BIGINT NOT NULL REFERENCES bridges (id) ON DELETE CASCADE,
    chat_id     TEXT NOT NULL,
    title       TEXT NOT NULL DEFAULT '',
    first_seen  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen   TIMESTAMPTZ NOT NULL DEFAULT now(),
    events      BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (bridge_id, chat_id)
);

ALTER TABLE memberships ADD COLUMN inviter_member_id BIGINT REFERENCES members (id) ON DELETE SET NULL;
ALTER TABLE memberships ADD COLUMN invite_link_name TEXT;
ALTER TABLE memberships ADD COLUMN left_reason TEXT CHECK (left_reason IS NULL OR left_reason IN ('leave', 'kick', 'kick_me', 'manual'));

-- Messages per member, group and local day.
CREATE TABLE member_daily_activity (
    member_id BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    group_id  BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    day       DATE NOT NULL,
    messages  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (member_id, group_id, day)
);

CREATE TABLE checkin_rules (
    group_id           BIGINT PRIMARY KEY REFERENCES groups (id) ON DELETE CASCADE,
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    keywords           TEXT[] NOT NULL DEFAULT ARRAY['签到', '打卡', '/checkin'],
    points             INTEGER NOT NULL DEFAULT 1 CHECK (points BETWEEN 0 AND 100000),
    -- [{"day": 7, "points": 5}, {"day": 30, "points": 20}]
    streak_bonuses     JSONB NOT NULL DEFAULT '[{"day": 7, "points": 5}, {"day": 30, "points": 20}]',
    day_start_hour     INTEGER NOT NULL DEFAULT 0 CHECK (day_start_hour BETWEEN 0 AND 23),
    makeup_enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    makeup_keyword     TEXT NOT NULL DEFAULT '补签',
    makeup_cost        INTEGER NOT NULL DEFAULT 5 CHECK (makeup_cost BETWEEN 0 AND 100000),
    makeup_days_back   INTEGER NOT NULL DEFAULT 3 CHECK (makeup_days_back BETWEEN 1 AND 30),
    makeup_per_month   INTEGER NOT NULL DEFAULT 2 CHECK (makeup_per_month BETWEEN 0 AND 31),
    reply_lang         TEXT NOT NULL DEFAULT 'zh-CN' CHECK (reply_lang IN ('en', 'zh-CN')),
    reply_zh           TEXT NOT NULL DEFAULT '{name} 签到成功！连续 {streak} 天，累计 {total_days} 天，+{points} 积分，余额 {balance}。今日第 {rank_today} 名。',
    reply_en           TEXT NOT NULL DEFAULT '{name} checked in! Streak {streak} days, {total_days} days in all, +{points} points, balance {balance}. #{rank_today} today.',
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- At most one check-in per member, group and local day: the database says so.
CREATE TABLE checkins (
    id         BIGSERIAL PRIMARY KEY,
    member_id  BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    group_id   BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    day        DATE NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    streak     INTEGER NOT NULL CHECK (streak >= 1),
    makeup     BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (member_id, group_id, day)
);
CREATE INDEX checkins_group_day_idx ON checkins (group_id, day, at);

-- Points: the balance is kept beside the append-only ledger in the same transaction and can
-- never go negative.
CREATE TABLE points_accounts (
    member_id  BIGINT PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
    balance    BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE points_ledger (
    id              BIGSERIAL PRIMARY KEY,
    member_id       BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    delta           BIGINT NOT NULL CHECK (delta <> 0),
    kind            TEXT NOT NULL CHECK (kind IN ('checkin', 'streak_bonus', 'makeup', 'adjustment', 'invite', 'redemption', 'refund', 'expiry', 'api')),
    reference       TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT NOT NULL UNIQUE,
    -- The request that produced an API entry, to tell a replay from a conflicting reuse of a key.
    request_hash    TEXT,
    operator_id     BIGINT REFERENCES operators (id),
    note            TEXT NOT NULL DEFAULT '',
    at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX points_ledger_member_idx ON points_ledger (member_id, at DESC);

-- The ledger is append-only: no update ever, and no delete except when a member is deleted
-- (the foreign key's cascade, which runs one trigger level down).
CREATE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'points_ledger is append-only';
END $$;
CREATE TRIGGER points_ledger_no_update BEFORE UPDATE OR DELETE ON points_ledger
    FOR EACH ROW EXECUTE FUNCTION points_ledger_append_only();
