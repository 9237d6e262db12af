-- Bots that act: what Shoal sends through a bridge's own API (OneBot v11 HTTP API, Telegram Bot
-- API, the generic bridge's signed POST), how fast, and what came of each call.
--
-- The bridge's API address and credential already exist (`api_base_url`, `access_token`); their
-- meaning follows the kind:
--   onebot11  the HTTP API address (http://127.0.0.1:3000) and its access token;
--   telegram  the Bot API server (empty: https://api.telegram.org) and the bot token;
--   generic   the operator's endpoint actions are POSTed to (signed with the bridge's secret).

-- Rate limits per bridge: at most `*_rate_limit` calls in any `*_rate_window_ms`, per chat and
-- for the bot as a whole. NULL: the kind's default (Telegram 20 a minute per chat and 30 a
-- second per bot; QQ one a second per chat); 0: no limit.
ALTER TABLE bridges
    ADD COLUMN chat_rate_limit     INTEGER CHECK (chat_rate_limit BETWEEN 0 AND 10000),
    ADD COLUMN chat_rate_window_ms INTEGER CHECK (chat_rate_window_ms BETWEEN 100 AND 86400000),
    ADD COLUMN bot_rate_limit      INTEGER CHECK (bot_rate_limit BETWEEN 0 AND 10000),
    ADD COLUMN bot_rate_window_ms  INTEGER CHECK (bot_rate_window_ms BETWEEN 100 AND 86400000);

-- A linked chat whose bot cannot act in it any more (Telegram: "bot was kicked"). Cleared by the
-- next call that succeeds in the chat.
ALTER TABLE groups
    ADD COLUMN link_broken_at     TIMESTAMPTZ,
    ADD COLUMN link_broken_reason TEXT;

CREATE TYPE bot_call_outcome AS ENUM ('ok', 'failed', 'unknown');

