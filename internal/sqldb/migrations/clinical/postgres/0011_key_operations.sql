-- Key operations under dual control (CRY-08). A request is made by one
-- organization administrator and approved by a second, different one; the
-- database itself refuses an approval by the requester. kind is 'rotate'
-- (params: which keys), 'export-recovery' (recovery material of the local
-- key-encryption key) or 'provider-change' (params: the new provider). A
-- request expires at expires_at (Unix microseconds, 24 hours after it was
-- made) unless used; used_at is set when the operation is carried out, once.
-- params is JSON naming keys and providers, never key material.
CREATE TABLE key_requests (
	id           TEXT PRIMARY KEY,
	org_id       TEXT NOT NULL REFERENCES organizations (id),
	kind         TEXT NOT NULL CHECK (kind IN ('rotate', 'export-recovery', 'provider-change')),
	params       TEXT NOT NULL,
	requested_by TEXT NOT NULL REFERENCES accounts (id),
	requested_at BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	approved_by  TEXT REFERENCES accounts (id),
	approved_at  BIGINT,
	used_at      BIGINT,
	CHECK (approved_by IS NULL OR approved_by <> requested_by),
	CHECK ((approved_by IS NULL) = (approved_at IS NULL)),
	CHECK (used_at IS NULL OR approved_at IS NOT NULL)
);
CREATE INDEX key_requests_org ON key_requests (org_id, requested_at);

-- Rotations of keys (CRY-07), one per approved 'rotate' or
-- 'provider-change' request. phase moves 'kek' (add a version of the
-- key-encryption key), 'data-keys' (add a version of each data key),
-- 'rewrap' (re-wrap every wrapped secret under target_kek), 'done'. running
-- is 1 until the rotation finishes and NULL after, so that at most one runs
-- at a time. Times are Unix microseconds.
CREATE TABLE key_rotations (
	id               TEXT PRIMARY KEY,
	request_id       TEXT NOT NULL UNIQUE REFERENCES key_requests (id),
	org_id           TEXT NOT NULL REFERENCES organizations (id),
	rotate_kek       BOOLEAN NOT NULL,
	rotate_data_keys BOOLEAN NOT NULL,
	from_kek         TEXT NOT NULL,
	target_kek       TEXT NOT NULL DEFAULT '',
	phase            TEXT NOT NULL CHECK (phase IN ('kek', 'data-keys', 'rewrap', 'done')),
	running          INTEGER UNIQUE CHECK (running = 1),
	started_at       BIGINT NOT NULL,
	updated_at       BIGINT NOT NULL,
	finished_at      BIGINT,
	CHECK ((running IS NULL) = (finished_at IS NOT NULL))
);

-- Where each store of a rotation stands: the position after which the next
-- batch starts, and what was done so far. A batch commits before its
-- position is recorded; re-doing it after a crash changes nothing, because a
-- secret already under the target version is left as it is.
CREATE TABLE key_rotation_progress (
	rotation_id TEXT NOT NULL REFERENCES key_rotations (id),
	store       TEXT NOT NULL,
	position    TEXT NOT NULL DEFAULT '',
	done        BOOLEAN NOT NULL DEFAULT FALSE,
	visited     BIGINT NOT NULL DEFAULT 0,
	changed     BIGINT NOT NULL DEFAULT 0,
	failed      BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (rotation_id, store)
);
