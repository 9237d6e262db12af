-- Member and group search at a million members. `ILIKE '%…%'` reads every row unless a trigram
-- index can answer it: pg_trgm ships with PostgreSQL (Debian: the postgresql package's contrib
-- part) and is a trusted extension, so a database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One index for the member search: the store's condition is this expression ILIKE the pattern,
-- rechecked against each column on its own, so a match never spans the two. One index instead
-- of two keeps the cost of a new member (a bridge's first message) low.
CREATE INDEX members_search_trgm ON members USING GIN ((display_name || ' ' || external_user_id) gin_trgm_ops);

-- The member list's order (name, then id): pages continue from a (name, id) key instead of an
-- OFFSET, and the first page reads 50 index entries instead of sorting every member.
CREATE INDEX members_name_idx ON members (display_name, id);

-- Groups are few, but their search matched three columns with a sequential scan.
CREATE INDEX groups_search_trgm ON groups USING GIN ((name || ' ' || coalesce(external_chat_id, '') || ' ' || notes) gin_trgm_ops);
