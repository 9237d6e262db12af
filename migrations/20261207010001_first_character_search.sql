-- A one-character member search for a character common at the start of names had no plan that
-- was fast in name order. 张, the first character of a tenth of all members, read every name
-- sorting before 张 when walking the name order (0.6 s at a million), or every match when read
-- through `members_search_short` and sorted (100 000 rows, 0.5 s); 静, the second character of
-- a tenth, read the 9 % of names before the first 静 in their surname's block (0.2 s). Names
-- are ordered by their first characters, so matches there come in blocks; further in they
-- spread out. Now the first and the second character of a name each have an index in name
-- order (`members_first_char`, `members_second_char`), and `members_search_short` holds the
-- rest: every one- and two-character piece except the name's first two characters on their
-- own. The store asks the three and merges them.
DROP INDEX members_search_short;
DROP FUNCTION shoal_short_grams(text);

CREATE FUNCTION shoal_short_grams(display_name text, external_user_id text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    -- lower() maps character to character, so positions are the name's own.
    t text := lower(display_name || ' ' || external_user_id);
    n int := char_length(t);
    own int := least(char_length(display_name), 2);
    grams text[] := '{}';
BEGIN
    FOR i IN 1..n LOOP
        IF i > own THEN
            grams := grams || substr(t, i, 1);
        END IF;
        IF i < n THEN
            grams := grams || substr(t, i, 2);
        END IF;
    END LOOP;
    RETURN grams;
END
$$;

CREATE INDEX members_search_short ON members USING GIN (shoal_short_grams(display_name, external_user_id));
-- Not partial (deleted members are few): the planner keeps statistics of an index's expressions
-- only for an index without a WHERE, and without them it took 张 for 0.5 % of the members.
CREATE INDEX members_first_char ON members (lower(left(display_name, 1)), display_name, id);
CREATE INDEX members_second_char ON members (lower(substr(display_name, 2, 1)), display_name, id);