-- Every outbound call, once it has an outcome. No foreign keys (like bridge_events): a key would
-- lock the bridge's one row for every call; a statement trigger removes a deleted bridge's rows.
CREATE TABLE bot_calls (
    id          BIGSERIAL PRIMARY KEY,
    bridge_id   BIGINT NOT NULL,
    job_id      BIGINT,
    -- The protocol-neutral action (send, delete, mute, kick, join_request, member_count, webhook…)
    action      TEXT NOT NULL,
    -- The protocol's own method (send_group_msg, sendMessage, …).
    method      TEXT NOT NULL,
    chat_id     TEXT,
    -- The user or message acted on, when there is one.
    target      TEXT,
    outcome     bot_call_outcome NOT NULL,
    -- The HTTP status, when an answer came.
    status_code INTEGER,
    error       TEXT,
    -- What the platform returned worth keeping (the id of a sent message, a member count).
    result      TEXT,
    latency_ms  INTEGER NOT NULL CHECK (latency_ms >= 0),
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bot_calls_bridge_idx ON bot_calls (bridge_id, id DESC);
CREATE INDEX bot_calls_failures_idx ON bot_calls (bridge_id, id DESC) WHERE outcome <> 'ok';
CREATE INDEX bot_calls_at_idx ON bot_calls (at);

-- The rate limiters, shared by every Shoal process: per (bridge, chat), and per bridge with
-- chat_id ''. A sliding window over the calls' *ends*: each grant adds the time by which its
-- call is surely over (grant + the bot timeout, `hold`), replaced by the time the call really
-- ended once it has (`outbound_release`). A new call may start when fewer than `limit` calls
-- ended (or may still end) within the window before it. Since a call reaches the platform
-- between its start and its end, no window of that length at the platform ever sees more than
-- `limit` calls — however long a call took or waited between its grant and its request, and
-- even when its process died mid-call (its entry then keeps the pessimistic time).
CREATE TABLE outbound_limits (
    bridge_id     BIGINT NOT NULL,
    chat_id       TEXT NOT NULL,
    grants        TIMESTAMPTZ[] NOT NULL DEFAULT '{}',
    -- Not before this time, whatever the window says (the platform asked to wait: 429).
    blocked_until TIMESTAMPTZ,
    PRIMARY KEY (bridge_id, chat_id)
);

-- Takes one call's place in the bot's and the chat's windows, both or neither, atomically
-- across processes. A limit of 0 is no limit. Returns (true, hold) when the call may go now
-- (`hold` identifies its entries for `outbound_release`), else (false, the earliest time it
-- may): the job is put back until then, never slept on. The rows are locked in one order (the
-- bot's '' first), and the time is read after the locks are held.
CREATE FUNCTION outbound_take(p_bridge BIGINT, p_chat TEXT, p_chat_limit INTEGER, p_chat_window_ms INTEGER,
                              p_bot_limit INTEGER, p_bot_window_ms INTEGER, p_hold_ms INTEGER)
RETURNS TABLE (granted BOOLEAN, at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
DECLARE
    keys  TEXT[] := '{}';
    lims  INTEGER[] := '{}';
    wins  INTERVAL[] := '{}';
    t     TIMESTAMPTZ;
    hold  TIMESTAMPTZ;
    wait  TIMESTAMPTZ;
    g     TIMESTAMPTZ[];
    b     TIMESTAMPTZ;
    c     INTEGER;
    e     TIMESTAMPTZ;
    n     INTEGER;
BEGIN
    IF p_bot_limit > 0 THEN
        keys := keys || ''::text; lims := lims || p_bot_limit; wins := wins || p_bot_window_ms * interval '1 millisecond';
    END IF;
    IF p_chat_limit > 0 AND p_chat <> '' THEN
        keys := keys || p_chat; lims := lims || p_chat_limit; wins := wins || p_chat_window_ms * interval '1 millisecond';
    END IF;
    n := cardinality(keys);
    IF n = 0 THEN
        RETURN QUERY SELECT true, NULL::timestamptz;
        RETURN;
    END IF;
    INSERT INTO outbound_limits (bridge_id, chat_id)
        SELECT p_bridge, k FROM unnest(keys) k ON CONFLICT DO NOTHING;
    PERFORM 1 FROM outbound_limits WHERE bridge_id = p_bridge AND chat_id = ANY (keys) ORDER BY chat_id FOR UPDATE;
    t := clock_timestamp();
    hold := t + p_hold_ms * interval '1 millisecond';
    FOR i IN 1..n LOOP
        SELECT l.grants, l.blocked_until INTO g, b FROM outbound_limits l WHERE l.bridge_id = p_bridge AND l.chat_id = keys[i];
        IF b > t THEN
            wait := GREATEST(wait, b);
        END IF;
        -- Calls that ended (or may still end) within the window; one still running may end
        -- any moment, so it counts as ending now when working out the earliest next start.
        SELECT count(*), (array_agg(LEAST(x, t) ORDER BY LEAST(x, t) DESC))[lims[i]]
          INTO c, e FROM unnest(g) x WHERE x > t - wins[i];
        IF c >= lims[i] THEN
            wait := GREATEST(wait, e + wins[i]);
        END IF;
    END LOOP;
    IF wait IS NOT NULL THEN
        RETURN QUERY SELECT false, wait;
        RETURN;
    END IF;
    FOR i IN 1..n LOOP
        UPDATE outbound_limits l
           SET grants = ARRAY(SELECT x FROM unnest(l.grants) x WHERE x > t - wins[i]) || hold
         WHERE l.bridge_id = p_bridge AND l.chat_id = keys[i];
    END LOOP;
    RETURN QUERY SELECT true, hold;
END $$;

-- A granted call has ended: its entries take the time it ended instead of its pessimistic one.
CREATE FUNCTION outbound_release(p_bridge BIGINT, p_chat TEXT, p_hold TIMESTAMPTZ) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbound_limits SET grants = array_replace(grants, p_hold, clock_timestamp())
     WHERE bridge_id = p_bridge AND chat_id = '' AND p_hold = ANY (grants);
    IF p_chat <> '' THEN
        UPDATE outbound_limits SET grants = array_replace(grants, p_hold, clock_timestamp())
         WHERE bridge_id = p_bridge AND chat_id = p_chat AND p_hold = ANY (grants);
    END IF;
END $$;

CREATE FUNCTION bot_calls_follow_bridge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM bot_calls c USING gone g WHERE c.bridge_id = g.id;
    DELETE FROM outbound_limits l USING gone g WHERE l.bridge_id = g.id;
    RETURN NULL;
END $$;
CREATE TRIGGER bridges_delete_calls AFTER DELETE ON bridges
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION bot_calls_follow_bridge();
