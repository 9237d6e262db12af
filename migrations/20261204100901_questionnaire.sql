-- The questionnaire entry mode (入群问卷, issue 13 §5): a rule set's entry policy may ask
-- applicants questions. On Telegram the bot sends the applicant (through the request's
-- `user_chat_id`) a signed link to a Shoal page; answering approves the request. The answers
-- stay with the member (`join_request_answers`), shown on the member's page and in the queue.

ALTER TABLE rule_set_entry DROP CONSTRAINT rule_set_entry_mode_check;
ALTER TABLE rule_set_entry ADD CONSTRAINT rule_set_entry_mode_check
    CHECK (mode IN ('approve_all', 'keyword', 'manual', 'questionnaire'));
-- The questions of questionnaire mode, in order (`domain::questionnaire::MAX_QUESTIONS`).
ALTER TABLE rule_set_entry ADD COLUMN questions TEXT[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(questions) <= 10);

-- The questions a request was sent (the rule set may change while the applicant answers):
-- empty when none was sent.
ALTER TABLE join_requests ADD COLUMN questions TEXT[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(questions) <= 10);

-- An applicant's answers, one row per question, written with the approval in one transaction
-- (only while the request is pending, so a second submission writes nothing).
CREATE TABLE join_request_answers (
    join_request_id BIGINT NOT NULL REFERENCES join_requests (id) ON DELETE CASCADE,
    position        SMALLINT NOT NULL CHECK (position BETWEEN 0 AND 9),
    group_id        BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id       BIGINT REFERENCES members (id) ON DELETE SET NULL,
    question        TEXT NOT NULL CHECK (length(question) BETWEEN 1 AND 200),
    answer          TEXT NOT NULL CHECK (length(answer) BETWEEN 1 AND 500),
    answered_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (join_request_id, position)
);
CREATE INDEX join_request_answers_member_idx ON join_request_answers (member_id, answered_at DESC)
    WHERE member_id IS NOT NULL;
