-- The audit trail (AUD-01, AUD-02). An event is written in the same
-- transaction as the data it describes, into audit_events and audit_queue.
-- One sequencer at a time moves queued events into audit_log, giving each a
-- gap-free index, and stores the hashes of the RFC 6962 Merkle tree over
-- them in audit_hashes; signed checkpoints of the tree go to
-- audit_checkpoints. Times are Unix microseconds; hashes are base64.

-- body is the canonical JSON of the event and the exact leaf data of the
-- tree; the other columns repeat fields of the body for searching, and the
-- verifier checks that they agree with it.
CREATE TABLE audit_events (
	id             TEXT PRIMARY KEY,
	org_id         TEXT,
	at             BIGINT NOT NULL,
	actor_account  TEXT,
	action         TEXT NOT NULL,
	outcome        TEXT NOT NULL,
	study_id       TEXT,
	site_id        TEXT,
	participant_id TEXT,
	object_type    TEXT,
	object_id      TEXT,
	security       BOOLEAN NOT NULL,
	body           TEXT NOT NULL
);
CREATE INDEX audit_events_org_at ON audit_events (org_id, at);
CREATE INDEX audit_events_org_actor ON audit_events (org_id, actor_account, at);
CREATE INDEX audit_events_org_participant ON audit_events (org_id, participant_id, at);
CREATE INDEX audit_events_org_study ON audit_events (org_id, study_id, at);
CREATE INDEX audit_events_org_action ON audit_events (org_id, action, at);

-- Events waiting for the sequencer: the only audit table whose rows are
-- deleted, once sequenced.
CREATE TABLE audit_queue (
	event_id  TEXT PRIMARY KEY,
	queued_at BIGINT NOT NULL
);
CREATE INDEX audit_queue_order ON audit_queue (queued_at, event_id);

-- seq is the event's index in the tree, gap-free from 0; leaf is the RFC 6962
-- leaf hash of the event's body.
CREATE TABLE audit_log (
	seq      BIGINT PRIMARY KEY,
	event_id TEXT NOT NULL UNIQUE,
	leaf     TEXT NOT NULL
);

-- The tree's stored hashes, indexed as golang.org/x/mod/sumdb/tlog
-- StoredHashIndex orders them.
CREATE TABLE audit_hashes (
	idx  BIGINT PRIMARY KEY,
	hash TEXT NOT NULL
);

-- note is the signed checkpoint (C2SP tlog-checkpoint, signed note format).
CREATE TABLE audit_checkpoints (
	size       BIGINT PRIMARY KEY,
	root       TEXT NOT NULL,
	note       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);

-- Leases elect one node for a background job, e.g. the audit sequencer.
CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at BIGINT NOT NULL
);

-- No code path updates or deletes an audit entry (AUD-02). The triggers stop
-- every role that cannot drop them. An operator who runs the application
-- under its own role, not the owner of the tables, takes the rights away as
-- well, so that the application cannot even try:
--
--   REVOKE UPDATE, DELETE, TRUNCATE
--     ON audit_events, audit_log, audit_hashes, audit_checkpoints
--     FROM custodia_app;
--
-- (custodia_app standing for the application's role; it keeps DELETE on
-- audit_queue and leases, which the sequencer needs.)
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit trail is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_hashes_append_only BEFORE UPDATE OR DELETE ON audit_hashes
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_hashes_no_truncate BEFORE TRUNCATE ON audit_hashes
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
