-- Data keys (CRY-04): one random 256-bit key per organization, study and
-- participant (scope_kind 'org', 'study', 'participant'; scope_id is the
-- study id or the participant pseudonym, '' for the organization), plus one
-- blind-index key per organization ('index'). Only the key wrapped by the
-- key-encryption key named in kek_id is stored. id (hex of 16 random bytes)
-- names the scope's key in every sealed value's header; a version is never
-- changed once written, rotation adds one (CRY-07). Destroying a scope
-- (LIFE-03) sets wrapped to NULL and destroyed_at (Unix microseconds) on
-- every version.
CREATE TABLE data_keys (
	id           TEXT NOT NULL,
	version      INTEGER NOT NULL CHECK (version >= 1),
	org_id       TEXT NOT NULL REFERENCES organizations (id),
	scope_kind   TEXT NOT NULL CHECK (scope_kind IN ('org', 'study', 'participant', 'index')),
	scope_id     TEXT NOT NULL,
	kek_id       TEXT NOT NULL,
	wrapped      BYTEA,
	created_at   BIGINT NOT NULL,
	destroyed_at BIGINT,
	PRIMARY KEY (id, version),
	UNIQUE (org_id, scope_kind, scope_id, version),
	CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);
