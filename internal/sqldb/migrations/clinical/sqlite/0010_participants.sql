-- Participants (CRY-09): the clinical database knows a participant only by
-- a random pseudonym (id, 128 bits), the site that enrolled them and the
-- state of their identifying data, which live in the identity database:
-- 'none' (none given), 'recorded', or 'erased' (LIFE-03: the participant's
-- key was destroyed; the pseudonymous record remains). The clinical database
-- is the authority on that state: identity data whose participant is not
-- 'recorded' here is never served, and is shredded by the sweep.
CREATE TABLE participants (
	id         TEXT PRIMARY KEY,
	org_id     TEXT NOT NULL,
	study_id   TEXT NOT NULL,
	site_id    TEXT NOT NULL,
	status     TEXT NOT NULL CHECK (status IN ('enrolled')),
	identity   TEXT NOT NULL CHECK (identity IN ('none', 'recorded', 'erased')),
	created_at BIGINT NOT NULL,
	erased_at  BIGINT,
	UNIQUE (org_id, id),
	CHECK ((identity = 'erased') = (erased_at IS NOT NULL)),
	FOREIGN KEY (org_id, study_id, site_id) REFERENCES sites (org_id, study_id, id)
);
CREATE INDEX participants_site ON participants (org_id, site_id, created_at, id);

-- Decrypt grants (CRY-06): an account may open the sensitive identity
-- fields named in fields (comma-separated) of the participants of a study,
-- or of one site of it, until expires_at (NULL: until revoked). A grant is
-- never changed except to revoke it. reason is the granting admin's
-- justification; it stays here and never enters the audit trail, which
-- names the grant by id.
CREATE TABLE decrypt_grants (
	id         TEXT PRIMARY KEY,
	org_id     TEXT NOT NULL,
	study_id   TEXT NOT NULL,
	site_id    TEXT,
	account_id TEXT NOT NULL REFERENCES accounts (id),
	fields     TEXT NOT NULL,
	reason     TEXT NOT NULL,
	granted_by TEXT NOT NULL REFERENCES accounts (id),
	created_at BIGINT NOT NULL,
	expires_at BIGINT,
	revoked_at BIGINT,
	revoked_by TEXT REFERENCES accounts (id),
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id),
	FOREIGN KEY (org_id, study_id, site_id) REFERENCES sites (org_id, study_id, id)
);
CREATE INDEX decrypt_grants_account ON decrypt_grants (org_id, study_id, account_id);
