-- An epoch's members are counted from the keys under it (data_keys.epoch)
-- rather than kept in a counter that every new participant key updated:
-- that one row was held by every enrolment until it committed, so that on
-- PostgreSQL concurrent enrolments, of one server or of several, waited for
-- each other. Enrolments now hold a share lock on their epoch's row, which
-- does not keep others from it; an erasure retiring the epoch still waits
-- for them (keys/epochring.go).
ALTER TABLE key_epochs DROP COLUMN members;

-- The count reads the index alone: the members of an epoch are its keys'
-- scope ids.
DROP INDEX data_keys_epoch;
CREATE INDEX data_keys_epoch ON data_keys (epoch, scope_id) WHERE epoch <> '';
