-- Member searches of one or two characters — a Chinese surname, a two-character name such as
-- 张伟 — have no trigram, so `members_search_trgm` cannot answer them, and a rare one read every
-- member (1.5 s at a million). This index holds every one- and two-character piece of a
-- member's name and id (lower-cased, the same text the trigram index covers): the store's
-- condition for a short search is that the pieces contain the search, rechecked against each
-- column on its own. pg_bigm would do the same but is not packaged by Debian.
CREATE FUNCTION shoal_short_grams(s text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    t text := lower(s);
    n int := char_length(t);
    grams text[] := '{}';
BEGIN
    FOR i IN 1..n LOOP
        grams := grams || substr(t, i, 1);
        IF i < n THEN
            grams := grams || substr(t, i, 2);
        END IF;
    END LOOP;
    RETURN grams;
END
$$;

CREATE INDEX members_search_short ON members USING GIN (shoal_short_grams(display_name || ' ' || external_user_id));
