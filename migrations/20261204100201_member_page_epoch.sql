-- The member's own page (/m/{token}): links carry the epoch they were made in; raising it
-- revokes every link given out so far.
ALTER TABLE members ADD COLUMN page_epoch INTEGER NOT NULL DEFAULT 0 CHECK (page_epoch >= 0);
