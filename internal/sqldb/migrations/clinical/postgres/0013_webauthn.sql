-- WebAuthn passkeys and security keys (AUTH-08). An account may hold
-- several; any one of them is a second factor. credential_id is the
-- authenticator's id of the credential, unique across all accounts;
-- public_key is its COSE public key (public, so stored as is). sign_count
-- is the authenticator's signature counter last seen: an assertion whose
-- counter does not move past it (when either is not zero) comes from a
-- cloned authenticator and is refused. aaguid names the authenticator's
-- model; transports is a space-separated list of how the browser reaches
-- it. backup_eligible and backup_state are the flags the authenticator
-- reported (a synced passkey is eligible for backup). Times are Unix
-- microseconds.
CREATE TABLE webauthn_credentials (
	id                 TEXT PRIMARY KEY,
	account_id         TEXT NOT NULL REFERENCES accounts (id),
	credential_id      BYTEA NOT NULL UNIQUE,
	public_key         BYTEA NOT NULL,
	attestation_type   TEXT NOT NULL,
	attestation_format TEXT NOT NULL,
	aaguid             BYTEA NOT NULL,
	sign_count         BIGINT NOT NULL DEFAULT 0 CHECK (sign_count >= 0),
	transports         TEXT NOT NULL DEFAULT '',
	user_verified      BOOLEAN NOT NULL,
	backup_eligible    BOOLEAN NOT NULL,
	backup_state       BOOLEAN NOT NULL,
	name               TEXT NOT NULL,
	created_at         BIGINT NOT NULL,
	last_used_at       BIGINT
);
CREATE INDEX webauthn_credentials_account ON webauthn_credentials (account_id);

-- The server's half of a WebAuthn ceremony: the options it handed the
-- browser (state, as JSON, holding the random challenge), kept until the
-- answer comes back, for five minutes, and spent once (used_at). A
-- registration ('register') is bound to the session that began it, a
-- second sign-in step ('sign-in') to its login challenge.
CREATE TABLE webauthn_ceremonies (
	id           TEXT PRIMARY KEY,
	account_id   TEXT NOT NULL REFERENCES accounts (id),
	kind         TEXT NOT NULL CHECK (kind IN ('register', 'sign-in')),
	session_id   TEXT,
	challenge_id TEXT,
	state        TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	used_at      BIGINT,
	CHECK ((kind = 'register' AND session_id IS NOT NULL AND challenge_id IS NULL)
	    OR (kind = 'sign-in' AND challenge_id IS NOT NULL AND session_id IS NULL))
);
CREATE INDEX webauthn_ceremonies_account ON webauthn_ceremonies (account_id, kind);
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies (expires_at);
