-- Retention of inactive data (LIFE-02). An organization's accounts and
-- participants with no activity for its inactivity period (days, NULL:
-- the default of 730) are noticed: listed to its admins, who are told, and
-- purged the notice period (days, NULL: the default of 30) later, unless
-- put on legal hold or active again meanwhile.
ALTER TABLE org_policies ADD COLUMN inactivity_days INTEGER
	CHECK (inactivity_days BETWEEN 90 AND 3650);
ALTER TABLE org_policies ADD COLUMN inactivity_notice_days INTEGER
	CHECK (inactivity_notice_days BETWEEN 7 AND 365);

-- A notice that an account (a member, by account id) or a participant (by
-- pseudonym) of the organization has been inactive since last_active_at
-- (microseconds, the activity the notice was given on): it is purged at
-- due_at unless held or active since. Activity newer than last_active_at
-- ends the notice (the row is removed), as does a hold; the purge removes
-- it with its subject. purge_begun_at is set by the first step of a
-- participant's purge (their identity erased), which the next steps then
-- complete whatever happens. No foreign key to the subject: a notice names
-- a participant or an account.
CREATE TABLE retention_notices (
	org_id         TEXT NOT NULL REFERENCES organizations (id),
	kind           TEXT NOT NULL CHECK (kind IN ('participant', 'account')),
	subject_id     TEXT NOT NULL,
	last_active_at BIGINT NOT NULL,
	noticed_at     BIGINT NOT NULL,
	due_at         BIGINT NOT NULL,
	purge_begun_at BIGINT,
	PRIMARY KEY (org_id, kind, subject_id),
	CHECK (due_at >= noticed_at)
);
CREATE INDEX retention_notices_due ON retention_notices (due_at);

-- A legal hold: the account or participant is never purged for
-- inactivity while it stands. reason is the admin's (it stays here; the
-- audit event names the hold, never the text), held_by who placed it.
-- Lifting it removes the row.
CREATE TABLE retention_holds (
	org_id     TEXT NOT NULL REFERENCES organizations (id),
	kind       TEXT NOT NULL CHECK (kind IN ('participant', 'account')),
	subject_id TEXT NOT NULL,
	reason     TEXT NOT NULL,
	held_by    TEXT NOT NULL REFERENCES accounts (id),
	held_at    BIGINT NOT NULL,
	PRIMARY KEY (org_id, kind, subject_id)
);

-- The organization's admins are told of new notices as people are told of
-- what waits for them (notify, kind 'retention').
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
	CHECK (kind IN ('message', 'consent', 'form', 'retention'));
