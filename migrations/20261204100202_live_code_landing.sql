-- Live-code landing pages become the operator's: a title, a short text, the page's language
-- (NULL: the visitor's browser decides, as for codes made before), the texts shown while the
-- code is paused or has ended (the "full" text is the fallback message), and a logo.
ALTER TABLE live_codes
    ADD COLUMN page_lang   TEXT CHECK (page_lang IS NULL OR page_lang IN ('en', 'zh-CN')),
    ADD COLUMN page_title  TEXT NOT NULL DEFAULT '' CHECK (length(page_title) <= 60),
    ADD COLUMN page_text   TEXT NOT NULL DEFAULT '' CHECK (length(page_text) <= 300),
    ADD COLUMN paused_text TEXT NOT NULL DEFAULT '' CHECK (length(paused_text) <= 300),
    ADD COLUMN ended_text  TEXT NOT NULL DEFAULT '' CHECK (length(ended_text) <= 300);

CREATE TABLE live_code_logos (
    live_code_id BIGINT PRIMARY KEY REFERENCES live_codes (id) ON DELETE CASCADE,
    content_type TEXT NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg')),
    bytes        BYTEA NOT NULL,
    sha256       TEXT NOT NULL,
    uploaded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
