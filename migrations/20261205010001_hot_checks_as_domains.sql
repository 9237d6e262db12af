-- The single-column CHECK constraints of the tables every check-in writes become domains.
--
-- PostgreSQL reads a table's CHECK constraints from their stored text, plans them and prepares
-- them again in every statement that writes a row of the table: fourteen of them per check-in,
-- about a tenth of the database's CPU per check-in (docs/PERFORMANCE.md). A domain's constraint
-- is planned once per session (the type cache) and checked only where a value is converted to
-- the domain, that is where a statement assigns the column: a refreshed member whose name is
-- taken from `EXCLUDED` is not checked again, a balance that is added to is. The rules are the
-- same ones; a violation is the same error (check_violation), named after the domain.
--
-- Cross-column rules stay table constraints (`checkins_quantity_has_unit`, `memberships_check`).

CREATE DOMAIN platform_name AS text
    CHECK (VALUE IN ('wechat', 'qq', 'telegram', 'discord', 'whatsapp', 'other'));
CREATE DOMAIN member_display_name AS text CHECK (length(VALUE) <= 120);
CREATE DOMAIN member_external_id AS text CHECK (length(VALUE) BETWEEN 1 AND 128);
CREATE DOMAIN member_invite_code AS text CHECK (VALUE ~ '^[a-z2-9]{10}$');
CREATE DOMAIN nonnegative_int AS integer CHECK (VALUE >= 0);
CREATE DOMAIN positive_int AS integer CHECK (VALUE >= 1);
CREATE DOMAIN member_role AS text CHECK (VALUE IN ('owner', 'admin', 'member'));
CREATE DOMAIN membership_left_reason AS text CHECK (VALUE IN ('leave', 'kick', 'kick_me', 'manual'));
CREATE DOMAIN checkin_note AS text CHECK (length(VALUE) BETWEEN 1 AND 500);
CREATE DOMAIN checkin_quantity AS numeric CHECK (VALUE >= 0 AND VALUE < 1000000000);
CREATE DOMAIN checkin_unit AS text
    CHECK (VALUE IN ('km', 'm', 'h', 'min', 'page', 'step', 'rep', 'kg', 'kcal'));
CREATE DOMAIN points_delta AS bigint CHECK (VALUE <> 0);
CREATE DOMAIN ledger_kind AS text
    CHECK (VALUE IN ('checkin', 'streak_bonus', 'makeup', 'adjustment', 'invite', 'redemption', 'refund',
                     'expiry', 'api', 'forfeit'));
CREATE DOMAIN points_balance AS bigint CHECK (VALUE >= 0);

ALTER TABLE members
    DROP CONSTRAINT members_platform_check,
    DROP CONSTRAINT members_display_name_check,
    DROP CONSTRAINT members_external_user_id_check,
    DROP CONSTRAINT members_invite_code_shape,
    DROP CONSTRAINT members_page_epoch_check,
    ALTER COLUMN platform TYPE platform_name,
    ALTER COLUMN display_name TYPE member_display_name,
    ALTER COLUMN external_user_id TYPE member_external_id,
    ALTER COLUMN invite_code TYPE member_invite_code,
    ALTER COLUMN page_epoch TYPE nonnegative_int;

ALTER TABLE memberships
    DROP CONSTRAINT memberships_role_check,
    DROP CONSTRAINT memberships_left_reason_check,
    ALTER COLUMN role TYPE member_role,
    ALTER COLUMN left_reason TYPE membership_left_reason;

ALTER TABLE checkins
    DROP CONSTRAINT checkins_streak_check,
    DROP CONSTRAINT checkins_note_check,
    DROP CONSTRAINT checkins_quantity_check,
    DROP CONSTRAINT checkins_unit_check,
    ALTER COLUMN streak TYPE positive_int,
    ALTER COLUMN note TYPE checkin_note,
    ALTER COLUMN quantity TYPE checkin_quantity,
    ALTER COLUMN unit TYPE checkin_unit;

ALTER TABLE checkin_days
    DROP CONSTRAINT checkin_days_checkins_check,
    ALTER COLUMN checkins TYPE nonnegative_int;

ALTER TABLE points_ledger
    DROP CONSTRAINT points_ledger_delta_check,
    DROP CONSTRAINT points_ledger_kind_check,
    ALTER COLUMN delta TYPE points_delta,
    ALTER COLUMN kind TYPE ledger_kind;

ALTER TABLE points_accounts
    DROP CONSTRAINT points_accounts_balance_check,
    ALTER COLUMN balance TYPE points_balance;
