-- Identifier fields of a study's forms (REDCap's "Identifier?"): values that
-- identify a participant are kept with their identity, never among the
-- entries: one sealed document of them per participant, under the
-- participant's own key (erasure destroys it), NULL when there is none.
ALTER TABLE identities ADD COLUMN identifiers BLOB;
