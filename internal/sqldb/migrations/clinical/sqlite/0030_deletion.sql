-- Deletion of participants (LIFE-01): a deleted participant is hidden from
-- every list, read and export and locked against every change, with who
-- deleted them, when and why, until an organization admin restores them
-- (the row is removed) or, after the organization's retention period, the
-- purge erases their entries, files and identity and then the participant
-- (with this row) for good.
CREATE TABLE participant_deletions (
	org_id         TEXT NOT NULL,
	participant_id TEXT NOT NULL,
	deleted_at     BIGINT NOT NULL,
	deleted_by     TEXT NOT NULL REFERENCES accounts (id),
	reason         TEXT NOT NULL,
	PRIMARY KEY (org_id, participant_id),
	FOREIGN KEY (org_id, participant_id) REFERENCES participants (org_id, id)
);
CREATE INDEX participant_deletions_at ON participant_deletions (deleted_at);

-- How long an organization's deleted data may be restored before the
-- purge erases them (LIFE-01), in days; NULL keeps the default (30).
ALTER TABLE org_policies ADD COLUMN deletion_retention_days INTEGER
	CHECK (deletion_retention_days BETWEEN 1 AND 365);

-- Deletion of a form version with data (LIFE-01): the entries saved under
-- it are hidden and locked with it (marked deleted, deleted_with naming the
-- version's deletion, so that restoring it restores them and nothing else)
-- until an organization admin restores it or, after the retention period,
-- the purge erases the entries and then this row. The version itself is
-- retired, and stays so.
CREATE TABLE form_version_deletions (
	org_id     TEXT NOT NULL,
	study_id   TEXT NOT NULL,
	form_id    TEXT NOT NULL,
	version    INTEGER NOT NULL,
	deleted_at BIGINT NOT NULL,
	deleted_by TEXT NOT NULL REFERENCES accounts (id),
	reason     TEXT NOT NULL,
	PRIMARY KEY (form_id, version),
	FOREIGN KEY (form_id, version) REFERENCES form_versions (form_id, version)
);
CREATE INDEX form_version_deletions_at ON form_version_deletions (deleted_at);
ALTER TABLE entries ADD COLUMN deleted_with TEXT CHECK (deleted_with IN ('form_version'));
CREATE INDEX entries_form_version ON entries (form_id, form_version);
