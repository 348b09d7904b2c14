-- Erasure epochs (LIFE-03). A participant's data key is sealed under the key
-- of an erasure epoch, which the key provider alone holds (never a database,
-- never a backup of one), and then wrapped by the key-encryption key; epoch
-- names that epoch ('' for keys of other scopes, and for participant keys
-- made before epochs existed). Erasing a participant moves the other live
-- keys of their epoch to a fresh epoch and retires the old one; once the
-- provider has destroyed it (destroyed_at), no copy of this database taken
-- before opens the erased participant's key.
ALTER TABLE data_keys ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
CREATE INDEX data_keys_epoch ON data_keys (epoch) WHERE epoch <> '';

-- members counts the participant keys that ever joined the epoch; an epoch
-- takes new ones while it is not retired and members is below the keyring's
-- epoch size. retired_at without destroyed_at is a destruction still to be
-- carried out at the provider (by the erasure, or else by the sweep).
CREATE TABLE key_epochs (
	id           TEXT PRIMARY KEY,
	members      INTEGER NOT NULL CHECK (members >= 0),
	created_at   BIGINT NOT NULL,
	retired_at   BIGINT,
	destroyed_at BIGINT,
	CHECK (destroyed_at IS NULL OR retired_at IS NOT NULL)
);
CREATE INDEX key_epochs_open ON key_epochs (created_at) WHERE retired_at IS NULL;
