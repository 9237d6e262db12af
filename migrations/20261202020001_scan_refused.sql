-- A new visitor turned away by the per-address limit on new slots (scan.new_scans_per_address)
-- is recorded as outcome 'refused'. NOT VALID: the new list only adds a value, so the rows
-- already there need no re-check (which would read the whole table).
ALTER TABLE scan_events DROP CONSTRAINT scan_events_outcome_check;
ALTER TABLE scan_events ADD CONSTRAINT scan_events_outcome_check
    CHECK (outcome IN ('new', 'sticky', 'fallback', 'preview', 'long_press', 'refused')) NOT VALID;
