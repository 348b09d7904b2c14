-- Step-up (ACL-09): when the person holding a session last proved, with
-- their password or a second-factor code, that they are the account's
-- owner. Signing in is such a proof. Role changes, exports, key operations
-- and re-identification need one within the last five minutes. Unix
-- microseconds.
ALTER TABLE sessions ADD COLUMN confirmed_at BIGINT;
