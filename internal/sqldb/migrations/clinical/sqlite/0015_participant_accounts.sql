-- A participant's invitation to an account of their own (ACL-05): the
-- setup link (account_tokens, by its hash) of the invited account names the
-- participant whose own account it becomes when the link is accepted, at
-- which point the account receives the participant role at the
-- participant's site and the self relation to the participant.
CREATE TABLE participant_invitations (
	token_hash     TEXT PRIMARY KEY REFERENCES account_tokens (token_hash),
	org_id         TEXT NOT NULL,
	participant_id TEXT NOT NULL,
	account_id     TEXT NOT NULL REFERENCES accounts (id),
	invited_by     TEXT NOT NULL REFERENCES accounts (id),
	created_at     BIGINT NOT NULL,
	FOREIGN KEY (org_id, participant_id) REFERENCES participants (org_id, id)
);
CREATE INDEX participant_invitations_participant ON participant_invitations (org_id, participant_id);
