-- Personal access tokens (AUTH-10): bearer secrets for the API that a
-- signed-in person creates for scripts. Only the SHA-256 of a token is
-- stored. scopes is a space-separated list ('read', 'read write'). A token
-- ends at expires_at (at most 365 days after created_at) or revoked_at.
-- Times are Unix microseconds.
CREATE TABLE access_tokens (
	id           TEXT PRIMARY KEY,
	token_hash   TEXT NOT NULL UNIQUE,
	account_id   TEXT NOT NULL REFERENCES accounts (id),
	name         TEXT NOT NULL,
	scopes       TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	last_used_at BIGINT,
	revoked_at   BIGINT
);
CREATE INDEX access_tokens_account ON access_tokens (account_id);

-- The organization security policy (AUTH-02, AUTH-09, AUTH-10) gains the
-- session limits; NULL keeps the platform's default.
ALTER TABLE org_policies ADD COLUMN session_idle_minutes INTEGER
	CHECK (session_idle_minutes BETWEEN 5 AND 60);
ALTER TABLE org_policies ADD COLUMN session_absolute_hours INTEGER
	CHECK (session_absolute_hours BETWEEN 1 AND 24);

-- When the account's password was last set, for rotation (AUTH-09).
ALTER TABLE accounts ADD COLUMN password_changed_at BIGINT;
UPDATE accounts SET password_changed_at = created_at WHERE password_hash IS NOT NULL;

-- Privilege epoch (AUTH-10): every change of an account's role assignments
-- counts it up, by trigger, whatever code path makes the change. A session
-- records the epoch it was made in; one from an older epoch is replaced by
-- a new session id at its next request.
ALTER TABLE accounts ADD COLUMN privilege_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN privilege_epoch BIGINT NOT NULL DEFAULT 0;
-- A session started with a password older than the rotation period allows
-- only changing the password and signing out.
ALTER TABLE sessions ADD COLUMN password_expired BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TRIGGER role_assignments_epoch_insert AFTER INSERT ON role_assignments
BEGIN UPDATE accounts SET privilege_epoch = privilege_epoch + 1 WHERE id = NEW.account_id; END;
CREATE TRIGGER role_assignments_epoch_update AFTER UPDATE ON role_assignments
BEGIN
	UPDATE accounts SET privilege_epoch = privilege_epoch + 1 WHERE id = OLD.account_id;
	UPDATE accounts SET privilege_epoch = privilege_epoch + 1 WHERE id = NEW.account_id;
END;
CREATE TRIGGER role_assignments_epoch_delete AFTER DELETE ON role_assignments
BEGIN UPDATE accounts SET privilege_epoch = privilege_epoch + 1 WHERE id = OLD.account_id; END;

-- Second factors (AUTH-08) gain kind 'sms': wrapped holds the phone number,
-- wrapped by the key-encryption key like a TOTP secret. SQLite cannot change
-- a CHECK constraint in place, so the table is rebuilt.
CREATE TABLE account_factors_next (
	id           TEXT PRIMARY KEY,
	account_id   TEXT NOT NULL REFERENCES accounts (id),
	kind         TEXT NOT NULL CHECK (kind IN ('totp', 'sms')),
	kek_id       TEXT NOT NULL,
	wrapped      BLOB NOT NULL,
	last_step    BIGINT NOT NULL DEFAULT 0,
	created_at   BIGINT NOT NULL,
	confirmed_at BIGINT
);
INSERT INTO account_factors_next (id, account_id, kind, kek_id, wrapped, last_step, created_at, confirmed_at)
	SELECT id, account_id, kind, kek_id, wrapped, last_step, created_at, confirmed_at FROM account_factors;
DROP TABLE account_factors;
ALTER TABLE account_factors_next RENAME TO account_factors;
CREATE UNIQUE INDEX account_factors_confirmed
	ON account_factors (account_id, kind) WHERE confirmed_at IS NOT NULL;
CREATE INDEX account_factors_account ON account_factors (account_id);

-- Codes sent by text message: six digits, valid five minutes, spent once
-- (used_at), dead after five wrong tries (attempts). A code is stored only
-- wrapped by the key-encryption key, bound to its account, factor and id.
-- purpose 'sign-in' codes answer a sign-in challenge; 'enrol' codes confirm
-- a new phone number.
CREATE TABLE sms_codes (
	id         TEXT PRIMARY KEY,
	account_id TEXT NOT NULL REFERENCES accounts (id),
	factor_id  TEXT NOT NULL,
	purpose    TEXT NOT NULL CHECK (purpose IN ('sign-in', 'enrol')),
	kek_id     TEXT NOT NULL,
	wrapped    BLOB NOT NULL,
	attempts   INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at    BIGINT
);
CREATE INDEX sms_codes_account ON sms_codes (account_id, expires_at);
