-- A file uploaded for a participant is attached once a saved entry names
-- it (attached_at), and kept from then on, with the entry's history; one
-- that no save named within a day is purged. The files that exist are
-- counted as attached.
ALTER TABLE files ADD COLUMN attached_at BIGINT;
UPDATE files SET attached_at = created_at;
CREATE INDEX files_unattached ON files (created_at) WHERE attached_at IS NULL;
