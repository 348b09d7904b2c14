-- Entries (WEB-05): the values of one form recorded about one participant
-- at one visit (visit_repeat counts the times a repeating visit was held,
-- 1 otherwise), saved under a published version of the form. revision
-- counts the saves; a save names the revision it started from, so that a
-- second person saving the same form meanwhile is refused, never
-- overwritten. A deleted entry (LIFE-01) is hidden and locked until an
-- administrator restores it or, after the retention period, the purge
-- erases it with its history.
CREATE TABLE entries (
	id             TEXT PRIMARY KEY,
	org_id         TEXT NOT NULL,
	study_id       TEXT NOT NULL,
	site_id        TEXT NOT NULL,
	participant_id TEXT NOT NULL,
	visit_id       TEXT NOT NULL,
	visit_repeat   INTEGER NOT NULL CHECK (visit_repeat >= 1),
	form_id        TEXT NOT NULL,
	form_version   INTEGER NOT NULL,
	status         TEXT NOT NULL CHECK (status IN ('incomplete', 'complete')),
	revision       INTEGER NOT NULL CHECK (revision >= 1),
	created_by     TEXT NOT NULL REFERENCES accounts (id),
	created_at     BIGINT NOT NULL,
	saved_by       TEXT NOT NULL REFERENCES accounts (id),
	saved_at       BIGINT NOT NULL,
	deleted_at     BIGINT,
	deleted_by     TEXT REFERENCES accounts (id),
	deleted_reason TEXT,
	CHECK ((deleted_at IS NULL) = (deleted_by IS NULL) AND (deleted_at IS NULL) = (deleted_reason IS NULL)),
	UNIQUE (participant_id, visit_id, visit_repeat, form_id),
	UNIQUE (org_id, study_id, id),
	FOREIGN KEY (org_id, participant_id) REFERENCES participants (org_id, id),
	FOREIGN KEY (org_id, study_id, site_id) REFERENCES sites (org_id, study_id, id),
	FOREIGN KEY (org_id, study_id, visit_id) REFERENCES visits (org_id, study_id, id),
	FOREIGN KEY (org_id, study_id, form_id) REFERENCES forms (org_id, study_id, id),
	FOREIGN KEY (form_id, form_version) REFERENCES form_versions (form_id, version)
);
CREATE INDEX entries_participant ON entries (org_id, participant_id);
-- An export reads a study's entries in this order, and each entry's values
-- in the order of their key, so that it never sorts.
CREATE INDEX entries_study ON entries (org_id, study_id, participant_id, visit_id, visit_repeat, form_id);

-- The values an entry holds now: one a field (row_no 0) or a field of a
-- repeating group's row (row_no 1, 2, …); value in clear, or sealed with
-- the study's key for a sensitive field (CRY-03).
CREATE TABLE entry_values (
	entry_id TEXT NOT NULL REFERENCES entries (id),
	field    TEXT NOT NULL,
	row_no   INTEGER NOT NULL CHECK (row_no >= 0),
	value    TEXT,
	sealed   BYTEA,
	PRIMARY KEY (entry_id, field, row_no),
	CHECK ((value IS NULL) <> (sealed IS NULL))
);

-- Every save of an entry (a revision): who, when, under which form
-- version, and why (required for every save after the first), and what it
-- changed: a field's new value, or neither value nor sealed for a value
-- removed. Both tables are append-only, but for the purge of a deleted
-- entry.
CREATE TABLE entry_revisions (
	entry_id     TEXT NOT NULL REFERENCES entries (id),
	revision     INTEGER NOT NULL CHECK (revision >= 1),
	form_version INTEGER NOT NULL,
	status       TEXT NOT NULL CHECK (status IN ('incomplete', 'complete')),
	saved_by     TEXT NOT NULL REFERENCES accounts (id),
	saved_at     BIGINT NOT NULL,
	reason       TEXT,
	PRIMARY KEY (entry_id, revision),
	CHECK (revision = 1 OR reason IS NOT NULL)
);

CREATE TABLE entry_changes (
	entry_id TEXT NOT NULL,
	revision INTEGER NOT NULL,
	field    TEXT NOT NULL,
	row_no   INTEGER NOT NULL CHECK (row_no >= 0),
	value    TEXT,
	sealed   BYTEA,
	PRIMARY KEY (entry_id, revision, field, row_no),
	CHECK (value IS NULL OR sealed IS NULL),
	FOREIGN KEY (entry_id, revision) REFERENCES entry_revisions (entry_id, revision)
);
CREATE FUNCTION entry_history_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM entries WHERE id = OLD.entry_id AND deleted_at IS NOT NULL) THEN
		RETURN OLD;
	END IF;
	RAISE EXCEPTION 'the history of an entry is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE TRIGGER entry_revisions_append_only BEFORE UPDATE OR DELETE ON entry_revisions
	FOR EACH ROW EXECUTE FUNCTION entry_history_fixed();
CREATE TRIGGER entry_changes_append_only BEFORE UPDATE OR DELETE ON entry_changes
	FOR EACH ROW EXECUTE FUNCTION entry_history_fixed();
