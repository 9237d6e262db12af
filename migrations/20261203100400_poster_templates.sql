-- Poster templates (海报模板) and the public links of personal posters.
--
-- A template belongs to one group (seen and changed by the operators of that group) or to no
-- group (shared: seen by everyone, changed only by operators with every group). Every change
-- bumps `version`, which names the template's cached drawings (static layer, finished posters).
CREATE TABLE poster_templates (
    id                BIGSERIAL PRIMARY KEY,
    name              TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    group_id          BIGINT REFERENCES groups (id) ON DELETE CASCADE,
    version           INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- The checked layout: canvas size, background colour, elements (poster::template::Layout).
    layout            JSONB NOT NULL,
    -- The background image, re-encoded (no metadata), or none.
    background        BYTEA,
    background_type   TEXT CHECK (background_type IN ('image/png', 'image/jpeg')),
    background_sha256 TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((background IS NULL) = (background_type IS NULL))
);
CREATE INDEX poster_templates_group_idx ON poster_templates (group_id);

-- A public, revocable link to one poster: /p/{token}. Only the SHA-256 of the token is kept.
-- With a member, the poster shows the member's current name; `name` is the name it was made
-- with (and the one shown when there is no member).
CREATE TABLE poster_links (
    id          BIGSERIAL PRIMARY KEY,
    token_hash  BYTEA NOT NULL UNIQUE,
    template_id BIGINT NOT NULL REFERENCES poster_templates (id) ON DELETE CASCADE,
    member_id   BIGINT REFERENCES members (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    qr_url      TEXT NOT NULL,
    -- Placeholder values: {"campaign": "…", "invites": "3", …}
    vars        JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX poster_links_template_idx ON poster_links (template_id, id);
CREATE INDEX poster_links_member_idx ON poster_links (member_id) WHERE member_id IS NOT NULL;
