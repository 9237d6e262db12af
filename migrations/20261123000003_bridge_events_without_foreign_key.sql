-- Every delivery writes a bridge_events row. With a foreign key to bridges, each of those
-- transactions locked the bridge's one row (FOR KEY SHARE): concurrent deliveries of a bridge
-- turned that lock into a new MultiXact per delivery and queued on the row's page. The events
-- now go with their bridge through a statement trigger instead, which locks nothing per event.
ALTER TABLE bridge_events DROP CONSTRAINT bridge_events_bridge_id_fkey;

CREATE FUNCTION bridge_events_follow_bridge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM bridge_events e USING gone g WHERE e.bridge_id = g.id;
    RETURN NULL;
END $$;
CREATE TRIGGER bridges_delete_events AFTER DELETE ON bridges
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION bridge_events_follow_bridge();
