-- Backups written (AVL-01): one row per backup file, for its age on the
-- security statement and the metrics, the schedule's turn and the
-- retention of N copies. The file itself is elsewhere (a folder or a
-- bucket); location names it.
CREATE TABLE backups (
	location   TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	size       BIGINT NOT NULL,
	sha256     TEXT NOT NULL,
	removed_at BIGINT
);
CREATE INDEX backups_created ON backups (created_at);
