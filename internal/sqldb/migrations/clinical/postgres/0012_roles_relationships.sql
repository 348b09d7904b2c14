-- Custom roles (ACL-03): named permission sets of one organization. levels
-- lists the scopes the role may be held at (comma-separated: organization,
-- study, site) and permissions the actions it grants (comma-separated). A
-- custom role is never changed, only created and deleted, and cannot be
-- deleted while anyone holds it.
CREATE TABLE custom_roles (
	id          TEXT PRIMARY KEY,
	org_id      TEXT NOT NULL REFERENCES organizations (id),
	name        TEXT NOT NULL,
	levels      TEXT NOT NULL,
	permissions TEXT NOT NULL,
	created_by  TEXT NOT NULL REFERENCES accounts (id),
	created_at  BIGINT NOT NULL,
	UNIQUE (org_id, name),
	UNIQUE (org_id, id)
);

-- An assignment of a custom role names it here as well as by name in role,
-- so that the role's permissions are loaded with the assignment and a role
-- in use cannot be deleted underneath it.
ALTER TABLE role_assignments ADD COLUMN custom_role_id TEXT REFERENCES custom_roles (id);

-- Relationships (ACL-05): a care provider ('care') reaches only the
-- participants assigned to them, a participant's own account ('self') only
-- that participant. A participant has at most one own account.
CREATE TABLE participant_relations (
	id             TEXT PRIMARY KEY,
	org_id         TEXT NOT NULL,
	participant_id TEXT NOT NULL,
	account_id     TEXT NOT NULL REFERENCES accounts (id),
	kind           TEXT NOT NULL CHECK (kind IN ('care', 'self')),
	created_by     TEXT REFERENCES accounts (id),
	created_at     BIGINT NOT NULL,
	UNIQUE (org_id, participant_id, account_id, kind),
	FOREIGN KEY (org_id, participant_id) REFERENCES participants (org_id, id)
);
CREATE UNIQUE INDEX participant_relations_self ON participant_relations (org_id, participant_id) WHERE kind = 'self';
CREATE INDEX participant_relations_account ON participant_relations (org_id, account_id);

-- Field visibility (ACL-04): field (form-qualified, e.g. identity.name) of
-- a study is hidden from role (a built-in or custom role's name).
CREATE TABLE field_visibility (
	org_id     TEXT NOT NULL,
	study_id   TEXT NOT NULL,
	field      TEXT NOT NULL,
	role       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (org_id, study_id, field, role),
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id)
);
