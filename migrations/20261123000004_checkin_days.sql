-- First check-ins per group and local day (make-ups not counted): the "#n today" a check-in
-- answers with. Kept by the statement that writes a check-in rather than counted each time,
-- which grew with every check-in of a busy group's day.
CREATE TABLE checkin_days (
    group_id BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    day      DATE NOT NULL,
    checkins INTEGER NOT NULL CHECK (checkins >= 0),
    PRIMARY KEY (group_id, day)
);
INSERT INTO checkin_days (group_id, day, checkins)
SELECT group_id, day, count(*) FROM checkins WHERE NOT makeup GROUP BY group_id, day;
