-- An invitation of a person to an organization (ACL-02): the role it
-- offers is granted only when the person accepts, through the setup link
-- (account_tokens, by its hash) e-mailed to the address the inviter typed:
-- by choosing a password for a new account, or by giving the password of
-- the account the address has. Until then the organization sees only the
-- address and that it is invited, and its policy binds no one. A decided
-- invitation keeps its row, with the decision.
CREATE TABLE member_invitations (
	id          TEXT PRIMARY KEY,
	token_hash  TEXT NOT NULL UNIQUE REFERENCES account_tokens (token_hash),
	org_id      TEXT NOT NULL REFERENCES organizations (id),
	account_id  TEXT NOT NULL REFERENCES accounts (id),
	email       TEXT NOT NULL,
	role        TEXT NOT NULL,
	study_id    TEXT,
	site_id     TEXT,
	invited_by  TEXT NOT NULL REFERENCES accounts (id),
	created_at  BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL,
	decided_at  BIGINT,
	decision    TEXT CHECK (decision IN ('accepted', 'declined')),
	CHECK ((decided_at IS NULL) = (decision IS NULL))
);
CREATE INDEX member_invitations_org ON member_invitations (org_id, created_at);
CREATE INDEX member_invitations_account ON member_invitations (account_id);
