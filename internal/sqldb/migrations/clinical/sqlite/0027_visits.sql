-- A study's schedule of visits (events): each named by a key unique in its
-- study, in order (position), planned on a day counted from enrolment with
-- a window either side, or unscheduled (day NULL: held when needed), and
-- repeating or not. visit_forms lists the forms each visit collects, in
-- order; a form of another study cannot be named (the keys carry the
-- study).
CREATE TABLE visits (
	id            TEXT PRIMARY KEY,
	org_id        TEXT NOT NULL,
	study_id      TEXT NOT NULL,
	visit_key     TEXT NOT NULL,
	label         TEXT NOT NULL,
	position      INTEGER NOT NULL CHECK (position >= 0),
	day           INTEGER,
	window_before INTEGER NOT NULL CHECK (window_before >= 0),
	window_after  INTEGER NOT NULL CHECK (window_after >= 0),
	repeating     INTEGER NOT NULL CHECK (repeating IN (0, 1)),
	UNIQUE (org_id, study_id, visit_key),
	UNIQUE (org_id, study_id, id),
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id)
);

CREATE TABLE visit_forms (
	org_id   TEXT NOT NULL,
	study_id TEXT NOT NULL,
	visit_id TEXT NOT NULL,
	form_id  TEXT NOT NULL,
	position INTEGER NOT NULL CHECK (position >= 0),
	PRIMARY KEY (visit_id, form_id),
	FOREIGN KEY (org_id, study_id, visit_id) REFERENCES visits (org_id, study_id, id),
	FOREIGN KEY (org_id, study_id, form_id) REFERENCES forms (org_id, study_id, id)
);
CREATE INDEX visit_forms_form ON visit_forms (form_id);
