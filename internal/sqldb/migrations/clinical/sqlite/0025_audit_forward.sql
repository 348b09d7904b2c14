-- How far the audit trail has been forwarded to each collector of
-- `serve --audit-forward` (ASVS V16.4.3): the index of the next event to
-- send. One node forwards at a time (the lease "audit.forward").
CREATE TABLE audit_forward (
	target   TEXT PRIMARY KEY,
	next_seq BIGINT NOT NULL CHECK (next_seq >= 0)
);
