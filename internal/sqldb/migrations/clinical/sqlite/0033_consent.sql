-- Electronic consent (issue 16). A study's consent documents, one per
-- language, are versioned as forms are: at most one draft, which its
-- designer may replace until it is published, then published versions,
-- which never change (the triggers below refuse it even to SQL that
-- bypasses the application). content is the document as JSON (package
-- consent: title, sections, comprehension questions with their correct
-- answers), digest its SHA-256; reconsent says that publishing the
-- version asks everyone who signed an older one to sign again.
CREATE TABLE consent_versions (
	org_id       TEXT NOT NULL,
	study_id     TEXT NOT NULL,
	language     TEXT NOT NULL,
	version      INTEGER NOT NULL CHECK (version >= 1),
	state        TEXT NOT NULL CHECK (state IN ('draft', 'published')),
	title        TEXT NOT NULL,
	content      TEXT NOT NULL,
	digest       TEXT NOT NULL,
	reconsent    BOOLEAN NOT NULL DEFAULT FALSE,
	saved_by     TEXT NOT NULL REFERENCES accounts (id),
	saved_at     BIGINT NOT NULL,
	published_by TEXT REFERENCES accounts (id),
	published_at BIGINT,
	PRIMARY KEY (org_id, study_id, language, version),
	CHECK ((state = 'draft') = (published_at IS NULL)),
	CHECK ((published_by IS NULL) = (published_at IS NULL)),
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id)
);
CREATE UNIQUE INDEX consent_versions_one_draft ON consent_versions (org_id, study_id, language) WHERE state = 'draft';

CREATE TRIGGER consent_versions_published_fixed BEFORE UPDATE ON consent_versions
WHEN OLD.state <> 'draft'
BEGIN SELECT RAISE(ABORT, 'a published consent version never changes'); END;
CREATE TRIGGER consent_versions_published_kept BEFORE DELETE ON consent_versions
WHEN OLD.state <> 'draft'
BEGIN SELECT RAISE(ABORT, 'a published consent version never changes'); END;

-- A study's consent settings: whether data entry waits for a valid
-- consent, and whether an investigator countersigns each consent.
CREATE TABLE consent_settings (
	org_id                 TEXT NOT NULL,
	study_id               TEXT NOT NULL,
	entry_requires_consent BOOLEAN NOT NULL,
	countersign_required   BOOLEAN NOT NULL,
	updated_by             TEXT NOT NULL REFERENCES accounts (id),
	updated_at             BIGINT NOT NULL,
	PRIMARY KEY (org_id, study_id),
	FOREIGN KEY (org_id, study_id) REFERENCES studies (org_id, id)
);

-- Consents and withdrawals, one row each, as signed: by the participant
-- in the portal or in person with an investigator (signed_by is the
-- account whose session recorded it), or by a legally authorized
-- representative. record (what was answered, the typed names, a drawn
-- signature) and pdf (the signed document) are sealed under the
-- participant's key (CRY-03, LIFE-03); pdf_sha256 is the digest of the
-- PDF, which the audit event of the signing (and of the countersignature,
-- which makes a new PDF) names as well. What was signed never changes:
-- the one change a row takes is its countersignature. A purged
-- participant takes their consents with them.
CREATE TABLE consents (
	id                   TEXT PRIMARY KEY,
	org_id               TEXT NOT NULL,
	study_id             TEXT NOT NULL,
	site_id              TEXT NOT NULL,
	participant_id       TEXT NOT NULL,
	language             TEXT NOT NULL,
	version              INTEGER NOT NULL,
	kind                 TEXT NOT NULL CHECK (kind IN ('consent', 'withdrawal')),
	method               TEXT NOT NULL CHECK (method IN ('portal', 'in_person')),
	representative       BOOLEAN NOT NULL,
	signed_by            TEXT NOT NULL REFERENCES accounts (id),
	signed_at            BIGINT NOT NULL,
	countersign_required BOOLEAN NOT NULL,
	countersigned_by     TEXT REFERENCES accounts (id),
	countersigned_at     BIGINT,
	record               BLOB NOT NULL,
	pdf                  BLOB NOT NULL,
	pdf_sha256           TEXT NOT NULL,
	CHECK ((countersigned_by IS NULL) = (countersigned_at IS NULL)),
	FOREIGN KEY (org_id, participant_id) REFERENCES participants (org_id, id) ON DELETE CASCADE,
	FOREIGN KEY (org_id, study_id, language, version) REFERENCES consent_versions (org_id, study_id, language, version)
);
CREATE INDEX consents_participant ON consents (org_id, participant_id, signed_at);

CREATE TRIGGER consents_signed_fixed BEFORE UPDATE ON consents
WHEN OLD.countersigned_at IS NOT NULL OR NEW.countersigned_at IS NULL
	OR NEW.id IS NOT OLD.id OR NEW.org_id IS NOT OLD.org_id OR NEW.study_id IS NOT OLD.study_id
	OR NEW.site_id IS NOT OLD.site_id OR NEW.participant_id IS NOT OLD.participant_id
	OR NEW.language IS NOT OLD.language OR NEW.version IS NOT OLD.version OR NEW.kind IS NOT OLD.kind
	OR NEW.method IS NOT OLD.method OR NEW.representative IS NOT OLD.representative
	OR NEW.signed_by IS NOT OLD.signed_by OR NEW.signed_at IS NOT OLD.signed_at
	OR NEW.countersign_required IS NOT OLD.countersign_required
BEGIN SELECT RAISE(ABORT, 'a signed consent never changes but for its countersignature'); END;
