-- Fission: personal invite codes, invite campaigns (任务宝), invite records with their hold
-- period, pending referrals from live-code scans, and the rewards paid for stages.

-- A member's personal invite code: 10 characters of an alphabet without look-alikes (0/o, 1/l/i),
-- taken from the random bytes of a v4 UUID (the bytes that carry no version or variant bits):
-- about 49 bits, so that codes cannot be walked. Stable: set once, never changed.
CREATE FUNCTION shoal_invite_code() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT string_agg(substr('abcdefghjkmnpqrstuvwxyz23456789', (get_byte(r.b, i) % 31) + 1, 1), '' ORDER BY i)
    FROM (SELECT uuid_send(gen_random_uuid()) AS b) r, unnest(ARRAY[0, 1, 2, 3, 4, 5, 9, 10, 11, 12]) AS i
$$;

-- Given on first use (`store::invites::code_of`), not at insert: members are created by the
-- one-statement check-in, which should not pay for a code and its index entry.
ALTER TABLE members ADD COLUMN invite_code TEXT;
ALTER TABLE members ADD CONSTRAINT members_invite_code_shape CHECK (invite_code ~ '^[a-z2-9]{10}$');
CREATE UNIQUE INDEX members_invite_code_key ON members (invite_code) WHERE invite_code IS NOT NULL;

CREATE TABLE campaigns (
    id                 BIGSERIAL PRIMARY KEY,
    name               TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- The groups it covers: joins into these groups are invites of the campaign.
    group_ids          BIGINT[] NOT NULL DEFAULT '{}',
    -- The live code whose link (`/l/{slug}?r={code}`) is the members' personal link.
    live_code_id       BIGINT REFERENCES live_codes (id) ON DELETE SET NULL,
    starts_at          TIMESTAMPTZ,
    ends_at            TIMESTAMPTZ,
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'ended')),
    hold_days          INTEGER NOT NULL DEFAULT 3 CHECK (hold_days BETWEEN 0 AND 60),
    -- A join of someone who was in any group within this many days is no new invite.
    rejoin_days        INTEGER NOT NULL DEFAULT 30 CHECK (rejoin_days BETWEEN 0 AND 365),
    -- [{"invites": 3, "points": 10, "tag": "ambassador"?}, …], ascending by invites (checked in Rust).
    stages             JSONB NOT NULL DEFAULT '[]',
    -- Points to the inviter's inviter per confirmed invite (0: none).
    level2_points      BIGINT NOT NULL DEFAULT 0 CHECK (level2_points BETWEEN 0 AND 1000000),
    poster_template_id BIGINT REFERENCES poster_templates (id) ON DELETE SET NULL,
    -- The bot's texts; empty: the built-in text in the group's reply language.
    reply_progress     TEXT NOT NULL DEFAULT '' CHECK (length(reply_progress) <= 500),
    reply_stage        TEXT NOT NULL DEFAULT '' CHECK (length(reply_stage) <= 500),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX campaigns_groups_idx ON campaigns USING GIN (group_ids);

-- Who brought whom, per campaign. One credited record (pending, flagged or confirmed) per
-- invitee and campaign, whatever the concurrency (the unique partial index); later claims are
-- kept as `not_credited` with their reason.
CREATE TABLE invite_records (
    id                 BIGSERIAL PRIMARY KEY,
    campaign_id        BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    inviter_member_id  BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    invitee_member_id  BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    -- The inviter's own credited inviter in the campaign when this record was written: the one
    -- level-2 beneficiary (a level 3 is never looked up).
    level2_member_id   BIGINT REFERENCES members (id) ON DELETE SET NULL,
    group_id           BIGINT REFERENCES groups (id) ON DELETE SET NULL,
    source             TEXT NOT NULL CHECK (source IN ('platform_link', 'platform_inviter', 'generic', 'scan')),
    invite_link_name   TEXT,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'reversed', 'flagged', 'rejected', 'not_credited')),
    -- Why it is not credited (not_credited) or why it waits for review (flagged).
    reason             TEXT CHECK (reason IN ('self_invite', 'already_credited', 'rejoin', 'burst', 'scan_many_codes', 'left', 'operator')),
    joined_at          TIMESTAMPTZ NOT NULL,
    hold_until         TIMESTAMPTZ NOT NULL,
    decided_at         TIMESTAMPTZ,
    decided_by         BIGINT REFERENCES operators (id) ON DELETE SET NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (inviter_member_id <> invitee_member_id OR state = 'not_credited')
);
CREATE UNIQUE INDEX invite_records_one_credit ON invite_records (campaign_id, invitee_member_id)
    WHERE state IN ('pending', 'flagged', 'confirmed');
CREATE INDEX invite_records_inviter_idx ON invite_records (campaign_id, inviter_member_id, state);
CREATE INDEX invite_records_invitee_idx ON invite_records (invitee_member_id, state);
CREATE INDEX invite_records_campaign_idx ON invite_records (campaign_id, id DESC);

-- A live-code scan carrying a personal code (`?r=`): a pending referral, matched to a later
-- join where the platform lets us (docs/ARCHITECTURE.md, "Invites").
CREATE TABLE invite_referrals (
    id                BIGSERIAL PRIMARY KEY,
    inviter_member_id BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    live_code_id      BIGINT REFERENCES live_codes (id) ON DELETE CASCADE,
    group_id          BIGINT REFERENCES groups (id) ON DELETE SET NULL,
    -- The scanning client: a hash of its address and browser, never the address itself.
    client            TEXT NOT NULL CHECK (length(client) <= 64),
    scanned_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    matched_record_id BIGINT REFERENCES invite_records (id) ON DELETE SET NULL
);
CREATE INDEX invite_referrals_group_idx ON invite_referrals (group_id, scanned_at) WHERE matched_record_id IS NULL;
CREATE INDEX invite_referrals_client_idx ON invite_referrals (client, scanned_at);

-- Rewards paid by a campaign: one row per stage reached (or level-2 invitee) and round. A
-- reversal keeps the row, marks it and points at its compensating ledger entry; reaching the
-- stage again pays a new round.
CREATE TABLE invite_rewards (
    id                  BIGSERIAL PRIMARY KEY,
    campaign_id         BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    member_id           BIGINT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    level               SMALLINT NOT NULL CHECK (level IN (1, 2)),
    -- Level 1: the stage's invite count; level 2: the invitee's member id.
    stage               BIGINT NOT NULL,
    round               INTEGER NOT NULL DEFAULT 1 CHECK (round >= 1),
    points              BIGINT NOT NULL CHECK (points >= 0),
    tag                 TEXT,
    entry_id            BIGINT,
    reversed_at         TIMESTAMPTZ,
    reversal_entry_id   BIGINT,
    -- Points a reversal could not take back because the balance had been spent (floored at 0).
    shortfall           BIGINT NOT NULL DEFAULT 0 CHECK (shortfall >= 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, member_id, level, stage, round)
);
CREATE UNIQUE INDEX invite_rewards_active ON invite_rewards (campaign_id, member_id, level, stage) WHERE reversed_at IS NULL;
