-- WebAuthn ceremonies say in their kind what they are, instead of in a
-- prefix of the id they are bound to (AUTH-08, ACL-09). A registration is
-- bound to the session that registers ('register', session_id) or, for a
-- passkey set up while signing in, to the enrolment challenge ('enrol',
-- challenge_id); an assertion to the sign-in challenge it answers
-- ('sign-in', challenge_id) or, for a step-up, to the session that confirms
-- ('step-up', session_id). Each kind carries its own column and not the
-- other, so a ceremony of one kind can never be read as one of another.
--
-- The table is made anew: its rows are ceremonies in progress, each kept
-- for five minutes at most, so dropping them on upgrade costs a person no
-- more than starting the passkey step again.
DROP TABLE webauthn_ceremonies;

CREATE TABLE webauthn_ceremonies (
	id           TEXT PRIMARY KEY,
	account_id   TEXT NOT NULL REFERENCES accounts (id),
	kind         TEXT NOT NULL CHECK (kind IN ('register', 'enrol', 'sign-in', 'step-up')),
	session_id   TEXT,
	challenge_id TEXT,
	state        TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	used_at      BIGINT,
	CHECK ((kind IN ('register', 'step-up') AND session_id IS NOT NULL AND challenge_id IS NULL)
	    OR (kind IN ('enrol', 'sign-in') AND challenge_id IS NOT NULL AND session_id IS NULL))
);
CREATE INDEX webauthn_ceremonies_account ON webauthn_ceremonies (account_id, kind);
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies (expires_at);
