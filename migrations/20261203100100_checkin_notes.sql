-- What a member wrote after the check-in keyword ("打卡 今天跑了5公里"), and the number with a
-- unit found in it (5, 'km'), for goals later. The unit is one of domain::checkin::Unit.
ALTER TABLE checkins ADD COLUMN note TEXT CHECK (note IS NULL OR length(note) BETWEEN 1 AND 500);
ALTER TABLE checkins ADD COLUMN quantity NUMERIC CHECK (quantity IS NULL OR (quantity >= 0 AND quantity < 1000000000));
ALTER TABLE checkins ADD COLUMN unit TEXT
    CHECK (unit IS NULL OR unit IN ('km', 'm', 'h', 'min', 'page', 'step', 'rep', 'kg', 'kcal'));
ALTER TABLE checkins ADD CONSTRAINT checkins_quantity_has_unit CHECK ((quantity IS NULL) = (unit IS NULL));

-- The check-ins API pages a group's check-ins by id.
CREATE INDEX checkins_group_id_idx ON checkins (group_id, id);
