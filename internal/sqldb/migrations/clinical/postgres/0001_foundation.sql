-- Instance identity: both databases of one instance record the same id, so
-- a clinical database is never paired with another instance's identity data.
CREATE TABLE instance (
	singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
	instance_id TEXT NOT NULL,
	created_at  BIGINT NOT NULL
);

CREATE TABLE organizations (
	id         TEXT PRIMARY KEY,
	slug       TEXT NOT NULL UNIQUE,
	name       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);

-- Every table below carries org_id, and composite foreign keys make a row's
-- organization match its parent's (LIFE-05).
CREATE TABLE studies (
	id         TEXT PRIMARY KEY,
	org_id     TEXT NOT NULL REFERENCES organizations (id),
	kind       TEXT NOT NULL CHECK (kind IN ('study', 'registry', 'care-program')),
	name       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (org_id, id),
	UNIQUE (org_id, name)
);

CREATE TABLE sites (
	id         TEXT PRIMARY KEY,
	org_id     TEXT NOT NULL,
	study_id   TEXT NOT NULL,
	name       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (org_id, study_id, id),
	UNIQUE (study_id, name),
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id)
);

-- One account per person (AUTH-01); an account reaches an organization only
-- through role assignments.
CREATE TABLE accounts (
	id            TEXT PRIMARY KEY,
	email         TEXT NOT NULL UNIQUE,
	display_name  TEXT NOT NULL,
	password_hash TEXT,
	created_at    BIGINT NOT NULL
);

CREATE TABLE role_assignments (
	id         TEXT PRIMARY KEY,
	org_id     TEXT NOT NULL REFERENCES organizations (id),
	account_id TEXT NOT NULL REFERENCES accounts (id),
	role       TEXT NOT NULL,
	study_id   TEXT,
	site_id    TEXT,
	created_at BIGINT NOT NULL,
	CHECK (site_id IS NULL OR study_id IS NOT NULL),
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id),
	FOREIGN KEY (org_id, study_id, site_id) REFERENCES sites (org_id, study_id, id)
);
CREATE UNIQUE INDEX role_assignments_unique
	ON role_assignments (org_id, account_id, role, COALESCE(study_id, ''), COALESCE(site_id, ''));
CREATE INDEX role_assignments_account ON role_assignments (account_id);

-- One-time links (password setup, later reset and invitation). Only the
-- SHA-256 of a token is stored.
CREATE TABLE account_tokens (
	id         TEXT PRIMARY KEY,
	account_id TEXT NOT NULL REFERENCES accounts (id),
	purpose    TEXT NOT NULL,
	token_hash TEXT NOT NULL UNIQUE,
	expires_at BIGINT NOT NULL,
	used_at    BIGINT,
	created_at BIGINT NOT NULL
);
