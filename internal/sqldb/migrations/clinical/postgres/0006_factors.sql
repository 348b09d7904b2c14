-- Second factors (AUTH-08). A TOTP factor's secret is stored only wrapped by
-- the key-encryption key named in kek_id, with associated data naming the
-- account and the factor id. A factor is pending (confirmed_at NULL) until
-- its first correct code; only a confirmed factor is asked for at sign-in.
-- last_step is the RFC 6238 time step of the last accepted code: a code is
-- accepted only for a strictly greater step, so no code is accepted twice.
-- Times are Unix microseconds.
CREATE TABLE account_factors (
	id           TEXT PRIMARY KEY,
	account_id   TEXT NOT NULL REFERENCES accounts (id),
	kind         TEXT NOT NULL CHECK (kind IN ('totp')),
	kek_id       TEXT NOT NULL,
	wrapped      BYTEA NOT NULL,
	last_step    BIGINT NOT NULL DEFAULT 0,
	created_at   BIGINT NOT NULL,
	confirmed_at BIGINT
);
CREATE UNIQUE INDEX account_factors_confirmed
	ON account_factors (account_id, kind) WHERE confirmed_at IS NOT NULL;
CREATE INDEX account_factors_account ON account_factors (account_id);

-- One-time recovery codes of an account with a second factor. Only the
-- SHA-256 of a code is stored; used_at is set when it is spent.
CREATE TABLE recovery_codes (
	id         TEXT PRIMARY KEY,
	account_id TEXT NOT NULL REFERENCES accounts (id),
	code_hash  TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	used_at    BIGINT,
	UNIQUE (account_id, code_hash)
);

-- Sign-in challenges: after a right password, an account with a second
-- factor (purpose 'second-factor') or one that an organization's policy
-- obliges to enrol one (purpose 'enrolment') gets a short-lived token instead
-- of a session. Only its SHA-256 is stored; it is bound to the account and
-- the source address, and used_at makes it single-use.
CREATE TABLE login_challenges (
	id          TEXT PRIMARY KEY,
	token_hash  TEXT NOT NULL UNIQUE,
	account_id  TEXT NOT NULL REFERENCES accounts (id),
	purpose     TEXT NOT NULL CHECK (purpose IN ('second-factor', 'enrolment')),
	remote_addr TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL,
	used_at     BIGINT
);
CREATE INDEX login_challenges_expires ON login_challenges (expires_at);

-- Organization policies (AUTH-09), enforced at each member's next sign-in.
-- A missing row is the default policy. The password columns are NULL where
-- the organization keeps the platform's default.
CREATE TABLE org_policies (
	org_id                  TEXT PRIMARY KEY REFERENCES organizations (id),
	require_second_factor   BOOLEAN NOT NULL DEFAULT FALSE,
	password_rotation_days  INTEGER CHECK (password_rotation_days > 0),
	password_min_length     INTEGER CHECK (password_min_length >= 8),
	password_require_mixed  BOOLEAN,
	updated_at              BIGINT NOT NULL
);
