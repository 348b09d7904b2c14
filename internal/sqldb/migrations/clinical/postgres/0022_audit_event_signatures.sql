-- Events signed by the instance (AUD-02). sig is the signature line of the
-- signed note whose text is the event's body: the line note.Sign writes
-- after the blank line, "— <key name> <base64>\n", made with the audit key
-- that the data folder holds and the database never does. The tree's leaf
-- of a signed event is the whole note, body + "\n\n" + sig, so that a
-- signature can be neither forged nor stripped without changing the tree.
-- Events written before this migration have none: they form the trail's
-- unsigned prefix, which the verifier reports as such.
ALTER TABLE audit_events ADD COLUMN sig TEXT;
