-- Notifications (WEB-07): that something waits for a person (a message, a
-- consent to sign, a form to fill), never what: kind only, and ref, a key
-- that keeps one thing from being notified twice, ever (a message's id, a
-- consent version's, a participant's visit and form), which is never sent.
-- sent_at is set when the notice went out (in a digest or alone).
CREATE TABLE notifications (
	id         TEXT PRIMARY KEY,
	account_id TEXT NOT NULL REFERENCES accounts (id),
	org_id     TEXT NOT NULL REFERENCES organizations (id),
	kind       TEXT NOT NULL CHECK (kind IN ('message', 'consent', 'form')),
	ref        TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	sent_at    BIGINT
);
CREATE INDEX notifications_unsent ON notifications (account_id, created_at) WHERE sent_at IS NULL;
CREATE UNIQUE INDEX notifications_once ON notifications (account_id, kind, ref);

-- A person's choice of notices: off, immediately (the default) or a daily
-- digest, by e-mail (the default) or by text to the phone of their SMS
-- factor; last_digest_at is when their last digest went out.
CREATE TABLE notification_settings (
	account_id     TEXT PRIMARY KEY REFERENCES accounts (id),
	mode           TEXT NOT NULL CHECK (mode IN ('off', 'immediate', 'daily')),
	channel        TEXT NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'sms')),
	last_digest_at BIGINT,
	updated_at     BIGINT NOT NULL
);
