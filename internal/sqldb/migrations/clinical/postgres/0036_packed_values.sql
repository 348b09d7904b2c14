-- An entry's values packed in its row (cells), and what each save changed
-- packed in its revision (changes): one row an entry, and one a save, in
-- place of one a value, so that exports and imports of many values are
-- not bounded by rows. A packed value is [field, row_no, value] in clear,
-- [field, row_no, null, hex of the ciphertext] sealed with the study's
-- key for a sensitive field (CRY-03, each under its own field and row as
-- before), and, in changes only, [field, row_no] for a value removed; a
-- JSON array of them in the order of field and row (bytewise). The
-- columns are text, not jsonb: the server never reads into them but for
-- the views below. entry_values and entry_changes remain, as views of the
-- packed values, for reading.
ALTER TABLE entries ADD COLUMN cells TEXT NOT NULL DEFAULT '[]';
ALTER TABLE entry_revisions ADD COLUMN changes TEXT NOT NULL DEFAULT '[]';

UPDATE entries e SET cells = x.cells FROM (
	SELECT entry_id, jsonb_agg(CASE WHEN sealed IS NULL THEN jsonb_build_array(field, row_no, value)
		ELSE jsonb_build_array(field, row_no, NULL, encode(sealed, 'hex')) END ORDER BY field COLLATE "C", row_no)::text AS cells
	FROM entry_values GROUP BY entry_id) x
WHERE x.entry_id = e.id;

ALTER TABLE entry_revisions DISABLE TRIGGER entry_revisions_append_only;
UPDATE entry_revisions r SET changes = x.changes FROM (
	SELECT entry_id, revision, jsonb_agg(CASE WHEN value IS NOT NULL THEN jsonb_build_array(field, row_no, value)
		WHEN sealed IS NOT NULL THEN jsonb_build_array(field, row_no, NULL, encode(sealed, 'hex'))
		ELSE jsonb_build_array(field, row_no) END ORDER BY field COLLATE "C", row_no)::text AS changes
	FROM entry_changes GROUP BY entry_id, revision) x
WHERE x.entry_id = r.entry_id AND x.revision = r.revision;
ALTER TABLE entry_revisions ENABLE TRIGGER entry_revisions_append_only;

DROP TABLE entry_changes;
DROP TABLE entry_values;

-- The values an entry holds now, one a row, read from its packed cells.
CREATE VIEW entry_values (entry_id, field, row_no, value, sealed) AS
	SELECT e.id, c ->> 0, (c ->> 1)::integer, c ->> 2, decode(c ->> 3, 'hex')
	FROM entries e CROSS JOIN LATERAL jsonb_array_elements(e.cells::jsonb) c;

-- What each save changed, one value a row (neither value nor sealed: the
-- value was removed), read from its revision's packed changes.
CREATE VIEW entry_changes (entry_id, revision, field, row_no, value, sealed) AS
	SELECT r.entry_id, r.revision, c ->> 0, (c ->> 1)::integer, c ->> 2, decode(c ->> 3, 'hex')
	FROM entry_revisions r CROSS JOIN LATERAL jsonb_array_elements(r.changes::jsonb) c;
