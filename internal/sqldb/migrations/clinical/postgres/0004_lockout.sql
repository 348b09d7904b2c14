-- Lockout (AUTH-04): the count of consecutive failed sign-ins, set back to
-- zero by a successful one. At the threshold the account is locked (locked_at,
-- Unix microseconds) until an administrator unlocks it or its owner resets
-- the password.
ALTER TABLE accounts ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked_at BIGINT;

-- Rate limits (AUTH-05), kept here so that every server node counts against
-- the same buckets (AVL-04). One row per bucket and window, e.g.
-- "login:address:192.0.2.7/1m0s"; tat is the bucket's theoretical arrival
-- time of the generic cell rate algorithm (Unix microseconds): a row whose
-- tat has passed holds no attempts any more and may be deleted.
CREATE TABLE rate_limits (
	bucket TEXT PRIMARY KEY,
	tat    BIGINT NOT NULL
);
CREATE INDEX rate_limits_tat ON rate_limits (tat);

-- Security alerts (AUTH-12, AUD-05) for an organization's administrators, or,
-- without org_id, for the operator alone. subject names what the alert is
-- about (an account id, a source address), never a secret.
CREATE TABLE alerts (
	id         TEXT PRIMARY KEY,
	org_id     TEXT REFERENCES organizations (id),
	kind       TEXT NOT NULL,
	subject    TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	read_at    BIGINT
);
CREATE INDEX alerts_org_created ON alerts (org_id, created_at);
