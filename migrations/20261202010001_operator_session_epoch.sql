-- Sessions end when their operator's password changes: each session remembers the epoch it was
-- logged in under, and a password change (own or an admin's reset) moves the epoch on, so every
-- other session of that operator is logged out on its next request.
ALTER TABLE operators ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
