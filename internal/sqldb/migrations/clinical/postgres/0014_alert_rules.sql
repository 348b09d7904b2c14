-- Alert rules (AUD-05): which security events of an organization raise an
-- alert for its administrators. A rule is an action prefix ("mfa." matches
-- every second-factor event; "" matches every security event). An
-- organization without rows follows the built-in defaults (every security
-- event but the alerts' own and confirmations of identity).
CREATE TABLE alert_rules (
	org_id        TEXT NOT NULL REFERENCES organizations (id),
	action_prefix TEXT NOT NULL,
	created_at    BIGINT NOT NULL,
	PRIMARY KEY (org_id, action_prefix)
);

-- The alert watcher's place in the audit log: the index of the next event
-- it examines. It moves with a conditional update, so of two nodes working
-- at once only one moves it, and an event raises its alert once.
CREATE TABLE alert_watch (
	name     TEXT PRIMARY KEY,
	next_seq BIGINT NOT NULL
);
