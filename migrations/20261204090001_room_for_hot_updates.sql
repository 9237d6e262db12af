-- Every group message refreshes its member (`last_active_at`, `updated_at`), the day's message
-- count, and a check-in also the group's day counter. None of those columns is indexed, so
-- PostgreSQL can update the row in place on its page (a HOT update: no new entry in any index,
-- including the trigram and name indexes of `members`) — but only when the page has room for the
-- new version. With the default fill factor of 100 a loaded page has none, and each message
-- wrote a new entry into every index of `members`. Leave room on new pages.
ALTER TABLE members SET (fillfactor = 80);
ALTER TABLE member_daily_activity SET (fillfactor = 80);
ALTER TABLE checkin_days SET (fillfactor = 50);
ALTER TABLE memberships SET (fillfactor = 90);
