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

CREATE FUNCTION consent_versions_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.state <> 'draft' THEN
		RAISE EXCEPTION 'a published consent version never changes';
	END IF;
	IF TG_OP = 'DELETE' THEN
		RETURN OLD;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER consent_versions_published_fixed BEFORE UPDATE OR DELETE ON consent_versions
	FOR EACH ROW EXECUTE FUNCTION consent_versions_fixed();

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
	record               BYTEA NOT NULL,
	pdf                  BYTEA NOT NULL,
	pdf_sha256           TEXT NOT NULL,
	CHECK ((countersigned_by IS NULL) = (countersigned_at IS NULL)),
	FOREIGN KEY (org_id, participant_id) REFERENCES participants (org_id, id) ON DELETE CASCADE,
	FOREIGN KEY (org_id, study_id, language, version) REFERENCES consent_versions (org_id, study_id, language, version)
);
CREATE INDEX consents_participant ON consents (org_id, participant_id, signed_at);

CREATE FUNCTION consents_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.countersigned_at IS NOT NULL OR NEW.countersigned_at IS NULL
		OR NEW.id IS DISTINCT FROM OLD.id OR NEW.org_id IS DISTINCT FROM OLD.org_id OR NEW.study_id IS DISTINCT FROM OLD.study_id
		OR NEW.site_id IS DISTINCT FROM OLD.site_id OR NEW.participant_id IS DISTINCT FROM OLD.participant_id
		OR NEW.language IS DISTINCT FROM OLD.language OR NEW.version IS DISTINCT FROM OLD.version OR NEW.kind IS DISTINCT FROM OLD.kind
		OR NEW.method IS DISTINCT FROM OLD.method OR NEW.representative IS DISTINCT FROM OLD.representative
		OR NEW.signed_by IS DISTINCT FROM OLD.signed_by OR NEW.signed_at IS DISTINCT FROM OLD.signed_at
		OR NEW.countersign_required IS DISTINCT FROM OLD.countersign_required THEN
		RAISE EXCEPTION 'a signed consent never changes but for its countersignature';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER consents_signed_fixed BEFORE UPDATE ON consents
	FOR EACH ROW EXECUTE FUNCTION consents_fixed();
