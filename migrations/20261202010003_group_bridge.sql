-- A group linked to a chat from a bridge's unlinked chats belongs to that bridge: deliveries for
-- the same chat id from another bridge stay unlinked chats of that bridge and never reach the
-- group. NULL: the chat id was set by an admin on the group form, and any bridge of the group's
-- platform may deliver for it.
ALTER TABLE groups ADD COLUMN bridge_id BIGINT REFERENCES bridges (id) ON DELETE SET NULL;
