-- An account disabled by an administrator of one of its organizations or
-- by the operator (ASVS V7.4.2): while disabled_at is set it cannot sign
-- in, and its sessions and access tokens, ended when it was disabled, are
-- refused. Unlike a lockout (locked_at), a password reset does not lift
-- it; only enabling the account does. Who disabled it is on the audit
-- trail.
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;
