-- Files uploaded for a participant, for the file fields of their entries
-- (WEB-05): their content sealed with the study's key, judged by its first
-- bytes (media_type), its size and SHA-256, and the name it was given. An
-- entry's file field holds a file's id.
CREATE TABLE files (
	id             TEXT PRIMARY KEY,
	org_id         TEXT NOT NULL,
	study_id       TEXT NOT NULL,
	site_id        TEXT NOT NULL,
	participant_id TEXT NOT NULL,
	name           TEXT NOT NULL,
	media_type     TEXT NOT NULL,
	size           BIGINT NOT NULL CHECK (size >= 0),
	sha256         TEXT NOT NULL,
	sealed         BYTEA NOT NULL,
	created_by     TEXT NOT NULL REFERENCES accounts (id),
	created_at     BIGINT NOT NULL,
	FOREIGN KEY (org_id, participant_id) REFERENCES participants (org_id, id),
	FOREIGN KEY (org_id, study_id, site_id) REFERENCES sites (org_id, study_id, id)
);
CREATE INDEX files_participant ON files (org_id, participant_id);
