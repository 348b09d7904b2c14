-- The recovery of a member who lost every second factor and recovery code
-- (ASVS V6.4.4): an administrator of an organization of theirs starts it,
-- the person proves control of their e-mail address and their password
-- through the one-time link (account_tokens, by its hash) e-mailed to it,
-- and a second administrator approves. When both have happened, the
-- account's factors and recovery codes are removed and its sessions end,
-- and the person enrols a factor anew at their next sign-in. A recovery
-- keeps its row, with how it ended.
CREATE TABLE factor_recoveries (
	id            TEXT PRIMARY KEY,
	org_id        TEXT NOT NULL REFERENCES organizations (id),
	account_id    TEXT NOT NULL REFERENCES accounts (id),
	token_hash    TEXT NOT NULL UNIQUE REFERENCES account_tokens (token_hash),
	requested_by  TEXT NOT NULL REFERENCES accounts (id),
	requested_at  BIGINT NOT NULL,
	expires_at    BIGINT NOT NULL,
	proved_at     BIGINT,
	approved_by   TEXT REFERENCES accounts (id),
	approved_at   BIGINT,
	done_at       BIGINT,
	CHECK ((approved_by IS NULL) = (approved_at IS NULL)),
	CHECK (approved_by IS NULL OR (approved_by <> requested_by AND approved_by <> account_id))
);
CREATE INDEX factor_recoveries_org ON factor_recoveries (org_id, requested_at);
CREATE INDEX factor_recoveries_account ON factor_recoveries (account_id);
