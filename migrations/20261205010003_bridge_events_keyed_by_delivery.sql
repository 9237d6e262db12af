-- A delivery's log row is found by its key (bridge, dedupe key), which was unique already; the
-- serial id and its index were one more index entry and sequence step per group message, every
-- insert landing on the same rightmost index page. The key becomes the primary key.
ALTER TABLE bridge_events
    DROP CONSTRAINT bridge_events_pkey,
    DROP COLUMN id,
    DROP CONSTRAINT bridge_events_bridge_id_dedupe_key_key,
    ADD CONSTRAINT bridge_events_pkey PRIMARY KEY (bridge_id, dedupe_key);
