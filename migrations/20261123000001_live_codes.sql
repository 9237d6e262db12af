-- Live codes (活码): one permanent link/QR routed to groups with room, exactly.

-- Per-installation secrets shared by every Shoal process (cookie signing keys).
CREATE TABLE app_secrets (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE live_codes (
    id               BIGSERIAL PRIMARY KEY,
    slug             TEXT NOT NULL CHECK (slug ~ '^[A-Za-z0-9_-]{3,64}$'),
    name             TEXT NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 120),
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    starts_at        TIMESTAMPTZ,
    ends_at          TIMESTAMPTZ,
    mode             TEXT NOT NULL DEFAULT 'fill' CHECK (mode IN ('fill', 'balance')),
    sticky_days      INTEGER NOT NULL DEFAULT 7 CHECK (sticky_days BETWEEN 0 AND 365),
    fallback_kind    TEXT NOT NULL DEFAULT 'none' CHECK (fallback_kind IN ('none', 'url', 'image')),
    fallback_url     TEXT CHECK (fallback_url IS NULL OR fallback_url ~ '^https?://'),
    fallback_message TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at)
);
CREATE UNIQUE INDEX live_codes_slug_key ON live_codes (lower(slug));

-- The fallback image (owner or customer-service QR), replaced in place.
CREATE TABLE live_code_fallback_images (
    live_code_id BIGINT PRIMARY KEY REFERENCES live_codes (id) ON DELETE CASCADE,
    content_type TEXT NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg')),
    bytes        BYTEA NOT NULL,
    sha256       TEXT NOT NULL,
    uploaded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A target: a group behind a live code. `used` counts slots taken out of the target, by scans or
-- by a process reserving a block of slots; it never exceeds `scan_limit` at the moment of taking
-- (the conditional UPDATE in store::live_codes::reserve), so a target never admits more scans
-- than its limit, however many processes share the database.
CREATE TABLE live_code_targets (
    id           BIGSERIAL PRIMARY KEY,
    live_code_id BIGINT NOT NULL REFERENCES live_codes (id) ON DELETE CASCADE,
    group_id     BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    scan_limit   INTEGER NOT NULL CHECK (scan_limit >= 0),
    used         INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    -- Bumped when an operator resets the counter, so that blocks reserved before the reset are
    -- not given back into the new count.
    generation   INTEGER NOT NULL DEFAULT 0,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (live_code_id, group_id)
);
CREATE INDEX live_code_targets_code_idx ON live_code_targets (live_code_id, position);

CREATE TABLE live_code_channels (
    id           BIGSERIAL PRIMARY KEY,
    live_code_id BIGINT NOT NULL REFERENCES live_codes (id) ON DELETE CASCADE,
    key          TEXT NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9_-]{0,47}$'),
    name         TEXT NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 120),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (live_code_id, key)
);

-- One row per scan, written in batches (COPY) off the response path. `target_id` NULL = fallback.
-- Append-only and read rarely (statistics come from the tables below), so only a BRIN index on
-- time: cheap to keep up at tens of thousands of rows a second.
CREATE TABLE scan_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1000),
    at           TIMESTAMPTZ NOT NULL,
    live_code_id BIGINT NOT NULL,
    channel      TEXT NOT NULL DEFAULT '',
    target_id    BIGINT,
    group_id     BIGINT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('new', 'sticky', 'fallback', 'preview', 'long_press')),
    visitor      TEXT NOT NULL,
    ref          TEXT NOT NULL DEFAULT '',
    ua_class     TEXT NOT NULL,
    ip_anon      TEXT NOT NULL
);
CREATE INDEX scan_events_at_brin ON scan_events USING BRIN (at);

-- Pre-aggregated daily counters (days in scan.stats_timezone) that statistics pages read.
CREATE TABLE scan_daily (
    live_code_id BIGINT NOT NULL REFERENCES live_codes (id) ON DELETE CASCADE,
    day          DATE NOT NULL,
    channel      TEXT NOT NULL DEFAULT '',
    target_id    BIGINT NOT NULL DEFAULT 0,
    outcome      TEXT NOT NULL,
    scans        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (live_code_id, day, channel, target_id, outcome)
);

-- Unique visitors per live code, day and channel as HyperLogLog registers (domain::hll):
-- merged per batch, and over any date range at read time.
CREATE TABLE scan_daily_uniques (
    live_code_id BIGINT NOT NULL REFERENCES live_codes (id) ON DELETE CASCADE,
    day          DATE NOT NULL,
    channel      TEXT NOT NULL DEFAULT '',
    registers    BYTEA NOT NULL,
    PRIMARY KEY (live_code_id, day, channel)
);

-- Operator alerts: one webhook URL for the installation, a record per condition so that each
-- fires once, and a delivery log.
CREATE TABLE alert_settings (
    id          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    webhook_url TEXT CHECK (webhook_url IS NULL OR webhook_url ~ '^https?://'),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO alert_settings (id) VALUES (TRUE);

CREATE TABLE alerts (
    id           BIGSERIAL PRIMARY KEY,
    condition    TEXT NOT NULL CHECK (condition IN ('expiring_soon', 'nearly_full', 'exhausted')),
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('target', 'live_code')),
    subject_id   BIGINT NOT NULL,
    -- A condition fires again only after it has cleared (cleared_at set) and come back.
    raised_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    cleared_at   TIMESTAMPTZ,
    payload      JSONB NOT NULL
);
CREATE UNIQUE INDEX alerts_open_key ON alerts (condition, subject_kind, subject_id) WHERE cleared_at IS NULL;

CREATE TABLE alert_deliveries (
    id          BIGSERIAL PRIMARY KEY,
    alert_id    BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_code INTEGER,
    error       TEXT,
    succeeded   BOOLEAN NOT NULL
);
CREATE INDEX alert_deliveries_at_idx ON alert_deliveries (at DESC);
