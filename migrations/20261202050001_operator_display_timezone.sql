-- An operator's own display time zone for the admin UI (IANA name); NULL: the instance's
-- display_timezone setting.
ALTER TABLE operators ADD COLUMN display_timezone text;
