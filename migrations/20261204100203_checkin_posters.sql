-- "Day N" check-in posters: a group that names a poster template gets a poster with each
-- check-in's reply; `poster_text` fills the template's `{campaign}` line.
ALTER TABLE checkin_rules
    ADD COLUMN poster_template_id BIGINT REFERENCES poster_templates (id) ON DELETE SET NULL,
    ADD COLUMN poster_text        TEXT NOT NULL DEFAULT '' CHECK (length(poster_text) <= 60);
