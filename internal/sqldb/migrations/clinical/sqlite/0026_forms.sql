-- Forms (instruments, CRFs) of a study (WEB-05), each named by a key unique
-- in its study, in the order a study lists them (position). What a form
-- asks is in its versions: at most one draft,
-- which its designer may replace until it is published, then published
-- versions, which never change (the triggers below refuse it even to SQL
-- that bypasses the application), and which may be retired: no entry is
-- saved under a retired version, and the entries saved under it keep it.
-- definition is the form as JSON (package forms), digest its SHA-256.
CREATE TABLE forms (
	id         TEXT PRIMARY KEY,
	org_id     TEXT NOT NULL,
	study_id   TEXT NOT NULL,
	form_key   TEXT NOT NULL,
	position   INTEGER NOT NULL CHECK (position >= 0),
	created_by TEXT NOT NULL REFERENCES accounts (id),
	created_at BIGINT NOT NULL,
	UNIQUE (org_id, study_id, form_key),
	UNIQUE (org_id, study_id, id),
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id)
);

CREATE TABLE form_versions (
	org_id       TEXT NOT NULL,
	study_id     TEXT NOT NULL,
	form_id      TEXT NOT NULL,
	version      INTEGER NOT NULL CHECK (version >= 1),
	title        TEXT NOT NULL,
	definition   TEXT NOT NULL,
	digest       TEXT NOT NULL,
	state        TEXT NOT NULL CHECK (state IN ('draft', 'published', 'retired')),
	saved_by     TEXT NOT NULL REFERENCES accounts (id),
	saved_at     BIGINT NOT NULL,
	published_by TEXT REFERENCES accounts (id),
	published_at BIGINT,
	retired_at   BIGINT,
	PRIMARY KEY (form_id, version),
	CHECK ((state = 'draft') = (published_at IS NULL)),
	CHECK ((published_by IS NULL) = (published_at IS NULL)),
	CHECK ((state = 'retired') = (retired_at IS NOT NULL)),
	FOREIGN KEY (org_id, study_id, form_id) REFERENCES forms (org_id, study_id, id)
);
CREATE UNIQUE INDEX form_versions_one_draft ON form_versions (form_id) WHERE state = 'draft';

-- A published version's definition, and who published it when, never change;
-- a version is never removed.
CREATE TRIGGER form_versions_published_fixed BEFORE UPDATE ON form_versions
WHEN OLD.state <> 'draft' AND (NEW.definition IS NOT OLD.definition OR NEW.digest IS NOT OLD.digest
	OR NEW.title IS NOT OLD.title OR NEW.version IS NOT OLD.version OR NEW.form_id IS NOT OLD.form_id
	OR NEW.published_at IS NOT OLD.published_at OR NEW.published_by IS NOT OLD.published_by
	OR NEW.state = 'draft' OR (OLD.state = 'retired' AND NEW.state <> 'retired'))
BEGIN SELECT RAISE(ABORT, 'a published form version never changes'); END;
CREATE TRIGGER form_versions_published_kept BEFORE DELETE ON form_versions
WHEN OLD.state <> 'draft'
BEGIN SELECT RAISE(ABORT, 'a published form version never changes'); END;
