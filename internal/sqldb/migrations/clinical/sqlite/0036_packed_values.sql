-- An entry's values packed in its row (cells), and what each save changed
-- packed in its revision (changes): one row an entry, and one a save, in
-- place of one a value, so that exports and imports of many values are
-- not bounded by rows. A packed value is [field, row_no, value] in clear,
-- [field, row_no, null, hex of the ciphertext] sealed with the study's
-- key for a sensitive field (CRY-03, each under its own field and row as
-- before), and, in changes only, [field, row_no] for a value removed; a
-- JSON array of them in the order of field and row. entry_values and
-- entry_changes remain, as views of the packed values, for reading.
ALTER TABLE entries ADD COLUMN cells TEXT NOT NULL DEFAULT '[]';
ALTER TABLE entry_revisions ADD COLUMN changes TEXT NOT NULL DEFAULT '[]';

UPDATE entries SET cells = (
	SELECT json_group_array(json(CASE WHEN x.sealed IS NULL THEN json_array(x.field, x.row_no, x.value)
		ELSE json_array(x.field, x.row_no, NULL, lower(hex(x.sealed))) END))
	FROM (SELECT * FROM entry_values v WHERE v.entry_id = entries.id ORDER BY v.field, v.row_no) x)
WHERE id IN (SELECT entry_id FROM entry_values);

DROP TRIGGER entry_revisions_no_update;
UPDATE entry_revisions SET changes = (
	SELECT json_group_array(json(CASE WHEN x.value IS NOT NULL THEN json_array(x.field, x.row_no, x.value)
		WHEN x.sealed IS NOT NULL THEN json_array(x.field, x.row_no, NULL, lower(hex(x.sealed)))
		ELSE json_array(x.field, x.row_no) END))
	FROM (SELECT * FROM entry_changes c WHERE c.entry_id = entry_revisions.entry_id AND c.revision = entry_revisions.revision
		ORDER BY c.field, c.row_no) x)
WHERE EXISTS (SELECT 1 FROM entry_changes c WHERE c.entry_id = entry_revisions.entry_id AND c.revision = entry_revisions.revision);
CREATE TRIGGER entry_revisions_no_update BEFORE UPDATE ON entry_revisions
BEGIN SELECT RAISE(ABORT, 'the history of an entry is append-only'); END;

DROP TABLE entry_changes;
DROP TABLE entry_values;

-- The values an entry holds now, one a row, read from its packed cells.
CREATE VIEW entry_values (entry_id, field, row_no, value, sealed) AS
	SELECT e.id, c.value ->> 0, c.value ->> 1, c.value ->> 2, unhex(c.value ->> 3)
	FROM entries e, json_each(e.cells) c;

-- What each save changed, one value a row (neither value nor sealed: the
-- value was removed), read from its revision's packed changes.
CREATE VIEW entry_changes (entry_id, revision, field, row_no, value, sealed) AS
	SELECT r.entry_id, r.revision, c.value ->> 0, c.value ->> 1, c.value ->> 2, unhex(c.value ->> 3)
	FROM entry_revisions r, json_each(r.changes) c;
