-- Who owns a live code: the operator or API token that created it. A principal scoped to some
-- groups sees and changes the codes it owns (with or without targets) and, besides, codes whose
-- every target is one of its groups; a code with no targets is no longer everyone's.
-- Codes created before this migration have no owner: only admins, all-groups principals and
-- those whose groups cover every target see them.
ALTER TABLE live_codes
    ADD COLUMN owner_operator_id BIGINT REFERENCES operators (id) ON DELETE SET NULL,
    ADD COLUMN owner_token_id BIGINT REFERENCES api_tokens (id) ON DELETE SET NULL,
    ADD CHECK (owner_operator_id IS NULL OR owner_token_id IS NULL);
CREATE INDEX live_codes_owner_operator_idx ON live_codes (owner_operator_id) WHERE owner_operator_id IS NOT NULL;
CREATE INDEX live_codes_owner_token_idx ON live_codes (owner_token_id) WHERE owner_token_id IS NOT NULL;
