-- Server-side sessions (AUTH-10). The cookie holds a random token; only its
-- SHA-256 is stored, so a copy of the database opens no session.
CREATE TABLE sessions (
	id           TEXT PRIMARY KEY,
	token_hash   TEXT NOT NULL UNIQUE,
	account_id   TEXT NOT NULL REFERENCES accounts (id),
	created_at   BIGINT NOT NULL,
	last_seen_at BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	revoked_at   BIGINT,
	remote_addr  TEXT NOT NULL,
	user_agent   TEXT NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);
